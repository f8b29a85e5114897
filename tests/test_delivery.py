"""At-least-once delivery over real sockets: redelivery, retry limit, expiry, per-subscriber acks, one timer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastport_client_helpers import ClientFactory, SessionFactory

from fastport.errors import CloseCode
from fastport.server.app import FastportServer


async def test_unacked_message_is_redelivered_with_retry_count(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(retryInterval=200, maxRetryLimit=5)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    message_id = publisher.publish("t")
    first = await subscriber.recv()
    assert "retry" not in first
    started = time.monotonic()
    second = await subscriber.recv()
    assert second["retry"] == 1 and second["messageId"] == message_id
    assert time.monotonic() - started >= 0.15
    assert (await subscriber.recv())["retry"] == 2
    subscriber.send({"type": "ack", "topic": "t", "messageId": message_id})
    await publisher.recv_type("ack_received")
    await subscriber.expect_silence(0.5)


async def test_retry_limit_ends_redelivery(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200, maxRetryLimit=2)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    publisher.publish("t")
    retries = [(await subscriber.recv()).get("retry") for _ in range(3)]
    assert retries == [None, 1, 2]
    await subscriber.expect_silence(0.6)
    assert server.broker.delivery.counters.exhausted == 1
    assert server.broker.stats()["inflightMessages"] == 0


async def test_expired_message_is_never_sent_again(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200, maxRetryLimit=100, messageExpiryTime=300)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    publisher.publish("t")
    assert "retry" not in await subscriber.recv()
    assert (await subscriber.recv())["retry"] == 1  # at ~200 ms, before the 300 ms expiry
    await subscriber.expect_silence(0.6)
    assert server.broker.delivery.counters.expired == 1
    assert server.broker.stats()["inflightMessages"] == 0


async def test_one_subscribers_ack_does_not_cancel_anothers_redelivery(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(retryInterval=200)
    publisher, fast, slow = await connect(session), await connect(session), await connect(session)
    await fast.subscribe("t")
    await slow.subscribe("t")
    message_id = publisher.publish("t")
    await fast.recv()
    await slow.recv()
    fast.send({"type": "ack", "topic": "t", "messageId": message_id})
    assert (await publisher.recv_type("ack_received"))["messageId"] == message_id
    redelivered = await slow.recv()
    assert redelivered["retry"] == 1 and redelivered["messageId"] == message_id
    await fast.expect_silence(0.1)
    slow.send({"type": "ack", "topic": "t", "messageId": message_id})
    # ack_received goes to the publisher once, on the first ack.
    await publisher.expect_silence(0.4)
    await slow.expect_silence(0.1)


async def test_message_of_a_departed_subscriber_is_released(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    publisher.publish("t")
    await subscriber.recv()
    await subscriber.close()
    await asyncio.sleep(0.5)
    assert server.broker.stats()["inflightMessages"] == 0


async def test_dropping_a_session_cancels_its_retries(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    for _ in range(10):
        publisher.publish("t")
    for _ in range(10):
        await subscriber.recv()
    assert len(server.broker.scheduler) == 1  # one retry timer per subscriber, not one per message
    await server.broker.admin.drop(session["sessionName"], "pw", session["secretKey"])
    assert len(server.broker.scheduler) == 0
    assert await subscriber.wait_closed() == CloseCode.SESSION_DROPPED


async def test_session_expiry_closes_its_sockets(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(sessionExpiry=int(time.time() * 1000) + 400)
    client = await connect(session)
    assert await client.wait_closed() == CloseCode.SESSION_EXPIRED
    late = await connect()
    assert (await late.init(session["sessionName"], "pw"))["error"] == "Session not found"


async def test_retries_are_driven_by_one_loop_timer(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    scheduler = server.broker.scheduler
    real_loop = scheduler._loop
    armed: list[Any] = []

    class CountingLoop:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_loop, name)

        def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
            armed.append(when)
            return real_loop.call_at(when, callback, *args)

    scheduler._loop = CountingLoop()  # type: ignore[assignment]
    try:
        session = await make_session(retryInterval=200, maxRetryLimit=1)
        publisher, subscriber = await connect(session), await connect(session)
        await subscriber.subscribe("t")
        for _ in range(300):
            publisher.publish("t")
        for _ in range(300):
            await publisher.recv_type("publish_response")
        assert len(scheduler) == 1  # one wheel entry for the subscriber's 300 unacked messages
        assert len(armed) <= 3, armed
    finally:
        scheduler._loop = real_loop

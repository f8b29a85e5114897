"""Delivery semantics over real sockets: durable clients, takeover, dedupe, ordering and the inflight window,
bounded queues, QoS 0/1, retained messages and last wills."""

from __future__ import annotations

import asyncio
from typing import Any

from fastport_client_helpers import ClientFactory, SessionFactory, WSClient

from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer


async def _durable(
    connect: ClientFactory, session: dict[str, Any], client_id: str, **extra: object
) -> tuple[WSClient, dict[str, Any]]:
    client = await connect()
    client.send(
        {
            "type": "init",
            "sessionName": session["sessionName"],
            "password": session["password"],
            "clientId": client_id,
            "durable": True,
            **extra,
        }
    )
    return client, await client.recv_type("init_response")


async def _ack(client: WSClient, frame: dict[str, Any]) -> None:
    client.send({"type": "ack", "topic": frame["topic"], "messageId": frame["messageId"]})


# ------------------------------------------------------------------------------------------ durable


async def test_durable_client_resumes_subscriptions_and_held_messages_in_order(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=60000)
    publisher = await connect(session)
    first, response = await _durable(connect, session, "device-1")
    assert response["success"] is True and response["resumed"] is False
    await first.subscribe("d/+")
    sent_unacked = publisher.publish("d/a", data="m0")
    await first.recv_type("message")
    await first.close()
    offline_ids = [publisher.publish(f"d/{index}", data=f"m{index + 1}") for index in range(3)]
    for _ in range(4):
        assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    second, response = await _durable(connect, session, "device-1")
    assert response["resumed"] is True and response["subscriptions"] == ["d/+"]
    held = [await second.recv_type("message") for _ in range(4)]
    assert [frame["messageId"] for frame in held] == [sent_unacked, *offline_ids]
    assert held[0]["retry"] == 1 and all("retry" not in frame for frame in held[1:])
    new_id = publisher.publish("d/new")
    assert (await second.recv_type("message"))["messageId"] == new_id
    for frame in held:
        await _ack(second, frame)
    acked = {(await publisher.recv_type("ack_received"))["messageId"] for _ in range(4)}
    assert acked == {sent_unacked, *offline_ids}


async def test_second_connection_with_the_same_client_id_takes_over(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    old, _ = await _durable(connect, session, "twin")
    await old.subscribe("t")
    new, response = await _durable(connect, session, "twin")
    assert response["resumed"] is True
    assert await old.wait_closed() == CloseCode.CLIENT_TAKEN_OVER
    publisher = await connect(session)
    publisher.publish("t")
    assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    assert (await new.recv_type("message"))["topic"] == "t"


async def test_non_durable_reconnect_with_client_id_starts_clean(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    first, _ = await _durable(connect, session, "c1")
    await first.subscribe("t")
    await first.close()
    clean = await connect()
    clean.send({"type": "init", "sessionName": session["sessionName"], "password": "pw", "clientId": "c1"})
    response = await clean.recv_type("init_response")
    assert response["resumed"] is False
    publisher = await connect(session)
    publisher.publish("t")
    assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 0


async def test_durable_state_expires_after_its_ttl(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(durableTtl=1000)
    client, _ = await _durable(connect, session, "short-lived")
    await client.subscribe("t")
    await client.close()
    await asyncio.sleep(1.3)
    assert server.broker.delivery.counters.durable_expired == 1
    _, response = await _durable(connect, session, "short-lived")
    assert response["resumed"] is False


async def test_invalid_client_ids_are_refused(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect()
    for bad in ("", "has space", "x" * 129, "ü"):
        client.send({"type": "init", "sessionName": session["sessionName"], "password": "pw", "clientId": bad})
        refused = await client.recv()
        assert refused["code"] == ErrorCode.INVALID_FIELD and refused["field"] == "clientId", bad
    client.send({"type": "init", "sessionName": session["sessionName"], "password": "pw", "durable": True})
    assert (await client.recv())["field"] == "clientId"


# ------------------------------------------------------------------------------------------- dedupe


async def test_republish_after_completion_is_still_deduplicated(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session()
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    publisher.publish("t", message_id="dart-retry")
    await publisher.recv_type("publish_response")
    await _ack(subscriber, await subscriber.recv_type("message"))
    await publisher.recv_type("ack_received")
    publisher.publish("t", message_id="dart-retry")
    response = await publisher.recv_type("publish_response")
    assert response["duplicate"] is True and response["deliveredTo"] == 1
    # The Dart client re-publishes until ack_received: it gets it again.
    assert (await publisher.recv_type("ack_received"))["messageId"] == "dart-retry"
    await subscriber.expect_silence()
    assert server.broker.delivery.counters.duplicates == 1


# --------------------------------------------------------------------------- ordering, window, queue


async def test_inflight_window_holds_later_messages_until_acks_free_slots(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(inflightWindow=2, retryInterval=60000)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("seq")
    ids = [publisher.publish("seq", data=str(index)) for index in range(5)]
    for _ in ids:
        assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    received = [await subscriber.recv_type("message") for _ in range(2)]
    await subscriber.expect_silence(0.2)
    while len(received) < 5:
        await _ack(subscriber, received[len(received) - 2])
        received.append(await subscriber.recv_type("message"))
    assert [frame["messageId"] for frame in received] == ids


async def test_queue_overflow_drop_new_is_reported(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(inflightWindow=1, maxQueuedMessages=2, retryInterval=60000)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("q")
    ids = [publisher.publish("q") for _ in range(5)]
    delivered = [(await publisher.recv_type("publish_response"))["deliveredTo"] for _ in ids]
    assert delivered == [1, 1, 1, 0, 0]
    frames = [await subscriber.recv() for _ in range(3)]
    assert frames[0]["type"] == "message" and frames[0]["messageId"] == ids[0]
    assert [(f["code"], f["messageId"]) for f in frames[1:]] == [
        (ErrorCode.QUEUE_OVERFLOW, ids[3]),
        (ErrorCode.QUEUE_OVERFLOW, ids[4]),
    ]
    assert server.broker.delivery.counters.queue_overflows == 2
    await _ack(subscriber, frames[0])
    assert (await subscriber.recv_type("message"))["messageId"] == ids[1]


async def test_queue_overflow_drop_oldest(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session(
        inflightWindow=1, maxQueuedMessages=2, queueOverflow="drop-oldest", retryInterval=60000
    )
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("q")
    ids = [publisher.publish("q") for _ in range(4)]
    first = await subscriber.recv_type("message")
    overflow = await subscriber.recv()
    assert overflow["code"] == ErrorCode.QUEUE_OVERFLOW and overflow["messageId"] == ids[1]
    await _ack(subscriber, first)
    assert (await subscriber.recv_type("message"))["messageId"] == ids[2]


async def test_queue_caps_are_validated(server: FastportServer, admin_headers: dict[str, str]) -> None:
    from fastport_client_helpers import http

    for field, value in (
        ("inflightWindow", 0),
        ("maxQueuedMessages", -1),
        ("queueOverflow", "drop-all"),
        ("durableTtl", 5),
        ("maxQueuedBytes", "big"),
    ):
        status, _, body = await http(
            server.port,
            "POST",
            "/api/createSession",
            {"sessionName": "v", "password": "p", field: value},
            headers=admin_headers,
        )
        assert status == 400 and body["field"] == field


async def test_offline_durable_queue_overflow_is_reported_on_resume(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(maxQueuedMessages=2)
    client, _ = await _durable(connect, session, "sleepy")
    await client.subscribe("q")
    await client.close()
    publisher = await connect(session)
    for _ in range(5):
        publisher.publish("q")
    delivered = [(await publisher.recv_type("publish_response"))["deliveredTo"] for _ in range(5)]
    assert delivered == [1, 1, 0, 0, 0]
    client, _ = await _durable(connect, session, "sleepy")
    report = await client.recv()
    assert report["code"] == ErrorCode.QUEUE_OVERFLOW and report["dropped"] == 3
    assert (await client.recv())["type"] == "message"
    assert (await client.recv())["type"] == "message"


# ---------------------------------------------------------------------------------------------- QoS


async def test_qos0_is_marked_not_held_and_not_acked(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200)
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("fire")
    message_id = publisher.publish("fire", qos=0)
    assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    frame = await subscriber.recv()
    assert frame["qos"] == 0 and frame["messageId"] == message_id
    await subscriber.expect_silence(0.4)  # no redelivery
    await _ack(subscriber, frame)
    await subscriber.expect_silence()  # an ack of nothing held is ignored (and counted)
    assert server.broker.delivery.counters.ignored_acks == 1
    assert server.broker.stats()["inflightMessages"] == 0


async def test_effective_qos_is_the_lower_of_publish_and_subscription(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session(retryInterval=200)
    publisher, low, high = await connect(session), await connect(session), await connect(session)
    low.send({"type": "subscribe", "topic": "mix", "qos": 0})
    await low.recv_type("subscribe_response")
    await high.subscribe("mix")
    publisher.publish("mix")
    assert (await low.recv())["qos"] == 0
    assert "qos" not in await high.recv()
    assert (await high.recv())["retry"] == 1
    await low.expect_silence(0.1)


async def test_bad_qos_values_are_refused(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect(session)
    for frame in (
        {"type": "subscribe", "topic": "t", "qos": 2},
        {"type": "subscribe", "topic": "t", "qos": True},
        {"type": "publish", "topic": "t", "data": "x", "messageId": "m", "qos": "1"},
        {"type": "publish", "topic": "t", "data": "x", "messageId": "m", "retain": 1},
    ):
        client.send(frame)
        refused = await client.recv()
        assert refused["code"] == ErrorCode.INVALID_FIELD, frame


# ------------------------------------------------------------------------------------------ retained


async def test_retained_message_is_sent_first_to_new_subscribers_and_cleared_by_empty_data(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    publisher = await connect(session)
    publisher.publish("status/door", data="open", retain=True, message_id="r1")
    publisher.publish("status/door", data="closed", retain=True, message_id="r2")
    publisher.publish("status/window", data="shut", retain=True, message_id="r3")
    for _ in range(3):
        await publisher.recv_type("publish_response")
    late = await connect(session)
    late.send({"type": "subscribe", "topic": "status/+"})
    assert (await late.recv())["type"] == "subscribe_response"
    retained = {frame["messageId"]: frame for frame in [await late.recv(), await late.recv()]}
    assert set(retained) == {"r2", "r3"} and all(frame["retained"] is True for frame in retained.values())
    assert retained["r2"]["data"] == "closed"
    for frame in retained.values():
        await _ack(late, frame)
    publisher.publish("status/door", data="", retain=True)
    await late.recv_type("message")
    later = await connect(session)
    await later.subscribe("status/door")
    await later.expect_silence(0.2)


# --------------------------------------------------------------------------------------------- wills


async def _with_will(connect: ClientFactory, session: dict[str, Any]) -> WSClient:
    client = await connect()
    client.send(
        {
            "type": "init",
            "sessionName": session["sessionName"],
            "password": "pw",
            "will": {"topic": "wills/dev", "data": "gone", "qos": 1},
        }
    )
    assert (await client.recv_type("init_response"))["success"] is True
    return client


async def test_last_will_is_published_when_a_connection_drops(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    watcher = await connect(session)
    await watcher.subscribe("wills/#")
    client = await _with_will(connect, session)
    client.transport.underlying_transport.abort()
    will = await watcher.recv_type("message")
    assert will["topic"] == "wills/dev" and will["data"] == "gone"


async def test_no_last_will_after_a_clean_close_or_disconnect_frame(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    watcher = await connect(session)
    await watcher.subscribe("wills/#")
    polite = await _with_will(connect, session)
    await polite.close()  # close code 1000
    bye = await _with_will(connect, session)
    bye.send({"type": "disconnect"})
    assert await bye.wait_closed() == CloseCode.NORMAL
    await watcher.expect_silence(0.3)


async def test_will_with_invalid_topic_is_refused(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect()
    client.send(
        {"type": "init", "sessionName": session["sessionName"], "password": "pw", "will": {"topic": "a/#", "data": "x"}}
    )
    refused = await client.recv()
    assert refused["type"] == "init_response" and refused["code"] == ErrorCode.INVALID_TOPIC
    client.send({"type": "init", "sessionName": session["sessionName"], "password": "pw", "will": "soon"})
    assert (await client.recv())["field"] == "will"


# ------------------------------------------------------------------------------------ slow consumers


async def test_no_redelivery_while_the_previous_copy_is_still_unsent(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session(retryInterval=200, maxRetryLimit=50)
    publisher, stalled = await connect(session), await connect(session)
    await stalled.subscribe("bulk")
    stalled.transport.underlying_transport.pause_reading()  # a consumer that stops reading its socket
    big = "x" * (512 * 1024)
    for _ in range(24):  # 12 MiB: more than the kernel's loopback buffers take
        publisher.publish("bulk", data=big)
        await publisher.recv_type("publish_response")
    (listener,) = [
        item
        for item in server._listeners
        if item.target.subscriber is not None and "bulk" in item.target.subscriber.filters
    ]
    assert listener.backlog > 0
    await asyncio.sleep(0.7)  # three retry intervals
    assert listener.backlog > 0
    assert server.broker.delivery.counters.redeliveries == 0
    stalled.transport.underlying_transport.resume_reading()
    first = await stalled.recv_type("message", timeout=10)
    assert "retry" not in first

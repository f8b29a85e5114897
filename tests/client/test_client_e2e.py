"""fastport.Client against a live fastport broker on 127.0.0.1 (the ``server`` fixture), on uvloop."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from clienttools import KEY, WAIT_S, eventually, make_client
from fastport_client_helpers import ClientFactory, SessionFactory, http

from fastport.client import (
    Client,
    ConnectionState,
    EnvelopeCipher,
    InitRefused,
    Message,
    RequestRefused,
    SessionEnded,
)
from fastport.errors import ErrorCode
from fastport.server.app import FastportServer

# The client must work on plain asyncio too, not only on uvloop.
pytestmark = pytest.mark.both_loops


async def next_message(subscription: Any) -> Message:
    message: Message = await asyncio.wait_for(subscription.__anext__(), WAIT_S)
    return message


async def test_emit_and_get_with_sync_and_async_callbacks(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    received: asyncio.Queue[tuple[str | bytes, int | float]] = asyncio.Queue()

    async def on_async(payload: str | bytes, timestamp: int | float) -> None:
        await received.put((payload, timestamp))

    async with make_client(server.port, session) as sender, make_client(server.port, session) as receiver:
        await receiver.get("rooms/+/temp", lambda payload, ts: received.put_nowait((payload, ts)))
        await receiver.get("rooms/#", on_async)
        result = await sender.emit("rooms/kitchen/temp", "21.5")
        assert result.delivered_to == 1 and result.duplicate is False
        first, second = await asyncio.wait_for(received.get(), WAIT_S), await asyncio.wait_for(received.get(), WAIT_S)
        assert first[0] == second[0] == "21.5" and isinstance(first[1], int)
        await sender.emit("rooms/kitchen/photo", b"\x89PNG")
        assert (await asyncio.wait_for(received.get(), WAIT_S))[0] == b"\x89PNG"
    assert receiver.stats.acks_sent == 2 and receiver.stats.delivered == 2


async def test_subscribe_iterator_and_wait_ack_across_envelopes(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    async with (
        make_client(server.port, session, envelope="v1") as old_style,
        make_client(server.port, session) as new_style,
    ):
        from_v1 = new_style.subscribe("v1/out")
        from_v2 = old_style.subscribe("v2/out")
        await from_v1.ready()
        await from_v2.ready()
        result = await old_style.emit("v1/out", "sent as v1", wait_ack=True)
        assert result.acked is True and result.delivered_to == 1
        message = await next_message(from_v1)
        assert message == Message("v1/out", "sent as v1", message.timestamp, result.message_id, 0)
        result = await new_style.emit("v2/out", "sent as v2", wait_ack=True)
        assert result.acked is True
        assert (await next_message(from_v2)).payload == "sent as v2"
        await new_style.unsubscribe("v1/out")
        with pytest.raises(StopAsyncIteration):
            await next_message(from_v1)
        assert (await old_style.emit("v1/out", "nobody")).delivered_to == 0


async def test_wait_ack_without_receivers_returns_unacked(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    async with make_client(server.port, session) as client:
        result = await asyncio.wait_for(client.emit("empty", "x", wait_ack=True), WAIT_S)
    assert result.delivered_to == 0 and result.acked is False


async def test_unsubscribe_unknown_topic_is_refused(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    async with make_client(server.port, session) as client:
        with pytest.raises(RequestRefused) as info:
            await client.unsubscribe("never")
    assert info.value.error_code == ErrorCode.NOT_SUBSCRIBED


@pytest.mark.parametrize(
    ("name", "password", "error"),
    [(None, "wrong", "Invalid password"), ("no-such-session", "pw", "Session not found")],
)
async def test_init_refused_raises_and_closes(
    server: FastportServer, make_session: SessionFactory, name: str | None, password: str, error: str
) -> None:
    session = await make_session()
    client = make_client(server.port, {"sessionName": name or session["sessionName"], "password": password})
    with pytest.raises(InitRefused) as info:
        await client.init()
    assert info.value.error == error
    assert client.state is ConnectionState.CLOSED
    with pytest.raises(InitRefused):
        await client.emit("t", "x")


async def test_suspended_session_refuses_init(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    body = {**{k: session[k] for k in ("sessionName", "password", "secretKey")}, "suspend": True}
    status, _, _ = await http(server.port, "POST", "/api/suspendSession", body)
    assert status == 200
    with pytest.raises(InitRefused, match="Session is suspended"):
        await make_client(server.port, session).init()


async def test_dropped_session_stops_reconnecting(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    states: list[ConnectionState] = []
    client = make_client(server.port, session, on_state=states.append)
    await client.init()
    subscription = client.subscribe("t")
    await subscription.ready()
    body = {k: session[k] for k in ("sessionName", "password", "secretKey")}
    status, _, _ = await http(server.port, "POST", "/api/dropSession", body)
    assert status == 200
    with pytest.raises(SessionEnded) as info:
        await asyncio.wait_for(client.wait_closed(), WAIT_S)
    assert info.value.close_code == 4001
    with pytest.raises(SessionEnded):
        await next_message(subscription)
    with pytest.raises(SessionEnded):
        await client.emit("t", "x")
    await asyncio.sleep(0.2)
    assert client.stats.reconnects == 0 and states[-1] is ConnectionState.CLOSED
    assert ConnectionState.CONNECTING not in states[2:]
    await client.close()


async def test_reconnects_resubscribes_and_receives_after_abort(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    states: list[ConnectionState] = []
    async with (
        make_client(server.port, session, on_state=states.append) as receiver,
        make_client(server.port, session) as sender,
    ):
        subscription = receiver.subscribe("after/abort")
        await subscription.ready()
        assert receiver._transport is not None
        receiver._transport.underlying_transport.abort()
        await eventually(lambda: receiver.stats.reconnects == 1 and receiver.state is ConnectionState.CONNECTED)
        # The resubscription is confirmed once a publish reaches it.
        await eventually(lambda: server.broker.stats()["connections"] == 2)
        for _ in range(50):
            if (await sender.emit("after/abort", "again")).delivered_to == 1:
                break
            await asyncio.sleep(0.02)
        assert (await next_message(subscription)).payload == "again"
    assert states[:5] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]


async def test_publish_while_disconnected_is_sent_after_reconnect(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    raw = await connect(session)
    await raw.subscribe("queued")
    async with make_client(server.port, session) as client:
        assert client._transport is not None
        client._transport.underlying_transport.abort()
        await eventually(lambda: client.state is not ConnectionState.CONNECTED)
        result = await asyncio.wait_for(client.emit("queued", "later"), WAIT_S)
        assert result.delivered_to == 1
    message = await raw.recv_type("message")
    assert message["messageId"] == result.message_id


async def test_message_failing_its_check_is_not_acked_and_is_redelivered(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    session = await make_session(retryInterval=200, maxRetryLimit=3)
    publisher = await connect(session)
    async with make_client(server.port, session) as client:
        subscription = client.subscribe("guarded")
        await subscription.ready()
        with caplog.at_level(logging.WARNING, logger="fastport.client"):
            sealed = EnvelopeCipher(KEY, session["sessionName"]).seal_v1("tampered")
            bad_id = publisher.publish("guarded", data=sealed.data, hash="0" * 64)
            assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
            await eventually(lambda: client.stats.rejected >= 2)  # the first delivery and retry 1
        assert any(bad_id in record.getMessage() for record in caplog.records)
        assert "tampered" not in caplog.text and sealed.data not in caplog.text
        await publisher.expect_silence(0.1)  # no ack_received
        # A good message afterwards is delivered and acked; the bad one never was.
        message_id = str(uuid.uuid4())
        good = EnvelopeCipher(KEY, session["sessionName"]).seal_v2("fine", topic="guarded", message_id=message_id)
        publisher.publish("guarded", data=good.data, message_id=message_id, hash=good.hash)
        assert (await next_message(subscription)).message_id == message_id
        assert (await publisher.recv_type("ack_received"))["messageId"] == message_id
    assert client.stats.delivered == 1 and client.stats.acks_sent == 1


async def test_redelivered_message_id_is_acked_but_delivered_once(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    # The broker's own dedupe window lasts a message's lifetime: 100 ms here, so a re-publish
    # after it is fanned out again and only the client's dedupe stands between it and the app.
    session = await make_session(messageExpiryTime=100)
    publisher = await connect(session)
    async with make_client(server.port, session) as client:
        subscription = client.subscribe("dedup")
        await subscription.ready()
        message_id = str(uuid.uuid4())
        sealed = EnvelopeCipher(KEY, session["sessionName"]).seal_v2("once", topic="dedup", message_id=message_id)
        for _ in range(2):
            publisher.publish("dedup", data=sealed.data, message_id=message_id, hash=sealed.hash)
            assert (await publisher.recv_type("ack_received"))["messageId"] == message_id
            await asyncio.sleep(0.15)
        assert (await next_message(subscription)).payload == "once"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(subscription.__anext__(), 0.2)
    assert client.stats.duplicates == 1 and client.stats.acks_sent == 2 and client.stats.delivered == 1


async def test_close_ends_iterators_and_is_idempotent(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    client: Client = make_client(server.port, session)
    await client.init()
    subscription = client.subscribe("t")
    await client.close()
    await client.close()
    with pytest.raises(StopAsyncIteration):
        await next_message(subscription)
    await client.wait_closed()
    assert client.state is ConnectionState.CLOSED

"""What the client sends, checked frame by frame against a scripted peer (see fakebroker.py).

These cover the fields the broker may not honour yet (qos, retain, clientId, durable,
``resumed``) and answers the real broker cannot be made to skip or refuse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from clienttools import FAST_RECONNECT, KEY, eventually
from fakebroker import FakeBroker, broker_like, fake_broker

from fastport.client import (
    AckTimeout,
    Client,
    ConnectionClosed,
    ConnectionState,
    EnvelopeCipher,
    PublishRefused,
    ReconnectPolicy,
    SessionEnded,
)
from fastport.errors import ConfigError, ErrorCode, InvalidTopic

# The client must work on plain asyncio too, not only on uvloop.
pytestmark = pytest.mark.both_loops


def client_for(broker: FakeBroker, **options: Any) -> Client:
    options.setdefault("reconnect", FAST_RECONNECT)
    options.setdefault("request_timeout_s", 2.0)
    return Client(broker.url, "sess", "pw", KEY, **options)


async def test_init_sends_only_the_fields_that_are_set() -> None:
    async with fake_broker() as broker:
        async with client_for(broker):
            _, frame = await broker.next_frame("init")
        assert frame == {"type": "init", "sessionName": "sess", "password": "pw"}
        async with client_for(broker, client_id="dev-1", durable=True):
            _, frame = await broker.next_frame("init")
        assert frame == {"type": "init", "sessionName": "sess", "password": "pw", "clientId": "dev-1", "durable": True}


async def test_init_reads_resumed() -> None:
    async with fake_broker() as broker:
        broker.answer = lambda f: (
            [{"type": "init_response", "success": True, "sessionName": "sess", "resumed": True}]
            if f["type"] == "init"
            else broker_like(f)
        )
        async with client_for(broker, client_id="dev-1", durable=True) as client:
            assert client.resumed is True


async def test_publish_frame_fields_for_qos_and_retain() -> None:
    async with fake_broker() as broker, client_for(broker) as client:
        result = await client.emit("a/b", "x")
        _, default = await broker.next_frame("publish")
        await client.emit("a/b", "x", qos=0, retain=True)
        _, flagged = await broker.next_frame("publish")
    assert set(default) == {"type", "topic", "data", "hash", "timestamp", "messageId"}
    assert default["messageId"] == result.message_id and result.delivered_to == 0
    assert isinstance(default["timestamp"], int) and default["data"].startswith("v2.")
    assert flagged["qos"] == 0 and flagged["retain"] is True


async def test_v2_envelope_binds_session_topic_and_message_id() -> None:
    async with fake_broker() as broker, client_for(broker) as client:
        await client.emit("a/b", "secret")
        _, frame = await broker.next_frame("publish")
    opened = EnvelopeCipher(KEY, "sess").open(frame["data"], frame["hash"], topic="a/b", message_id=frame["messageId"])
    assert opened == "secret"


async def test_subscribe_frame_sends_qos_only_when_not_1() -> None:
    async with fake_broker() as broker, client_for(broker) as client:
        await client.get("a/+", lambda payload, ts: None)
        _, plain = await broker.next_frame("subscribe")
        await client.subscribe("b/#", qos=0).ready()
        _, zero = await broker.next_frame("subscribe")
    assert plain == {"type": "subscribe", "topic": "a/+"}
    assert zero == {"type": "subscribe", "topic": "b/#", "qos": 0}


async def test_unanswered_publish_is_resent_with_the_same_message_id() -> None:
    async with fake_broker() as broker:
        broker.answer = lambda f: [] if f["type"] == "publish" else broker_like(f)
        async with client_for(broker, retry_interval_s=0.1, max_retries=10) as client:
            emit = asyncio.ensure_future(client.emit("t", "x"))
            _, first = await broker.next_frame("publish")
            _, again = await broker.next_frame("publish")  # the retry timer
            assert again == first
            broker.answer = broker_like
            broker.abort()
            number, after_reconnect = await broker.next_frame("publish")
            assert number == 2 and after_reconnect["messageId"] == first["messageId"]
            result = await asyncio.wait_for(emit, 5)
    assert result.message_id == first["messageId"]
    assert client.stats.republished >= 2


async def test_publish_waits_for_ack_received_and_resends_until_it_comes() -> None:
    async with fake_broker() as broker:

        def delivered(frame: dict[str, Any]) -> list[dict[str, Any]]:
            if frame["type"] == "publish":
                return [
                    {"type": "publish_response", "success": True, "messageId": frame["messageId"], "deliveredTo": 1}
                ]
            return broker_like(frame)

        broker.answer = delivered
        async with client_for(broker, retry_interval_s=0.1) as client:
            emit = asyncio.ensure_future(client.emit("t", "x", wait_ack=True))
            _, first = await broker.next_frame("publish")
            _, resent = await broker.next_frame("publish")
            assert resent["messageId"] == first["messageId"] and not emit.done()
            broker.send({"type": "ack_received", "messageId": first["messageId"], "topic": "t"})
            result = await asyncio.wait_for(emit, 5)
    assert result.acked is True and result.delivered_to == 1


async def test_no_answer_after_max_retries_raises_ack_timeout() -> None:
    async with fake_broker() as broker:
        broker.answer = lambda f: [] if f["type"] == "publish" else broker_like(f)
        async with client_for(broker, retry_interval_s=0.05, max_retries=2) as client:
            with pytest.raises(AckTimeout):
                await asyncio.wait_for(client.emit("t", "x"), 5)
    assert client.stats.published == 3


async def test_publish_refused_raises_with_the_broker_error() -> None:
    async with fake_broker() as broker:
        broker.answer = lambda f: (
            [
                {
                    "type": "publish_response",
                    "success": False,
                    "messageId": f["messageId"],
                    "error": "Session suspended or invalid",
                    "code": 3004,
                }
            ]
            if f["type"] == "publish"
            else broker_like(f)
        )
        async with client_for(broker) as client:
            with pytest.raises(PublishRefused) as info:
                await client.emit("t", "x")
    assert info.value.error == "Session suspended or invalid"
    assert info.value.error_code == ErrorCode.SESSION_INVALID


@pytest.mark.parametrize("code", [4001, 4002])
async def test_session_close_codes_stop_reconnecting(code: int) -> None:
    states: list[ConnectionState] = []
    async with fake_broker() as broker:
        client = client_for(broker, on_state=states.append)
        await client.init()
        broker.close(code)
        with pytest.raises(SessionEnded) as info:
            await asyncio.wait_for(client.wait_closed(), 5)
        assert info.value.close_code == code
        await asyncio.sleep(0.2)
        assert broker.connections == 1
        with pytest.raises(SessionEnded):
            await client.emit("t", "x")
        await client.close()
    assert states[-1] is ConnectionState.CLOSED


async def test_other_close_codes_reconnect_and_resubscribe() -> None:
    states: list[ConnectionState] = []
    async with fake_broker() as broker, client_for(broker, on_state=states.append) as client:
        await client.subscribe("x/#").ready()
        broker.close(1001)
        number, frame = await broker.next_frame("subscribe")
        number, frame = await broker.next_frame("subscribe")
        assert number == 2 and frame["topic"] == "x/#"
        await eventually(lambda: client.state is ConnectionState.CONNECTED and client.stats.reconnects == 1)
    assert states[:4] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTING,
    ]


async def test_reconnect_gives_up_after_max_attempts() -> None:
    async with fake_broker() as broker:
        policy = ReconnectPolicy(initial_delay_s=0.01, max_delay_s=0.02, max_attempts=2)
        client = client_for(broker, reconnect=policy, request_timeout_s=0.2)
        await client.init()
        subscription = client.subscribe("t")
        broker.answer = lambda f: []  # init never answered again
        broker.abort()
        with pytest.raises(ConnectionClosed, match="gave up after 2"):
            await asyncio.wait_for(client.wait_closed(), 10)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(subscription.__anext__(), 1)
        await client.close()


async def test_argument_checks() -> None:
    with pytest.raises(ConfigError):
        Client("http://x", "s", "p", KEY)
    with pytest.raises(ConfigError):
        Client("ws://x", "s", "p", "short")
    with pytest.raises(ConfigError):
        Client("ws://x", "s", "p", KEY, durable=True)
    async with fake_broker() as broker, client_for(broker) as client:
        with pytest.raises(InvalidTopic):
            await client.emit("a/+", "x")
        with pytest.raises(InvalidTopic):
            client.subscribe("a/#/b")


async def test_received_messages_are_acked_deduplicated_and_checked() -> None:
    cipher = EnvelopeCipher(KEY, "sess")

    def message(topic: str, message_id: str, sealed_for: str | None = None, **extra: Any) -> dict[str, Any]:
        sealed = cipher.seal_v2("hi", topic=sealed_for or topic, message_id=message_id)
        return {
            "type": "message",
            "topic": topic,
            "data": sealed.data,
            "hash": sealed.hash,
            "timestamp": 1700000000000,
            "messageId": message_id,
            **extra,
        }

    async with fake_broker() as broker, client_for(broker) as client:
        subscription = client.subscribe("t/#")
        await subscription.ready()
        broker.send(message("t/1", "m1", retry=2))
        received = await asyncio.wait_for(subscription.__anext__(), 5)
        assert (received.topic, received.payload, received.retry) == ("t/1", "hi", 2)
        _, ack = await broker.next_frame("ack")
        assert ack == {"type": "ack", "topic": "t/1", "messageId": "m1"}
        broker.send(message("t/1", "m1", retry=3))  # a redelivery: acked again, not delivered
        _, ack = await broker.next_frame("ack")
        assert ack["messageId"] == "m1"
        broker.send(message("t/2", "m2", sealed_for="t/other"))  # replayed onto another topic
        broker.send({"type": "message", "topic": "t/3", "data": 42, "messageId": "m3"})  # malformed
        broker.send(message("t/4", "m4", qos=0))  # QoS 0: delivered, never acked
        assert (await asyncio.wait_for(subscription.__anext__(), 5)).message_id == "m4"
        broker.send({"type": "brand_new"})  # unknown frames are ignored
        await eventually(lambda: client.stats.received == 5)
        await asyncio.sleep(0.05)
    later = [broker.frames.get_nowait()[1]["type"] for _ in range(broker.frames.qsize())]
    assert "ack" not in later
    stats = client.stats
    assert (stats.delivered, stats.duplicates, stats.rejected, stats.acks_sent) == (2, 1, 2, 2)

"""docs/protocol.md §3 over real sockets: every client frame, every server frame, every error path."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fastport_client_helpers import ClientFactory, SessionFactory
from picows import WSCloseCode, WSMsgType

from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer


async def test_init_success_and_failures(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session(password="right")
    client = await connect()
    bad = await client.init(session["sessionName"], "wrong")
    assert bad == {
        "type": "init_response",
        "success": False,
        "error": "Invalid password",
        "code": ErrorCode.INVALID_PASSWORD,
    }
    missing = await client.init("no-such-session", "x")
    assert missing["error"] == "Session not found" and missing["success"] is False
    # A failed init leaves the socket open for another try.
    good = await client.init(session["sessionName"], "right")
    assert good == {"type": "init_response", "success": True, "sessionName": session["sessionName"]}


async def test_second_init_is_refused_and_never_switches_tenant(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    first, second = await make_session(), await make_session()
    client = await connect(first)
    again = await client.init(second["sessionName"], second["password"])
    assert again["success"] is False and again["code"] == ErrorCode.ALREADY_INITIALIZED
    other = await connect(second)
    await other.subscribe("t")
    client.publish("t")
    response = await client.recv_type("publish_response")
    assert response["deliveredTo"] == 0
    await other.expect_silence()


async def test_frames_before_init_are_refused(connect: ClientFactory) -> None:
    client = await connect()
    for frame in (
        {"type": "subscribe", "topic": "t"},
        {"type": "unsubscribe", "topic": "t"},
        {"type": "publish", "topic": "t", "data": "x", "messageId": "m"},
        {"type": "ack", "topic": "t", "messageId": "m"},
    ):
        client.send(frame)
        assert await client.recv() == {"type": "error", "error": "Not initialized", "code": ErrorCode.NOT_INITIALIZED}


async def test_subscribe_publish_message_ack_cycle(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    publisher, subscriber = await connect(session), await connect(session)
    assert await subscriber.subscribe("sensors/room1/temp") == {
        "type": "subscribe_response",
        "success": True,
        "topic": "sensors/room1/temp",
    }
    message_id = publisher.publish("sensors/room1/temp", data="iv:ct")
    assert await publisher.recv() == {
        "type": "publish_response",
        "success": True,
        "messageId": message_id,
        "deliveredTo": 1,
    }
    message = await subscriber.recv()
    assert message == {
        "type": "message",
        "topic": "sensors/room1/temp",
        "data": "iv:ct",
        "hash": "h",
        "timestamp": 1700000000000,
        "messageId": message_id,
    }
    subscriber.send({"type": "ack", "topic": "sensors/room1/temp", "messageId": message_id})
    assert await publisher.recv() == {"type": "ack_received", "messageId": message_id, "topic": "sensors/room1/temp"}


async def test_publisher_does_not_receive_its_own_message(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect(session)
    await client.subscribe("echo")
    client.publish("echo")
    assert (await client.recv())["deliveredTo"] == 0
    await client.expect_silence()


async def test_unsubscribe(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    subscriber.send({"type": "unsubscribe", "topic": "t"})
    assert await subscriber.recv() == {"type": "unsubscribe_response", "success": True, "topic": "t"}
    publisher.publish("t")
    assert (await publisher.recv())["deliveredTo"] == 0
    await subscriber.expect_silence()
    subscriber.send({"type": "unsubscribe", "topic": "never"})
    refused = await subscriber.recv()
    assert refused["type"] == "unsubscribe_response" and refused["success"] is False
    assert refused["code"] == ErrorCode.NOT_SUBSCRIBED


async def test_fan_out_to_many_and_wildcards(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    publisher = await connect(session)
    exact = [await connect(session) for _ in range(3)]
    for client in exact:
        await client.subscribe("a/b")
    plus, hash_ = await connect(session), await connect(session)
    await plus.subscribe("a/+")
    await hash_.subscribe("a/#")
    message_id = publisher.publish("a/b")
    assert (await publisher.recv())["deliveredTo"] == 5
    for client in (*exact, plus, hash_):
        assert (await client.recv())["messageId"] == message_id


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", ErrorCode.INVALID_JSON),
        (b"[1, 2]", ErrorCode.NOT_AN_OBJECT),
        (b'"init"', ErrorCode.NOT_AN_OBJECT),
        (b'{"type": "launch"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"no": "type"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "subscribe"}', ErrorCode.MISSING_FIELD),
        (b'{"type": "subscribe", "topic": 5}', ErrorCode.INVALID_FIELD),
        (b'{"type": "publish", "topic": "t", "data": {"x": 1}, "messageId": "m"}', ErrorCode.INVALID_FIELD),
        (
            b'{"type": "publish", "topic": "t", "data": "x", "messageId": "m", "timestamp": "now"}',
            ErrorCode.INVALID_FIELD,
        ),
        (b'{"type": "publish", "topic": "t", "data": "x", "messageId": ""}', ErrorCode.INVALID_FIELD),
        (b'{"type": "init", "sessionName": 1, "password": "p"}', ErrorCode.INVALID_FIELD),
    ],
)
async def test_malformed_frames_get_specific_errors_and_keep_the_connection(
    make_session: SessionFactory, connect: ClientFactory, payload: bytes, code: ErrorCode
) -> None:
    session = await make_session()
    client = await connect(session)
    client.send_raw(payload)
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == code, error
    assert isinstance(error["error"], str) and error["error"]
    if code == ErrorCode.UNKNOWN_TYPE:
        assert error["error"] == "Unknown message type"
    # The connection still works.
    assert (await client.subscribe("still/alive"))["success"] is True


async def test_invalid_topics_are_refused(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect(session)
    for topic in ("", "a/#/b", "a+/b", "x\x00y", "t" * 2000):
        client.send({"type": "subscribe", "topic": topic})
        refused = await client.recv()
        assert refused["type"] == "subscribe_response" and refused["success"] is False, topic
        assert refused["code"] == ErrorCode.INVALID_TOPIC
    client.publish("a/+")
    refused = await client.recv()
    assert refused["type"] == "publish_response" and refused["code"] == ErrorCode.INVALID_TOPIC


async def test_frame_over_limit_closes_1009(connect: ClientFactory, server: FastportServer) -> None:
    client = await connect()
    client.send_raw(b"x" * (server.config.max_frame_size + 1))
    assert await client.wait_closed() == CloseCode.MESSAGE_TOO_BIG


async def test_fragmented_message_over_limit_closes_1009(connect: ClientFactory, server: FastportServer) -> None:
    client = await connect()
    half = server.config.max_frame_size // 2 + 1
    client.send_raw(b"x" * half, fin=False)
    client.send_raw(b"x" * half, WSMsgType.CONTINUATION, fin=True)
    assert await client.wait_closed() == CloseCode.MESSAGE_TOO_BIG


async def test_fragmented_message_is_reassembled(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    client = await connect()
    payload = orjson.dumps({"type": "init", "sessionName": session["sessionName"], "password": "pw"})
    client.send_raw(payload[:10], fin=False)
    client.send_raw(payload[10:20], WSMsgType.CONTINUATION, fin=False)
    client.send_raw(payload[20:], WSMsgType.CONTINUATION, fin=True)
    assert (await client.recv())["success"] is True


async def test_invalid_utf8_closes_1007(connect: ClientFactory) -> None:
    client = await connect()
    client.send_raw(b'{"type": "init", "sessionName": "\xff\xfe"}')
    assert await client.wait_closed() == CloseCode.INVALID_DATA


async def test_continuation_without_start_closes_1002(connect: ClientFactory) -> None:
    client = await connect()
    client.send_raw(b"x", WSMsgType.CONTINUATION, fin=True)
    assert await client.wait_closed() == CloseCode.PROTOCOL_ERROR


async def test_ack_only_counts_from_a_connection_it_was_delivered_to(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session()
    publisher, subscriber, bystander = await connect(session), await connect(session), await connect(session)
    await subscriber.subscribe("t")
    message_id = publisher.publish("t")
    await publisher.recv_type("publish_response")
    await subscriber.recv_type("message")
    bystander.send({"type": "ack", "topic": "t", "messageId": message_id})
    await bystander.expect_silence()  # ignored: acks are idempotent
    assert server.broker.delivery.counters.ignored_acks == 1
    await publisher.expect_silence()
    subscriber.send({"type": "ack", "topic": "t", "messageId": message_id})
    assert (await publisher.recv())["type"] == "ack_received"
    # A second ack of the same message is ignored (no frame), not counted twice.
    subscriber.send({"type": "ack", "topic": "t", "messageId": message_id})
    await subscriber.expect_silence()
    await publisher.expect_silence()
    assert server.broker.delivery.counters.ignored_acks == 2 and server.broker.delivery.counters.acks == 1


async def test_two_tenants_with_the_same_message_id_see_nothing_of_each_other(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    one, two = await make_session(), await make_session()
    pub1, sub1 = await connect(one), await connect(one)
    pub2, sub2 = await connect(two), await connect(two)
    await sub1.subscribe("shared/topic")
    await sub2.subscribe("shared/topic")
    pub1.publish("shared/topic", data="one", message_id="same-id")
    pub2.publish("shared/topic", data="two", message_id="same-id")
    assert (await pub1.recv())["deliveredTo"] == 1
    assert (await pub2.recv())["deliveredTo"] == 1
    got1, got2 = await sub1.recv(), await sub2.recv()
    assert got1["data"] == "one" and got2["data"] == "two"
    # An ack in tenant two completes only tenant two's message.
    sub2.send({"type": "ack", "topic": "shared/topic", "messageId": "same-id"})
    assert (await pub2.recv())["type"] == "ack_received"
    await pub1.expect_silence()
    await sub1.expect_silence()


async def test_republished_message_id_is_not_fanned_out_twice(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    publisher, subscriber = await connect(session), await connect(session)
    await subscriber.subscribe("t")
    publisher.publish("t", message_id="retry-me")
    await publisher.recv_type("publish_response")
    await subscriber.recv_type("message")
    publisher.publish("t", message_id="retry-me")
    duplicate = await publisher.recv()
    assert duplicate["duplicate"] is True and duplicate["deliveredTo"] == 1
    await subscriber.expect_silence()


async def test_init_pipelined_with_subscribe(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    # Force the slow path: a fresh server process would run scrypt here.
    client = await connect()
    client.send({"type": "init", "sessionName": session["sessionName"], "password": "pw"})
    client.send({"type": "subscribe", "topic": "fast"})
    assert (await client.recv())["type"] == "init_response"
    assert (await client.recv()) == {"type": "subscribe_response", "success": True, "topic": "fast"}


async def test_client_close_code_is_echoed(connect: ClientFactory) -> None:
    client = await connect()
    client.transport.send_close(WSCloseCode(4321), b"bye")
    assert await client.wait_closed() == 4321


async def test_binary_before_init_and_garbage_binary(make_session: SessionFactory, connect: ClientFactory) -> None:
    client = await connect()
    client.send_raw(b"\x02" + b"f" * 40, WSMsgType.BINARY)
    assert (await client.recv())["code"] == ErrorCode.NOT_INITIALIZED
    session = await make_session()
    assert (await client.init(session["sessionName"], "pw"))["success"]
    client.send_raw(b"\x07junk", WSMsgType.BINARY)
    assert (await client.recv())["code"] == ErrorCode.INVALID_FILE_CHUNK


async def test_file_transfer_streams_through(make_session: SessionFactory, connect: ClientFactory) -> None:
    session = await make_session()
    sender, receiver = await connect(session), await connect(session)
    await receiver.subscribe("files")
    file_id = "0123456789abcdef0123456789abcdef0123"
    init_file = {
        "type": "init_file",
        "topic": "files",
        "fileId": file_id,
        "fileName": "a.bin",
        "fileSize": 3,
        "totalChunks": 1,
    }
    sender.send(init_file)
    assert await receiver.recv() == init_file
    chunk = b"\x02" + file_id.encode() + (0).to_bytes(4, "big") + b"\x00" * 16 + b"ciphertext"
    sender.send_raw(chunk, WSMsgType.BINARY)
    assert await receiver.recv_raw() == (WSMsgType.BINARY, chunk)
    sender.send({"type": "end_file", "topic": "files", "fileId": file_id, "hash": "abc"})
    assert (await receiver.recv())["type"] == "end_file"
    sender.send_raw(chunk, WSMsgType.BINARY)
    assert (await sender.recv())["code"] == ErrorCode.FILE_NOT_OPEN


async def test_many_bad_frames_do_not_disturb_another_session(
    make_session: SessionFactory, connect: ClientFactory
) -> None:
    calm, noisy = await make_session(), await make_session()
    publisher, subscriber = await connect(calm), await connect(calm)
    attacker = await connect(noisy)
    await subscriber.subscribe("t")
    for index in range(200):
        attacker.send_raw(b"\x00garbage" if index % 2 else b'{"type":"ack","messageId":"x"}')
    for _ in range(20):
        message_id = publisher.publish("t")
        assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
        assert (await subscriber.recv())["messageId"] == message_id
    await asyncio.sleep(0)

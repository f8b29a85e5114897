"""JSON abuse: every bad frame gets its exact error frame, the socket stays usable, the bystander notices nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastport_client_helpers import ClientFactory, WSClient

from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer

from .hostile_helpers import Bystander


async def _still_usable(client: WSClient) -> None:
    """The socket answers a normal frame after the abuse."""
    response = await client.subscribe("still/here")
    assert response == {"type": "subscribe_response", "success": True, "topic": "still/here"}


INVALID_JSON = {"type": "error", "error": "invalid JSON", "code": ErrorCode.INVALID_JSON}


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"type":"publish","topic":"t","data":"x","messageId":"m","timestamp":1e400}',
        b'{"type":"publish","topic":"t","data":"x","messageId":"m","timestamp":-1e400}',
        b'{"type":"publish","topic":"t","data":"x","messageId":"m","timestamp":1' + b"0" * 5000 + b"}",
        b'{"type":"subscribe","topic":"\\ud800"}',
        b'{"type":"subscribe","topic":"t"',
        b"NaN",
        b"",
    ],
    ids=["deep-array", "deep-object", "1e400", "-1e400", "10**5000", "lone-surrogate", "truncated", "nan", "empty"],
)
async def test_unparseable_json_gets_1001(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, payload: bytes
) -> None:
    client = await connect(attacker)
    client.send_raw(payload)
    assert await client.recv() == INVALID_JSON
    await _still_usable(client)
    await bystander.check()


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"init"', b"null", b"true"])
async def test_json_that_is_not_an_object_gets_1002(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, payload: bytes
) -> None:
    client = await connect(attacker)
    client.send_raw(payload)
    assert await client.recv() == {
        "type": "error",
        "error": "frame must be a JSON object",
        "code": ErrorCode.NOT_AN_OBJECT,
    }
    await _still_usable(client)
    await bystander.check()


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"type": None},
        {"type": 1},
        {"type": 1.5},
        {"type": True},
        {"type": "INIT"},
        {"type": "message"},
        {"type": "init_response"},
        {"type": "init\u0000"},
        pytest.param({"type": ["init"]}, id="type-list"),
        pytest.param({"type": {"init": 1}}, id="type-object"),
    ],
)
async def test_empty_object_and_unknown_types_get_1003(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, frame: dict[str, Any]
) -> None:
    client = await connect(attacker)
    client.send(frame)
    assert await client.recv() == {
        "type": "error",
        "error": "Unknown message type",
        "code": ErrorCode.UNKNOWN_TYPE,
        "field": "type",
    }
    await _still_usable(client)
    await bystander.check()


VALID: dict[str, dict[str, Any]] = {
    "init": {"type": "init", "sessionName": "attacker", "password": "attacker-password", "userId": "u"},
    "subscribe": {"type": "subscribe", "topic": "t"},
    "unsubscribe": {"type": "unsubscribe", "topic": "t"},
    "publish": {"type": "publish", "topic": "t", "data": "d", "messageId": "m", "hash": "h", "timestamp": 1},
    "ack": {"type": "ack", "messageId": "m", "topic": "t"},
    "init_file": {"type": "init_file", "topic": "t", "fileId": "f"},
    "end_file": {"type": "end_file", "topic": "t", "fileId": "f"},
}
NUMBER_FIELDS = {("publish", "timestamp")}
WRONG_VALUES: list[Any] = [1, 1.5, True, [], {}, ["x"], {"x": "y"}]
CASES = [
    (frame_type, field, value)
    for frame_type, frame in VALID.items()
    for field in frame
    if field != "type"
    for value in (["x", True, [], {}] if (frame_type, field) in NUMBER_FIELDS else WRONG_VALUES)
]


@pytest.mark.parametrize(("frame_type", "field", "value"), CASES)
async def test_wrong_type_in_every_field_of_every_frame_gets_1005(
    connect: ClientFactory,
    attacker: dict[str, Any],
    bystander: Bystander,
    frame_type: str,
    field: str,
    value: Any,
) -> None:
    client = await connect(attacker)
    client.send({**VALID[frame_type], field: value})
    answer = await client.recv()
    assert answer["type"] == "error" and answer["code"] == ErrorCode.INVALID_FIELD, answer
    assert answer["field"] == field and field in answer["error"]
    await _still_usable(client)
    await bystander.check()


REQUIRED = [
    (t, f)
    for t, frame in VALID.items()
    for f in frame
    if f not in ("type", "userId", "hash", "timestamp") and not (t == "ack" and f == "topic")
]


@pytest.mark.parametrize(("frame_type", "field"), REQUIRED)
@pytest.mark.parametrize("how", ["absent", "null"])
async def test_missing_field_gets_1004(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, frame_type: str, field: str, how: str
) -> None:
    client = await connect(attacker)
    frame = {**VALID[frame_type]}
    if how == "absent":
        del frame[field]
    else:
        frame[field] = None
    client.send(frame)
    assert await client.recv() == {
        "type": "error",
        "error": f"missing field: {field}",
        "code": ErrorCode.MISSING_FIELD,
        "field": field,
    }
    await _still_usable(client)
    await bystander.check()


async def test_duplicate_keys_last_one_wins(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    client = await connect(attacker)
    client.send_raw(b'{"type":"subscribe","topic":"victim/#","topic":"mine"}')
    assert await client.recv() == {"type": "subscribe_response", "success": True, "topic": "mine"}
    client.send_raw(b'{"type":"publish","type":"subscribe","topic":"a"}')
    assert await client.recv() == {"type": "subscribe_response", "success": True, "topic": "a"}
    await client.expect_silence()
    await bystander.check()


async def test_nul_in_topics_is_refused_and_in_data_is_opaque(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    publisher, subscriber = await connect(attacker), await connect(attacker)
    answer = await subscriber.subscribe("a\u0000b")
    assert answer["success"] is False and answer["code"] == ErrorCode.INVALID_TOPIC and answer["topic"] == "a\u0000b"
    message_id = publisher.publish("a\u0000b", data="x")
    answer = await publisher.recv()
    assert answer["type"] == "publish_response" and answer["success"] is False
    assert answer["code"] == ErrorCode.INVALID_TOPIC and answer["messageId"] == message_id
    await subscriber.subscribe("nul")
    message_id = publisher.publish("nul", data="\u0000data\u0000", message_id="id\u0000")
    assert (await publisher.recv())["deliveredTo"] == 1
    message = await subscriber.recv()
    assert message["data"] == "\u0000data\u0000" and message["messageId"] == message_id == "id\u0000"
    await bystander.check()


async def test_nul_in_session_name_is_session_not_found(connect: ClientFactory, bystander: Bystander) -> None:
    client = await connect()
    answer = await client.init("victim\u0000", "victim-password")
    assert answer == {
        "type": "init_response",
        "success": False,
        "error": "Session not found",
        "code": ErrorCode.SESSION_NOT_FOUND,
    }
    await bystander.check()


async def test_huge_strings_near_the_frame_limit(
    server: FastportServer, connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    limit = server.config.max_frame_size
    publisher, subscriber = await connect(attacker), await connect(attacker)
    await subscriber.subscribe("big")
    frame = {"type": "publish", "topic": "big", "data": "", "messageId": "big-1"}
    frame["data"] = "d" * (limit - len(orjson.dumps(frame)))
    assert len(orjson.dumps(frame)) == limit
    publisher.send(frame)
    assert (await publisher.recv())["deliveredTo"] == 1
    assert (await subscriber.recv())["data"] == frame["data"]
    # Huge values in bounded fields are refused by name, not by a crash.
    for field, code in (("topic", ErrorCode.INVALID_TOPIC), ("messageId", ErrorCode.INVALID_FIELD)):
        publisher.send({"type": "publish", "topic": "big", "data": "x", "messageId": "m", field: "t" * (limit - 200)})
        answer = await publisher.recv()
        assert answer["code"] == code, answer
    publisher.send({"type": "init", "sessionName": "s" * (limit - 100), "password": "p"})
    answer = await publisher.recv()
    assert answer["code"] == ErrorCode.INVALID_FIELD and answer["field"] == "sessionName"
    # One byte more than the limit closes the socket with 1009.
    frame["data"] += "d"
    publisher.send(frame)
    assert await publisher.wait_closed() == CloseCode.MESSAGE_TOO_BIG
    await bystander.check()

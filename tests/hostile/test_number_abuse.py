"""Numbers JavaScript and Dart clients cannot hold: refused in every numeric field of every client frame (1005)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastport_client_helpers import ClientFactory

from fastport.errors import ErrorCode
from fastport.protocol.codec import MAX_SAFE_INTEGER

from .hostile_helpers import Bystander

FRAME = {"type": "init_file", "topic": "files/x", "fileId": "f1"}
# Each case: a valid frame and the path of the numeric field the test fills in.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "publish.timestamp": ({"type": "publish", "topic": "t", "data": "d", "messageId": "m"}, "timestamp"),
    "publish.qos": ({"type": "publish", "topic": "t", "data": "d", "messageId": "m"}, "qos"),
    "subscribe.qos": ({"type": "subscribe", "topic": "t"}, "qos"),
    "init.will.qos": ({"type": "init", "sessionName": "attacker", "password": "attacker-password"}, "will.qos"),
    "init_file.fileSize": (FRAME, "fileSize"),
    "init_file.totalChunks": (FRAME, "totalChunks"),
    "init_file.meta.size": (FRAME, "meta.size"),
    "init_file.chunks[1]": (FRAME, "chunks[1]"),
    "end_file.totalChunks": ({"type": "end_file", "topic": "files/x", "fileId": "f1"}, "totalChunks"),
    "ack.timestamp": ({"type": "ack", "topic": "t", "messageId": "m"}, "timestamp"),
    "unsubscribe.extra": ({"type": "unsubscribe", "topic": "t"}, "extra"),
}
UNSAFE: list[int | float] = [
    18446744073709551616,  # 2^64: the value (orjson reads it as a float)
    MAX_SAFE_INTEGER + 1,
    -(MAX_SAFE_INTEGER + 1),
    18446744073709551615,  # 2^64 - 1: still an int to orjson
    -9223372036854775809,
    9007199254740992.0,  # integral, huge floats
    1e300,
    -1.5e17,
]


def _with(frame: dict[str, Any], path: str, value: Any) -> bytes:
    """``frame`` with ``value`` at ``path`` (``a.b``, ``a[1]``), written with big integers kept exact."""
    body: dict[str, Any] = {**frame}
    if path.startswith("will."):
        body["will"] = {"topic": "wills/me", "data": "gone", path.split(".", 1)[1]: value}
    elif path == "meta.size":
        body["meta"] = {"name": "x.bin", "size": value}
    elif path == "chunks[1]":
        body["chunks"] = [1, value]
    else:
        body[path] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize("value", UNSAFE, ids=repr)
@pytest.mark.parametrize("case", CASES)
async def test_an_unsafe_number_in_any_field_gets_1005_naming_it(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander, case: str, value: float
) -> None:
    frame, path = CASES[case]
    client = await connect(attacker)
    client.send_raw(_with(frame, path, value))
    answer = await client.recv()
    assert answer["type"] == "error" and answer["code"] == ErrorCode.INVALID_FIELD, answer
    assert answer["field"] == path and "2^53 - 1" in answer["error"], answer
    await client.expect_silence(0.05)  # nothing was forwarded, nothing else answered
    assert (await client.subscribe("still/here"))["success"] is True
    await bystander.check()


async def test_the_safe_extremes_are_forwarded_exactly(
    connect: ClientFactory, attacker: dict[str, Any], bystander: Bystander
) -> None:
    publisher, subscriber = await connect(attacker), await connect(attacker)
    await subscriber.subscribe("edge/#")
    for timestamp in (MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 1.5e15, 0.25):
        publisher.send_raw(
            _with(
                {"type": "publish", "topic": "edge/t", "data": "d", "messageId": f"m{timestamp}"},
                "timestamp",
                timestamp,
            )
        )
        assert (await publisher.recv())["success"] is True
        assert (await subscriber.recv())["timestamp"] == timestamp
    init_file = _with(FRAME | {"topic": "edge/f"}, "fileSize", MAX_SAFE_INTEGER)
    publisher.send_raw(init_file)
    assert json.loads((await subscriber.recv_raw())[1]) == json.loads(init_file)
    await bystander.check()


async def test_unsafe_numbers_before_init_are_refused_too(connect: ClientFactory, bystander: Bystander) -> None:
    client = await connect()
    client.send_raw(_with({"type": "init", "sessionName": "victim", "password": "x"}, "retries", 1 << 64))
    answer = await client.recv()
    assert answer["code"] == ErrorCode.INVALID_FIELD and answer["field"] == "retries", answer
    await bystander.check()

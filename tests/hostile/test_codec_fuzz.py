"""Bounded fuzz of the frame codec: ``decode`` returns a frame or raises a ProtocolError, never anything else."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastport.errors import ProtocolError
from fastport.protocol import codec

TYPES = ["init", "subscribe", "unsubscribe", "publish", "ack", "init_file", "end_file", "message", ""]
FIELDS = [
    "type",
    "sessionName",
    "password",
    "userId",
    "topic",
    "data",
    "messageId",
    "hash",
    "timestamp",
    "fileId",
    "qos",
    "retain",
    "clientId",
    "durable",
    "will",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        codec.decode(payload)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(payload: bytes) -> None:
    _decodes_or_refuses(payload)


@FUZZ
@given(st.sampled_from(TYPES), st.dictionaries(st.sampled_from(FIELDS[1:]), JSON, max_size=8))
def test_frame_shaped_objects(frame_type: str, fields: dict[str, Any]) -> None:
    _decodes_or_refuses(orjson.dumps({"type": frame_type, **fields}))


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8))
def test_any_object(fields: dict[str, Any]) -> None:
    _decodes_or_refuses(orjson.dumps(fields))

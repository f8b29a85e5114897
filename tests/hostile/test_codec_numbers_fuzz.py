"""Bounded fuzz of the codec's number rule: a decoded frame holds only numbers within ±(2^53 - 1), anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastport.errors import ErrorCode, ProtocolError
from fastport.protocol import codec
from fastport.protocol.codec import MAX_SAFE_INTEGER

VALID: dict[str, dict[str, Any]] = {
    "init": {"type": "init", "sessionName": "s", "password": "p"},
    "subscribe": {"type": "subscribe", "topic": "t"},
    "unsubscribe": {"type": "unsubscribe", "topic": "t"},
    "publish": {"type": "publish", "topic": "t", "data": "d", "messageId": "m"},
    "ack": {"type": "ack", "messageId": "m"},
    "init_file": {"type": "init_file", "topic": "t", "fileId": "f"},
    "end_file": {"type": "end_file", "topic": "t", "fileId": "f"},
}
BIG = 1 << 80
UNSAFE = (
    st.integers(min_value=MAX_SAFE_INTEGER + 1, max_value=BIG)
    | st.integers(min_value=-BIG, max_value=-MAX_SAFE_INTEGER - 1)
    | st.floats(min_value=MAX_SAFE_INTEGER + 1, allow_infinity=False)
    | st.floats(max_value=-MAX_SAFE_INTEGER - 1, allow_infinity=False)
)
NUMBERS = st.integers(min_value=-BIG, max_value=BIG) | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
# Fields the fuzz may add: ones no decoder reads (forwarded, or ignored) and numeric ones it does.
EXTRA = st.sampled_from(["timestamp", "qos", "fileSize", "totalChunks", "meta", "x"])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _numbers(value: Any) -> list[int | float]:
    if type(value) in (int, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return []


@FUZZ
@given(st.sampled_from(sorted(VALID)), EXTRA, UNSAFE)
def test_an_unsafe_number_is_refused_with_its_field(frame_type: str, field: str, value: float) -> None:
    payload = json.dumps({**VALID[frame_type], field: value}).encode()
    with pytest.raises(ProtocolError) as refused:
        codec.frame_of(codec.parse(payload), payload)
    assert refused.value.error_code == ErrorCode.INVALID_FIELD and refused.value.field == field


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.dictionaries(EXTRA, JSON, max_size=4))
def test_what_decodes_holds_only_safe_numbers(frame_type: str, fields: dict[str, Any]) -> None:
    payload = json.dumps({**VALID[frame_type], **fields}).encode()
    try:
        obj = codec.parse(payload)
        codec.frame_of(obj, payload)
    except ProtocolError:
        return
    assert all(abs(number) <= MAX_SAFE_INTEGER for number in _numbers(obj))

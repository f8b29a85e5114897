"""orjson bytes <-> fastPort frames, with the shape and type checks of every field.

``decode`` turns one text-frame payload into a typed client frame or raises a
``ProtocolError`` subclass that names the offending field. The ``encode_*`` helpers
build server frames as bytes, ready to be written to any number of connections.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from fastport.errors import ErrorCode, FastportError, InvalidUtf8, ProtocolError
from fastport.protocol import frames
from fastport.protocol.frames import Ack, ClientFrame, FileControl, Init, Publish, Subscribe, Unsubscribe

MAX_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 256
MAX_PASSWORD_LENGTH: Final = 1024


def _field(obj: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    value = obj.get(name)
    if value is None:
        raise ProtocolError(f"missing field: {name}", code=ErrorCode.MISSING_FIELD, field=name)
    if not isinstance(value, str):
        raise ProtocolError(f"field {name} must be a string", code=ErrorCode.INVALID_FIELD, field=name)
    if max_length is not None and len(value) > max_length:
        raise ProtocolError(
            f"field {name} too long: {len(value)} > {max_length}", code=ErrorCode.INVALID_FIELD, field=name
        )
    return value


def _optional_str(obj: dict[str, Any], name: str, *, max_length: int) -> str | None:
    if obj.get(name) is None:
        return None
    return _field(obj, name, max_length=max_length)


def _non_empty(value: str, name: str) -> str:
    if not value:
        raise ProtocolError(f"field {name} must not be empty", code=ErrorCode.INVALID_FIELD, field=name)
    return value


def _decode_init(obj: dict[str, Any], raw: bytes) -> Init:
    return Init(
        session_name=_field(obj, "sessionName", max_length=MAX_NAME_LENGTH),
        password=_field(obj, "password", max_length=MAX_PASSWORD_LENGTH),
        user_id=_optional_str(obj, "userId", max_length=MAX_NAME_LENGTH),
    )


def _decode_subscribe(obj: dict[str, Any], raw: bytes) -> Subscribe:
    return Subscribe(topic=_field(obj, "topic"))


def _decode_unsubscribe(obj: dict[str, Any], raw: bytes) -> Unsubscribe:
    return Unsubscribe(topic=_field(obj, "topic"))


def _decode_publish(obj: dict[str, Any], raw: bytes) -> Publish:
    timestamp = obj.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))):
        raise ProtocolError("field timestamp must be a number", code=ErrorCode.INVALID_FIELD, field="timestamp")
    return Publish(
        topic=_field(obj, "topic"),
        data=_field(obj, "data"),
        message_id=_non_empty(_field(obj, "messageId", max_length=MAX_ID_LENGTH), "messageId"),
        hash=_optional_str(obj, "hash", max_length=MAX_ID_LENGTH),
        timestamp=timestamp,
    )


def _decode_ack(obj: dict[str, Any], raw: bytes) -> Ack:
    return Ack(
        message_id=_field(obj, "messageId", max_length=MAX_ID_LENGTH),
        topic=_optional_str(obj, "topic", max_length=1 << 20),
    )


def _decode_file_control(obj: dict[str, Any], raw: bytes) -> FileControl:
    return FileControl(
        kind=obj["type"],
        topic=_field(obj, "topic"),
        file_id=_non_empty(_field(obj, "fileId", max_length=MAX_ID_LENGTH), "fileId"),
        raw=raw,
    )


_DECODERS: Final = {
    frames.INIT: _decode_init,
    frames.SUBSCRIBE: _decode_subscribe,
    frames.UNSUBSCRIBE: _decode_unsubscribe,
    frames.PUBLISH: _decode_publish,
    frames.ACK: _decode_ack,
    frames.INIT_FILE: _decode_file_control,
    frames.END_FILE: _decode_file_control,
}


def decode(payload: bytes) -> ClientFrame:
    """Decode one text-frame payload into a client frame.

    Args:
        payload: the complete (reassembled) payload of a text frame.

    Returns:
        The typed frame.

    Raises:
        InvalidUtf8: the payload is not valid UTF-8 (the connection must be closed with 1007).
        ProtocolError: invalid JSON, not an object, unknown ``type``, or a missing or
            wrong-typed field (``field`` names it); the connection stays open.
    """
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUtf8("text frame is not valid UTF-8", code=ErrorCode.INVALID_JSON) from None
        raise ProtocolError("invalid JSON", code=ErrorCode.INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame must be a JSON object", code=ErrorCode.NOT_AN_OBJECT)
    decoder = _DECODERS.get(obj.get("type"))  # type: ignore[arg-type]
    if decoder is None:
        raise ProtocolError("Unknown message type", code=ErrorCode.UNKNOWN_TYPE, field="type")
    return decoder(obj, payload)  # type: ignore[operator, no-any-return]


def encode(obj: dict[str, Any]) -> bytes:
    """Encode one server frame."""
    return orjson.dumps(obj)


def encode_error(exc: FastportError, response_type: str | None = None, **extra: Any) -> bytes:
    """Encode the error frame answering ``exc``.

    Args:
        exc: the error; its ``error`` string and ``error_code`` go on the wire.
        response_type: the response ``type`` the client waits for (``init_response``,
            ``publish_response``, ...); None sends a generic ``"type":"error"`` frame.
        **extra: further fields (``messageId``, ``topic``) that tie the error to a request.
    """
    body: dict[str, Any] = {"type": response_type or "error"}
    if response_type is not None:
        body["success"] = False
    body["error"] = exc.error
    body["code"] = int(exc.error_code)
    if exc.field is not None:
        body["field"] = exc.field
    body.update(extra)
    return orjson.dumps(body)


def encode_message(publish: Publish, timestamp: int | float, retry: int = 0) -> bytes:
    """Encode the ``message`` frame delivering ``publish`` (``retry`` > 0 marks a redelivery)."""
    body: dict[str, Any] = {
        "type": "message",
        "topic": publish.topic,
        "data": publish.data,
        "hash": publish.hash,
        "timestamp": timestamp,
        "messageId": publish.message_id,
    }
    if publish.hash is None:
        del body["hash"]
    if retry:
        body["retry"] = retry
    return orjson.dumps(body)

"""orjson bytes <-> fastPort frames, with the shape and type checks of every field.

The broker's side: ``decode`` turns one text-frame payload into a typed client frame or raises a
``ProtocolError`` subclass that names the offending field; ``encode``, ``encode_error`` and
``encode_message`` build server frames as bytes, ready to be written to any number of connections.

The client's side: ``encode_client`` writes a typed client frame, ``decode_server`` reads a server
frame into its typed form (``frames.ServerFrame``), with the same field checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from fastport.errors import ErrorCode, FastportError, InvalidUtf8, ProtocolError
from fastport.protocol import frames
from fastport.protocol.frames import (
    QOS_AT_LEAST_ONCE,
    Ack,
    AckReceived,
    ClientFrame,
    Disconnect,
    Error,
    FileControl,
    Init,
    InitResponse,
    Message,
    Publish,
    PublishResponse,
    ServerFrame,
    Subscribe,
    SubscribeResponse,
    Unsubscribe,
    UnsubscribeResponse,
    Will,
)

MAX_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 256
MAX_PASSWORD_LENGTH: Final = 1024
CLIENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: The largest integer JavaScript and Dart clients represent exactly (``Number.MAX_SAFE_INTEGER``): every
#: number of a client frame, integral or not, must lie within ±this.
MAX_SAFE_INTEGER: Final = (1 << 53) - 1


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


def _invalid(name: str, what: str) -> ProtocolError:
    return ProtocolError(f"field {name} must be {what}", code=ErrorCode.INVALID_FIELD, field=name)


def _unsafe(name: str) -> ProtocolError:
    if len(name) > MAX_NAME_LENGTH:  # a path built from the client's own keys: bounded before it is echoed
        name = name[: MAX_NAME_LENGTH - 3] + "..."
    return _invalid(name, f"a number from -{MAX_SAFE_INTEGER} to {MAX_SAFE_INTEGER} (2^53 - 1)")


def _field_path(path: str, key: object, in_dict: bool) -> str:
    """The ``field`` of a value: ``name`` at the top, ``a.b`` in an object, ``a[0]`` in an array."""
    if not path:
        return str(key)
    return f"{path}.{key}" if in_dict else f"{path}[{key}]"


def _check_numbers(obj: dict[str, Any]) -> None:
    """Refuse a number outside ±``MAX_SAFE_INTEGER`` anywhere in ``obj`` (``field``: its path, ``a.b[0]``)."""
    pending: list[tuple[str, dict[str, Any] | list[Any]]] = [("", obj)]
    while pending:  # a loop, not recursion: objects may nest as deep as the parser allows
        path, container = pending.pop()
        in_dict = isinstance(container, dict)
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            kind = type(value)
            if kind is int or kind is float:
                if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                    raise _unsafe(_field_path(path, key, in_dict))
            elif kind is dict or kind is list:
                pending.append((_field_path(path, key, in_dict), value))


def _qos(obj: dict[str, Any], name: str = "qos") -> int:
    value = obj.get(name)
    if value is None:
        return QOS_AT_LEAST_ONCE
    if isinstance(value, bool) or value not in (0, 1):
        raise _invalid(name, "0 or 1")
    return int(value)


def _flag(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(name, "true or false")
    return value


def _timestamp(obj: dict[str, Any]) -> int | float | None:
    value = obj.get("timestamp")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid("timestamp", "a number")
    return value


def _decode_will(obj: dict[str, Any]) -> Will | None:
    will = obj.get("will")
    if will is None:
        return None
    if not isinstance(will, dict):
        raise _invalid("will", "an object")
    try:
        return Will(
            topic=_field(will, "topic"),
            data=_field(will, "data"),
            hash=_optional_str(will, "hash", max_length=MAX_ID_LENGTH),
            qos=_qos(will),
            retain=_flag(will, "retain"),
        )
    except ProtocolError as exc:
        raise ProtocolError(f"will: {exc.error}", code=exc.error_code, field=f"will.{exc.field}") from None


def _decode_init(obj: dict[str, Any], raw: bytes) -> Init:
    client_id = _optional_str(obj, "clientId", max_length=MAX_ID_LENGTH)
    if client_id is not None and not CLIENT_ID_RE.fullmatch(client_id):
        raise _invalid("clientId", "1-128 characters of A-Z a-z 0-9 _ . : -")
    durable = _flag(obj, "durable")
    if durable and client_id is None:
        raise ProtocolError("durable needs a clientId", code=ErrorCode.MISSING_FIELD, field="clientId")
    return Init(
        session_name=_field(obj, "sessionName", max_length=MAX_NAME_LENGTH),
        password=_field(obj, "password", max_length=MAX_PASSWORD_LENGTH),
        user_id=_optional_str(obj, "userId", max_length=MAX_NAME_LENGTH),
        client_id=client_id,
        durable=durable,
        will=_decode_will(obj),
    )


def _decode_subscribe(obj: dict[str, Any], raw: bytes) -> Subscribe:
    return Subscribe(topic=_field(obj, "topic"), qos=_qos(obj))


def _decode_unsubscribe(obj: dict[str, Any], raw: bytes) -> Unsubscribe:
    return Unsubscribe(topic=_field(obj, "topic"))


def _decode_publish(obj: dict[str, Any], raw: bytes) -> Publish:
    return Publish(
        topic=_field(obj, "topic"),
        data=_field(obj, "data"),
        message_id=_non_empty(_field(obj, "messageId", max_length=MAX_ID_LENGTH), "messageId"),
        hash=_optional_str(obj, "hash", max_length=MAX_ID_LENGTH),
        timestamp=_timestamp(obj),
        qos=_qos(obj),
        retain=_flag(obj, "retain"),
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


def _decode_disconnect(obj: dict[str, Any], raw: bytes) -> Disconnect:
    return Disconnect()


_DECODERS: Final[dict[object, Callable[[dict[str, Any], bytes], ClientFrame]]] = {
    frames.INIT: _decode_init,
    frames.SUBSCRIBE: _decode_subscribe,
    frames.UNSUBSCRIBE: _decode_unsubscribe,
    frames.PUBLISH: _decode_publish,
    frames.ACK: _decode_ack,
    frames.INIT_FILE: _decode_file_control,
    frames.END_FILE: _decode_file_control,
    frames.DISCONNECT: _decode_disconnect,
}


def parse(payload: bytes) -> dict[str, Any]:
    """Parse one text-frame payload into its JSON object.

    Raises:
        InvalidUtf8: the payload is not valid UTF-8 (the connection must be closed with 1007).
        ProtocolError: invalid JSON, or not an object; the connection stays open.
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
    return obj


def frame_of(obj: dict[str, Any], payload: bytes) -> ClientFrame:
    """The typed frame of a parsed object (``payload`` is its raw text, kept by file frames).

    Raises:
        ProtocolError: unknown ``type``, a missing or wrong-typed field, or a number anywhere in the
            object (nested ones too) outside ±``MAX_SAFE_INTEGER`` (``field`` names it).
    """
    frame_type = obj.get("type")
    decoder = _DECODERS.get(frame_type) if isinstance(frame_type, str) else None
    if decoder is None:
        raise ProtocolError("Unknown message type", code=ErrorCode.UNKNOWN_TYPE, field="type")
    _check_numbers(obj)
    return decoder(obj, payload)


def ack_message_id(obj: dict[str, Any]) -> str | None:
    """The ``messageId`` of a well-formed ``ack`` object, else None (the typed path then answers it).

    Acks are one frame per delivery: this lets the broker handle them without building a frame. An
    ack with any other field takes the typed path, which checks it (its numbers, for one).
    """
    if obj.get("type") != frames.ACK:
        return None
    message_id = obj.get("messageId")
    topic = obj.get("topic")
    if type(message_id) is not str or len(message_id) > MAX_ID_LENGTH or not (topic is None or type(topic) is str):
        return None
    if len(obj) != (2 if topic is None else 3):
        return None
    return message_id


def decode(payload: bytes) -> ClientFrame:
    """Decode one text-frame payload into a client frame (``parse`` then ``frame_of``).

    Raises:
        InvalidUtf8: the payload is not valid UTF-8 (the connection must be closed with 1007).
        ProtocolError: invalid JSON, not an object, unknown ``type``, or a missing or
            wrong-typed field (``field`` names it); the connection stays open.
    """
    return frame_of(parse(payload), payload)


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


def encode_message(
    publish: Publish, timestamp: int | float, *, retry: int = 0, qos: int = QOS_AT_LEAST_ONCE, retained: bool = False
) -> bytes:
    """Encode the ``message`` frame delivering ``publish``.

    Args:
        publish: the published frame (topic, data, hash, messageId).
        timestamp: the timestamp to show (the publisher's, or the broker's receive time).
        retry: k > 0 marks the k-th redelivery.
        qos: 0 adds ``"qos": 0``, telling the receiver not to ack.
        retained: adds ``"retained": true`` for a retained message sent on subscribe.
    """
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
    if qos != QOS_AT_LEAST_ONCE:
        body["qos"] = qos
    if retained:
        body["retained"] = True
    return orjson.dumps(body)


# ------------------------------------------------------------------------------------- the client's side


def _will_body(will: Will) -> dict[str, Any]:
    body: dict[str, Any] = {"topic": will.topic, "data": will.data}
    if will.hash is not None:
        body["hash"] = will.hash
    if will.qos != QOS_AT_LEAST_ONCE:
        body["qos"] = will.qos
    if will.retain:
        body["retain"] = True
    return body


def encode_client(frame: ClientFrame) -> bytes:
    """Encode one client frame, with only the optional fields that differ from their default.

    ``FileControl`` is written as its ``raw`` text (which carries the fields the broker does not read).
    """
    body: dict[str, Any]
    if isinstance(frame, Publish):
        body = {"type": frames.PUBLISH, "topic": frame.topic, "data": frame.data}
        if frame.hash is not None:
            body["hash"] = frame.hash
        if frame.timestamp is not None:
            body["timestamp"] = frame.timestamp
        body["messageId"] = frame.message_id
        if frame.qos != QOS_AT_LEAST_ONCE:
            body["qos"] = frame.qos
        if frame.retain:
            body["retain"] = True
    elif isinstance(frame, Ack):
        body = {"type": frames.ACK}
        if frame.topic is not None:
            body["topic"] = frame.topic
        body["messageId"] = frame.message_id
    elif isinstance(frame, Subscribe):
        body = {"type": frames.SUBSCRIBE, "topic": frame.topic}
        if frame.qos != QOS_AT_LEAST_ONCE:
            body["qos"] = frame.qos
    elif isinstance(frame, Unsubscribe):
        body = {"type": frames.UNSUBSCRIBE, "topic": frame.topic}
    elif isinstance(frame, Init):
        body = {"type": frames.INIT, "sessionName": frame.session_name, "password": frame.password}
        if frame.user_id is not None:
            body["userId"] = frame.user_id
        if frame.client_id is not None:
            body["clientId"] = frame.client_id
        if frame.durable:
            body["durable"] = True
        if frame.will is not None:
            body["will"] = _will_body(frame.will)
    elif isinstance(frame, Disconnect):
        body = {"type": frames.DISCONNECT}
    else:
        return frame.raw
    return orjson.dumps(body)


def _optional_int(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "an integer")
    return value


def _success(obj: dict[str, Any]) -> bool:
    value = obj.get("success")
    if not isinstance(value, bool):
        raise _invalid("success", "true or false")
    return value


def _refusal(obj: dict[str, Any]) -> tuple[str | None, int | None, str | None]:
    """``error``, ``code`` and ``field`` of a response (None on a success)."""
    return (
        _optional_str(obj, "error", max_length=1 << 16),
        _optional_int(obj, "code"),
        _optional_str(obj, "field", max_length=MAX_NAME_LENGTH),
    )


def _decode_init_response(obj: dict[str, Any], raw: bytes) -> InitResponse:
    resumed = obj.get("resumed")
    if resumed is not None and not isinstance(resumed, bool):
        raise _invalid("resumed", "true or false")
    filters = obj.get("subscriptions")
    subscriptions: tuple[str, ...] | None = None
    if filters is not None:
        if not isinstance(filters, list) or not all(isinstance(item, str) for item in filters):
            raise _invalid("subscriptions", "a list of strings")
        subscriptions = tuple(filters)
    error, code, field = _refusal(obj)
    return InitResponse(
        success=_success(obj),
        session_name=_optional_str(obj, "sessionName", max_length=MAX_NAME_LENGTH),
        resumed=resumed,
        subscriptions=subscriptions,
        error=error,
        code=code,
        field=field,
    )


def _decode_subscribe_response(obj: dict[str, Any], raw: bytes) -> SubscribeResponse:
    error, code, field = _refusal(obj)
    topic = _optional_str(obj, "topic", max_length=1 << 20)
    return SubscribeResponse(success=_success(obj), topic=topic, error=error, code=code, field=field)


def _decode_unsubscribe_response(obj: dict[str, Any], raw: bytes) -> UnsubscribeResponse:
    error, code, field = _refusal(obj)
    topic = _optional_str(obj, "topic", max_length=1 << 20)
    return UnsubscribeResponse(success=_success(obj), topic=topic, error=error, code=code, field=field)


def _decode_publish_response(obj: dict[str, Any], raw: bytes) -> PublishResponse:
    error, code, field = _refusal(obj)
    delivered_to = _optional_int(obj, "deliveredTo")
    return PublishResponse(
        success=_success(obj),
        message_id=_optional_str(obj, "messageId", max_length=MAX_ID_LENGTH),
        delivered_to=0 if delivered_to is None else delivered_to,
        duplicate=_flag(obj, "duplicate"),
        error=error,
        code=code,
        field=field,
    )


def _decode_ack_received(obj: dict[str, Any], raw: bytes) -> AckReceived:
    return AckReceived(
        message_id=_field(obj, "messageId", max_length=MAX_ID_LENGTH),
        topic=_optional_str(obj, "topic", max_length=1 << 20),
    )


def _decode_message(obj: dict[str, Any], raw: bytes) -> Message:
    retry = _optional_int(obj, "retry")
    if retry is not None and retry < 0:
        raise _invalid("retry", "a count >= 0")
    return Message(
        topic=_field(obj, "topic"),
        data=_field(obj, "data"),
        message_id=_field(obj, "messageId", max_length=MAX_ID_LENGTH),
        timestamp=_timestamp(obj),
        hash=_optional_str(obj, "hash", max_length=MAX_ID_LENGTH),
        retry=retry or 0,
        qos=_qos(obj),
        retained=_flag(obj, "retained"),
    )


def _decode_error(obj: dict[str, Any], raw: bytes) -> Error:
    return Error(
        error=_field(obj, "error", max_length=1 << 16),
        code=_optional_int(obj, "code"),
        field=_optional_str(obj, "field", max_length=MAX_NAME_LENGTH),
        message_id=_optional_str(obj, "messageId", max_length=MAX_ID_LENGTH),
        topic=_optional_str(obj, "topic", max_length=1 << 20),
        dropped=_optional_int(obj, "dropped"),
    )


_SERVER_DECODERS: Final[dict[object, Callable[[dict[str, Any], bytes], ServerFrame]]] = {
    frames.INIT_RESPONSE: _decode_init_response,
    frames.SUBSCRIBE_RESPONSE: _decode_subscribe_response,
    frames.UNSUBSCRIBE_RESPONSE: _decode_unsubscribe_response,
    frames.PUBLISH_RESPONSE: _decode_publish_response,
    frames.ACK_RECEIVED: _decode_ack_received,
    frames.MESSAGE: _decode_message,
    frames.ERROR: _decode_error,
    frames.INIT_FILE: _decode_file_control,
    frames.END_FILE: _decode_file_control,
}


def server_frame_of(obj: dict[str, Any], payload: bytes) -> ServerFrame:
    """The typed server frame of a parsed object (``payload`` is its raw text, kept by file frames).

    Raises:
        ProtocolError: unknown ``type``, or a missing or wrong-typed field (``field`` names it).
    """
    frame_type = obj.get("type")
    decoder = _SERVER_DECODERS.get(frame_type) if isinstance(frame_type, str) else None
    if decoder is None:
        raise ProtocolError("Unknown message type", code=ErrorCode.UNKNOWN_TYPE, field="type")
    return decoder(obj, payload)


def decode_server(payload: bytes) -> ServerFrame:
    """Decode one server text-frame payload into its typed frame (``parse`` then ``server_frame_of``).

    Raises:
        InvalidUtf8: the payload is not valid UTF-8.
        ProtocolError: invalid JSON, not an object, unknown ``type``, or a missing or wrong-typed
            field (``field`` names it).
    """
    return server_frame_of(parse(payload), payload)

"""One wire format, both directions (issue #16 item 3): every frame type survives encode -> decode.

* Client frames: ``codec.encode_client`` (the client's writer) -> ``codec.decode`` (the broker's reader) gives
  the frame back.
* Server frames: the broker's own encoders (``codec.encode_message``, ``codec.encode_error`` and ``codec.encode``
  of the dicts ``fastport/broker/*.py`` sends) -> ``codec.decode_server`` (the client's reader) gives the typed
  frame. ``test_a_live_broker_speaks_only_frames_decode_server_reads`` then runs the real ``Broker`` in-process
  and decodes every byte string it sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastport.broker.connection import Connection
from fastport.broker.core import Broker
from fastport.config import SessionSettings
from fastport.errors import ErrorCode, FastportError, ProtocolError
from fastport.protocol import codec
from fastport.protocol import frames as f

CHARS = st.characters(blacklist_categories=["Cs"])  # orjson refuses lone surrogates
TEXT = st.text(CHARS, max_size=24)
SHORT = st.text(CHARS, max_size=8)
IDS = st.text(CHARS, min_size=1, max_size=40)
QOS = st.sampled_from([0, 1])
TIMESTAMPS = st.none() | st.integers(-(2**53 - 1), 2**53 - 1) | st.floats(-(2**53 - 1), 2**53 - 1, allow_nan=False)
CLIENT_IDS = st.from_regex(codec.CLIENT_ID_RE, fullmatch=True)

wills = st.builds(f.Will, topic=TEXT, data=TEXT, hash=st.none() | SHORT, qos=QOS, retain=st.booleans())


@st.composite
def inits(draw: st.DrawFn) -> f.Init:
    client_id = draw(st.none() | CLIENT_IDS)
    return f.Init(
        session_name=draw(TEXT),
        password=draw(TEXT),
        user_id=draw(st.none() | TEXT),
        client_id=client_id,
        durable=client_id is not None and draw(st.booleans()),
        will=draw(st.none() | wills),
    )


@st.composite
def file_controls(draw: st.DrawFn) -> f.FileControl:
    kind = draw(st.sampled_from([f.INIT_FILE, f.END_FILE]))
    topic, file_id = draw(TEXT), draw(IDS)
    extra = draw(st.dictionaries(st.sampled_from(["fileName", "fileSize", "totalChunks"]), SHORT | st.integers(0, 99)))
    raw = orjson.dumps({"type": kind, "topic": topic, "fileId": file_id, **extra})
    return f.FileControl(kind=kind, topic=topic, file_id=file_id, raw=raw)


publishes = st.builds(
    f.Publish,
    topic=TEXT,
    data=TEXT,
    message_id=IDS,
    hash=st.none() | SHORT,
    timestamp=TIMESTAMPS,
    qos=QOS,
    retain=st.booleans(),
)

client_frames = st.one_of(
    inits(),
    st.builds(f.Subscribe, topic=TEXT, qos=QOS),
    st.builds(f.Unsubscribe, topic=TEXT),
    publishes,
    st.builds(f.Ack, message_id=SHORT, topic=st.none() | TEXT),
    st.just(f.Disconnect()),
    file_controls(),
)


@given(client_frames)
def test_client_frames_round_trip_through_the_brokers_decoder(frame: f.ClientFrame) -> None:
    assert codec.decode(codec.encode_client(frame)) == frame


def test_every_client_frame_type_is_covered() -> None:
    covered = {f.Init, f.Subscribe, f.Unsubscribe, f.Publish, f.Ack, f.Disconnect, f.FileControl}
    assert covered == set(f.ClientFrame.__args__)


# ------------------------------------------------------------------------------------------- server frames
# Each strategy draws (the bytes the broker's encoder writes, the typed frame they mean).

Pair = tuple[bytes, f.ServerFrame]


@st.composite
def messages(draw: st.DrawFn) -> Pair:
    publish = draw(publishes)
    timestamp = draw(st.integers(0, 2**53) | st.floats(0, 1e15))
    retry, qos, retained = draw(st.integers(0, 50)), draw(QOS), draw(st.booleans())
    payload = codec.encode_message(publish, timestamp, retry=retry, qos=qos, retained=retained)
    expected = f.Message(
        topic=publish.topic,
        data=publish.data,
        message_id=publish.message_id,
        timestamp=timestamp,
        hash=publish.hash,
        retry=retry,
        qos=qos,
        retained=retained,
    )
    return payload, expected


ERRORS = st.builds(
    FastportError, TEXT, code=st.sampled_from(list(ErrorCode)), field=st.none() | st.sampled_from(["topic", "will.qos"])
)


@st.composite
def refusals(draw: st.DrawFn) -> Pair:
    """``Connection.reject(exc, response_type, **extra)`` as the broker calls it."""
    exc = draw(ERRORS)
    kind = draw(st.sampled_from(["init", "subscribe", "unsubscribe", "publish", "error+ids", "error+dropped", "error"]))
    code, field = int(exc.error_code), exc.field
    if kind == "init":
        return codec.encode_error(exc, "init_response"), f.InitResponse(False, error=exc.error, code=code, field=field)
    if kind in ("subscribe", "unsubscribe"):
        topic = draw(TEXT)
        payload = codec.encode_error(exc, f"{kind}_response", topic=topic)
        response = f.SubscribeResponse if kind == "subscribe" else f.UnsubscribeResponse
        return payload, response(False, topic=topic, error=exc.error, code=code, field=field)
    if kind == "publish":
        message_id = draw(IDS)
        payload = codec.encode_error(exc, "publish_response", messageId=message_id)
        return payload, f.PublishResponse(False, message_id=message_id, error=exc.error, code=code, field=field)
    if kind == "error+ids":  # delivery.py: an ack that does not count; core.py: a bad ack
        message_id, topic = draw(IDS), draw(TEXT)
        payload = codec.encode_error(exc, None, messageId=message_id, topic=topic)
        return payload, f.Error(exc.error, code=code, field=field, message_id=message_id, topic=topic)
    if kind == "error+dropped":  # durable.py: messages lost while a durable client was away
        dropped = draw(st.integers(0, 10**6))
        payload = codec.encode_error(exc, None, dropped=dropped)
        return payload, f.Error(exc.error, code=code, field=field, dropped=dropped)
    return codec.encode_error(exc), f.Error(exc.error, code=code, field=field)


@st.composite
def successes(draw: st.DrawFn) -> Pair:
    """The ``codec.encode({...})`` dicts of handshake.py, core.py, delivery.py and message.py."""
    kind = draw(st.sampled_from(["init", "init+client", "subscribe", "unsubscribe", "publish", "ack_received"]))
    if kind == "init":  # handshake.py, no clientId
        name = draw(TEXT)
        return codec.encode({"type": "init_response", "success": True, "sessionName": name}), f.InitResponse(
            True, session_name=name
        )
    if kind == "init+client":  # handshake.py with a clientId: resumed, and its filters when resumed
        name, filters = draw(TEXT), draw(st.none() | st.lists(TEXT, max_size=4))
        response: dict[str, Any] = {"type": "init_response", "success": True, "sessionName": name}
        response["resumed"] = filters is not None
        if filters is not None:
            response["subscriptions"] = sorted(filters)
        subscriptions = None if filters is None else tuple(sorted(filters))
        return codec.encode(response), f.InitResponse(
            True, session_name=name, resumed=filters is not None, subscriptions=subscriptions
        )
    if kind in ("subscribe", "unsubscribe"):  # core.py
        topic = draw(TEXT)
        payload = codec.encode({"type": f"{kind}_response", "success": True, "topic": topic})
        return payload, (f.SubscribeResponse if kind == "subscribe" else f.UnsubscribeResponse)(True, topic=topic)
    message_id = draw(IDS)
    if kind == "publish":  # delivery.py: first answer, and a duplicate's
        delivered, duplicate = draw(st.integers(0, 10**6)), draw(st.booleans())
        body: dict[str, Any] = {
            "type": "publish_response",
            "success": True,
            "messageId": message_id,
            "deliveredTo": delivered,
        }
        if duplicate:
            body["duplicate"] = True
        return codec.encode(body), f.PublishResponse(
            True, message_id=message_id, delivered_to=delivered, duplicate=duplicate
        )
    topic = draw(TEXT)  # message.py: Message.ack_received_frame
    payload = codec.encode({"type": "ack_received", "messageId": message_id, "topic": topic})
    return payload, f.AckReceived(message_id, topic)


@st.composite
def forwarded_files(draw: st.DrawFn) -> Pair:
    """files.py forwards another client's ``init_file``/``end_file`` verbatim."""
    frame = draw(file_controls())
    return frame.raw, frame


@given(st.one_of(messages(), refusals(), successes(), forwarded_files()))
def test_server_frames_the_broker_writes_decode_to_their_typed_frame(pair: Pair) -> None:
    payload, expected = pair
    assert codec.decode_server(payload) == expected


def test_every_server_frame_type_is_covered() -> None:
    covered = {
        f.InitResponse,
        f.SubscribeResponse,
        f.UnsubscribeResponse,
        f.PublishResponse,
        f.AckReceived,
        f.Message,
        f.Error,
        f.FileControl,
    }
    assert covered == set(f.ServerFrame.__args__)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"type":"brand_new"}',
        b'{"type":"message","topic":"t","data":42,"messageId":"m"}',
        b'{"type":"message","topic":"t","data":"d","messageId":"m","retry":-1}',
        b'{"type":"message","topic":"t","data":"d","messageId":"m","qos":2}',
        b'{"type":"publish_response","success":"yes","messageId":"m"}',
        b'{"type":"publish_response","success":true,"messageId":"m","deliveredTo":true}',
        b'{"type":"init_response","success":true,"subscriptions":"a/#"}',
        b'{"type":"ack_received"}',
        b'{"type":"error","code":2001}',
    ],
)
def test_malformed_server_frames_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode_server(payload)


# ---------------------------------------------------------------------------------- the live broker's bytes


class RecordingSink:
    """A broker ``Sink`` that keeps every frame sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.is_open = True
        self.backlog = 0
        self.paused = False

    def send(self, payload: bytes) -> None:
        self.frames.append(payload)

    def send_binary(self, payload: bytes) -> None:
        self.frames.append(payload)

    def close(self, code: int, reason: str) -> None:
        self.is_open = False


async def test_a_live_broker_speaks_only_frames_decode_server_reads() -> None:
    broker = Broker(asyncio.get_running_loop())
    await broker.admin.create("wire", "pw", SessionSettings())
    sinks: list[RecordingSink] = []

    async def connect(init: f.Init) -> tuple[Connection, RecordingSink]:
        sink = RecordingSink()
        sinks.append(sink)
        connection = broker.connect(sink, "127.0.0.1:1")
        broker.receive(connection, codec.encode_client(init))
        async with asyncio.timeout(5):
            while not any(b"init_response" in frame for frame in sink.frames):  # noqa: ASYNC110  # a sink has no event
                await asyncio.sleep(0.01)
        return connection, sink

    async def settle() -> None:
        await asyncio.sleep(0.05)

    def send(connection: Connection, frame: f.ClientFrame) -> None:
        broker.receive(connection, codec.encode_client(frame))

    try:
        refused_sink = RecordingSink()
        sinks.append(refused_sink)
        broker.receive(broker.connect(refused_sink, "127.0.0.1:2"), codec.encode_client(f.Init("wire", "wrong")))
        early_sink = RecordingSink()
        sinks.append(early_sink)
        early = broker.connect(early_sink, "127.0.0.1:3")
        send(early, f.Subscribe("t"))  # not initialised: an error frame
        publisher, _ = await connect(f.Init("wire", "pw"))
        subscriber, _ = await connect(f.Init("wire", "pw", client_id="dev-1", durable=True))
        send(subscriber, f.Subscribe("t/#"))
        send(subscriber, f.Subscribe("bad/#/filter"))
        send(subscriber, f.Unsubscribe("never/subscribed"))
        send(publisher, f.Publish("t/1", "d", "m1", hash="h", timestamp=1))
        send(publisher, f.Publish("t/1", "d", "m1", hash="h", timestamp=1))  # a duplicate
        send(publisher, f.Publish("t/2", "d", "m2", qos=0, retain=True))
        send(publisher, f.Publish("bad/+", "d", "m3"))
        send(
            subscriber,
            f.FileControl("init_file", "t/f", "file-1", b'{"type":"init_file","topic":"t/f","fileId":"file-1"}'),
        )
        send(publisher, f.Subscribe("t/f"))
        await settle()
        send(
            subscriber,
            f.FileControl("end_file", "t/f", "file-1", b'{"type":"end_file","topic":"t/f","fileId":"file-1"}'),
        )
        send(subscriber, f.Ack("m1", "t/1"))
        send(subscriber, f.Unsubscribe("t/#"))
        await settle()
        send(subscriber, f.Disconnect())
        await settle()
        resumed, _ = await connect(f.Init("wire", "pw", client_id="dev-1", durable=True))
        send(resumed, f.Subscribe("t/#"))
        await settle()
        decoded = [codec.decode_server(frame) for sink in sinks for frame in sink.frames]
    finally:
        broker.close()
    kinds = {type(frame) for frame in decoded}
    assert kinds == set(f.ServerFrame.__args__), kinds
    assert f.AckReceived("m1", "t/1") in decoded
    assert any(isinstance(frame, f.PublishResponse) and frame.duplicate for frame in decoded)
    assert any(isinstance(frame, f.Message) and frame.retained and frame.qos == 0 for frame in decoded)
    assert any(isinstance(frame, f.InitResponse) and frame.success is False for frame in decoded)

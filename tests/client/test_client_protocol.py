"""``ClientProtocol`` driven with bytes and times only: no sockets, no event loop, no clock.

The broker's side of each exchange is written with the broker's own encoders (``codec.encode``,
``codec.encode_error``, ``codec.encode_message``), and what the protocol sends is read with the broker's decoder
(``codec.decode``), so these tests speak the one wire format.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fastport.client.crypto import EnvelopeCipher
from fastport.client.errors import AckTimeout, ConnectionClosed, InitRefused, PublishRefused, RequestRefused
from fastport.client.protocol import (
    UNROUTED_GRACE_S,
    BrokerError,
    ClientProtocol,
    Event,
    FrameIgnored,
    InitAccepted,
    InitFailed,
    MessageDropped,
    MessageReceived,
    MessageRejected,
    PublishAnswered,
    PublishConfirmed,
    PublishFailed,
    RouteEnded,
    SubscribeAnswered,
    UnsubscribeAnswered,
)
from fastport.errors import ErrorCode, FastportError
from fastport.protocol import codec
from fastport.protocol import frames as f

KEY = base64.b64encode(b"fastport-client-test-key-32bytes").decode()
CIPHER = EnvelopeCipher(KEY, "sess")
RETRY_S = 1.0

Proto = ClientProtocol[str]


def make(**options: Any) -> Proto:
    options.setdefault("retry_interval_s", RETRY_S)
    options.setdefault("max_retries", 3)
    return ClientProtocol("sess", "pw", KEY, **options)


def sent(proto: Proto) -> list[f.ClientFrame]:
    """What the protocol wants written, read with the broker's decoder."""
    return [codec.decode(payload) for payload in proto.data_to_send()]


def answer(obj: dict[str, Any]) -> bytes:
    return codec.encode(obj)


def connect(proto: Proto, now: float = 0.0, **response: Any) -> list[Event[str]]:
    proto.connection_made(now)
    assert sent(proto) == [f.Init("sess", "pw", client_id=proto_client_id(proto), durable=proto_durable(proto))]
    return proto.receive(answer({"type": "init_response", "success": True, "sessionName": "sess", **response}), now)


def proto_client_id(proto: Proto) -> str | None:
    init = codec.decode(proto._init)
    assert isinstance(init, f.Init)
    return init.client_id


def proto_durable(proto: Proto) -> bool:
    init = codec.decode(proto._init)
    assert isinstance(init, f.Init)
    return init.durable


def message(topic: str, message_id: str, text: str = "hi", **options: Any) -> bytes:
    """A ``message`` frame as the broker writes it, sealed for ``topic`` and ``message_id``."""
    sealed = CIPHER.seal_v2(text, topic=options.pop("sealed_for", topic), message_id=message_id)
    publish = f.Publish(topic, sealed.data, message_id, hash=sealed.hash)
    return codec.encode_message(publish, options.pop("timestamp", 1700000000000), **options)


def publish_response(message_id: str, delivered: int, **extra: Any) -> bytes:
    body = {"type": "publish_response", "success": True, "messageId": message_id, "deliveredTo": delivered}
    return answer({**body, **extra})


def only_publishes(frames_sent: list[f.ClientFrame]) -> list[f.Publish]:
    assert all(isinstance(frame, f.Publish) for frame in frames_sent), frames_sent
    return [frame for frame in frames_sent if isinstance(frame, f.Publish)]


# ------------------------------------------------------------------------------------------------- init


def test_init_sends_the_configured_fields_and_opens_on_success() -> None:
    proto = make(client_id="dev-1", durable=True)
    assert proto.phase == "idle" and proto.next_deadline() is None
    events = connect(proto, resumed=True, subscriptions=["a/#"])
    assert events == [InitAccepted("sess", resumed=True, subscriptions=("a/#",))]
    assert proto.is_open and proto.data_to_send() == []


def test_init_refused_is_an_event_and_the_connection_stays_closed_to_requests() -> None:
    proto = make()
    proto.connection_made(0.0)
    proto.data_to_send()
    error = FastportError("Invalid password", code=ErrorCode.INVALID_PASSWORD)
    (event,) = proto.receive(codec.encode_error(error, "init_response"), 0.0)
    assert isinstance(event, InitFailed) and isinstance(event.error, InitRefused)
    assert event.error.error == "Invalid password" and event.error.error_code == ErrorCode.INVALID_PASSWORD
    assert not proto.is_open
    proto.publish("t", "x", now=0.0, timestamp_ms=1)
    assert proto.data_to_send() == []  # nothing but init goes out before init is accepted


def test_an_init_response_outside_a_handshake_is_ignored() -> None:
    proto = make()
    assert proto.receive(answer({"type": "init_response", "success": True, "sessionName": "sess"}), 0.0) == []
    assert not proto.is_open


# --------------------------------------------------------------------------------------------- publishing


def test_publish_answer_then_ack_received_confirms() -> None:
    proto = make()
    connect(proto)
    message_id = proto.publish("a/b", "secret", now=0.0, timestamp_ms=1234)
    (frame,) = only_publishes(sent(proto))
    assert (frame.topic, frame.message_id, frame.timestamp, frame.qos, frame.retain) == (
        "a/b",
        message_id,
        1234,
        1,
        False,
    )
    assert CIPHER.open(frame.data, frame.hash, topic="a/b", message_id=message_id) == "secret"
    assert proto.next_deadline() == RETRY_S
    events = proto.receive(publish_response(message_id, 2), 0.5)
    assert events == [PublishAnswered(message_id, events[0].result)]  # type: ignore[union-attr]
    assert isinstance(events[0], PublishAnswered) and events[0].result.delivered_to == 2
    assert proto.next_deadline() == 0.5 + RETRY_S  # now waiting for ack_received
    ack = answer({"type": "ack_received", "messageId": message_id, "topic": "a/b"})
    assert proto.receive(ack, 0.6) == [PublishConfirmed(message_id)]
    assert proto.unconfirmed == 0 and proto.next_deadline() is None
    assert proto.stats.published == 1


def test_an_answer_with_no_receiver_or_qos0_confirms_at_once() -> None:
    proto = make()
    connect(proto)
    nobody = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    qos0 = proto.publish("t", "x", now=0.0, timestamp_ms=1, qos=0, retain=True)
    publishes = only_publishes(sent(proto))
    assert (publishes[1].qos, publishes[1].retain) == (0, True)
    assert proto.receive(publish_response(nobody, 0), 0.1)[1:] == [PublishConfirmed(nobody)]
    assert proto.receive(publish_response(qos0, 3), 0.1)[1:] == [PublishConfirmed(qos0)]


def test_an_ack_received_before_the_answer_confirms_at_the_answer() -> None:
    proto = make()
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    assert proto.receive(answer({"type": "ack_received", "messageId": message_id}), 0.1) == []
    answered, confirmed = proto.receive(publish_response(message_id, 1), 0.2)
    assert isinstance(answered, PublishAnswered) and answered.result.acked is True
    assert confirmed == PublishConfirmed(message_id)


def test_unanswered_publish_is_resent_by_due_then_fails_with_ack_timeout() -> None:
    proto = make(max_retries=2)
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    (first,) = sent(proto)
    assert isinstance(first, f.Publish) and first.message_id == message_id
    assert proto.due(0.99) == [] and proto.data_to_send() == []
    assert proto.due(1.0) == []
    assert sent(proto) == [first]  # the same frame, the same messageId
    assert proto.next_deadline() == 2.0
    assert proto.due(2.0) == [] and sent(proto) == [first]
    (failed,) = proto.due(3.0)
    assert isinstance(failed, PublishFailed) and isinstance(failed.error, AckTimeout)
    assert "publish_response" in failed.error.error and "2 re-sends" in failed.error.error
    assert proto.data_to_send() == [] and proto.next_deadline() is None
    assert (proto.stats.published, proto.stats.republished) == (3, 2)


def test_duplicate_answers_do_not_reset_the_retry_count() -> None:
    """Answered but never acked: each re-send is answered ``duplicate``; AckTimeout still comes."""
    proto = make(max_retries=3)
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    proto.data_to_send()
    now, failures = 0.0, []
    assert len(proto.receive(publish_response(message_id, 1), now)) == 1
    for _ in range(10):
        now += RETRY_S
        failures += proto.due(now)
        for frame in sent(proto):
            assert isinstance(frame, f.Publish) and frame.message_id == message_id
            assert proto.receive(publish_response(message_id, 1, duplicate=True), now) == []
        if failures:
            break
    (failed,) = failures
    assert isinstance(failed, PublishFailed) and isinstance(failed.error, AckTimeout)
    assert "ack_received" in failed.error.error
    assert proto.stats.republished == 3 and now == 4 * RETRY_S


def test_publish_refused_fails_with_the_broker_error() -> None:
    proto = make()
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    error = FastportError("Session suspended or invalid", code=ErrorCode.SESSION_INVALID)
    (failed,) = proto.receive(codec.encode_error(error, "publish_response", messageId=message_id), 0.1)
    assert isinstance(failed, PublishFailed) and isinstance(failed.error, PublishRefused)
    assert failed.error.error_code == ErrorCode.SESSION_INVALID and failed.error.message_id == message_id
    assert proto.next_deadline() is None


def test_a_lost_connection_holds_publishes_for_the_next_one() -> None:
    proto = make()
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    proto.data_to_send()
    assert proto.connection_lost(0.5) == []
    assert proto.next_deadline() is None and proto.due(10.0) == []  # no timers while disconnected
    assert proto.publish("t", "while away", now=0.6, timestamp_ms=2)
    assert proto.data_to_send() == []
    connect(proto, now=5.0)
    again = only_publishes(sent(proto))
    assert again[0].message_id == message_id and len(again) == 2
    assert proto.next_deadline() == 5.0 + RETRY_S and proto.stats.republished == 2


def test_close_fails_every_publish_and_ends_every_route() -> None:
    proto = make()
    connect(proto)
    message_id = proto.publish("t", "x", now=0.0, timestamp_ms=1)
    proto.add_route("a/#", "consumer")
    events = proto.close()
    assert events[1] == RouteEnded("a/#", ("consumer",), None)
    assert isinstance(events[0], PublishFailed) and events[0].message_id == message_id
    assert isinstance(events[0].error, ConnectionClosed)
    assert proto.close() == [] and proto.data_to_send() == []
    with pytest.raises(ConnectionClosed):
        proto.publish("t", "x", now=1.0, timestamp_ms=1)


# ---------------------------------------------------------------------------------------------- routing


def test_subscribe_answer_and_resubscribe_on_every_connection() -> None:
    proto = make()
    assert proto.add_route("a/+", "c1") == []
    assert proto.add_route("b/#", "c2", qos=0) == []
    assert proto.data_to_send() == []  # not connected: subscribed when init is accepted
    connect(proto)
    assert sent(proto) == [f.Subscribe("a/+"), f.Subscribe("b/#", qos=0)]
    ok = answer({"type": "subscribe_response", "success": True, "topic": "a/+"})
    assert proto.receive(ok, 0.1) == [SubscribeAnswered("a/+")]
    proto.add_route("a/+", "c3")
    assert proto.data_to_send() == []  # one subscribe per filter
    proto.connection_lost(1.0)
    connect(proto, now=2.0)
    assert sent(proto) == [f.Subscribe("a/+"), f.Subscribe("b/#", qos=0)]


def test_a_refused_subscription_drops_its_route() -> None:
    proto = make()
    connect(proto)
    proto.add_route("x", "c1")
    proto.data_to_send()
    error = FastportError("invalid topic filter", code=ErrorCode.INVALID_TOPIC, field="topic")
    (event,) = proto.receive(codec.encode_error(error, "subscribe_response", topic="x"), 0.1)
    assert isinstance(event, SubscribeAnswered) and isinstance(event.error, RequestRefused)
    assert event.consumers == ("c1",) and event.error.error_code == ErrorCode.INVALID_TOPIC
    assert proto.topics == []


def test_unsubscribe_answers_in_order_and_a_lost_connection_ends_them() -> None:
    proto = make()
    assert proto.unsubscribe("a") == (None, ())  # not connected: nothing to send
    connect(proto)
    proto.add_route("a", "c1")
    proto.data_to_send()
    first, consumers = proto.unsubscribe("a")
    second, _ = proto.unsubscribe("a")
    assert consumers == ("c1",) and sent(proto) == [f.Unsubscribe("a"), f.Unsubscribe("a")]
    assert first is not None and second is not None
    ok = answer({"type": "unsubscribe_response", "success": True, "topic": "a"})
    assert proto.receive(ok, 0.1) == [UnsubscribeAnswered(first, "a")]
    assert proto.connection_lost(0.2) == [UnsubscribeAnswered(second, "a")]


def test_messages_go_to_every_matching_consumer_and_are_acked_only_after_hand_over() -> None:
    proto = make()
    connect(proto)
    proto.add_route("t/#", "hash")
    proto.add_route("t/+", "plus")
    proto.add_route("other", "nobody")
    proto.data_to_send()
    (event,) = proto.receive(message("t/1", "m1", retry=2), 0.0)
    assert isinstance(event, MessageReceived) and event.consumers == ("hash", "plus") and not event.late
    assert (event.message.topic, event.message.data, event.message.retry) == ("t/1", "hi", 2)
    assert proto.data_to_send() == []  # no ack before the application has it
    assert proto.receive(message("t/1", "m1", retry=3), 0.1) == []  # its hand-over is under way
    assert proto.data_to_send() == []
    proto.handed_over("m1")
    assert sent(proto) == [f.Ack("m1", "t/1")]
    proto.handed_over("m1")  # twice: nothing more
    assert proto.data_to_send() == []
    assert (proto.stats.delivered, proto.stats.acks_sent) == (1, 1)


def test_redeliveries_are_acked_again_but_not_handed_over_twice() -> None:
    proto = make()
    connect(proto)
    proto.add_route("t", "c")
    (event,) = proto.receive(message("t", "m1"), 0.0)
    assert isinstance(event, MessageReceived)
    proto.handed_over("m1")
    proto.data_to_send()
    assert proto.receive(message("t", "m1", retry=1), 0.1) == []
    assert sent(proto) == [f.Ack("m1", "t")]
    assert (proto.stats.received, proto.stats.delivered, proto.stats.duplicates) == (2, 1, 1)


def test_qos0_messages_are_handed_over_and_never_acked() -> None:
    proto = make()
    connect(proto)
    proto.add_route("t", "c")
    assert sent(proto) == [f.Subscribe("t")]
    (event,) = proto.receive(message("t", "m0", qos=0), 0.0)
    assert isinstance(event, MessageReceived) and event.message.qos == 0
    proto.handed_over("m0")
    assert proto.receive(message("t", "m0", qos=0), 0.1) == []  # a duplicate: not acked either
    assert proto.data_to_send() == [] and proto.stats.acks_sent == 0


def test_messages_failing_their_checks_are_rejected_unacked() -> None:
    proto = make()
    connect(proto)
    proto.add_route("t/#", "c")
    assert sent(proto) == [f.Subscribe("t/#")]
    replayed = proto.receive(message("t/2", "m2", sealed_for="t/other"), 0.0)
    malformed = proto.receive(answer({"type": "message", "topic": "t/3", "data": 42, "messageId": "m3"}), 0.0)
    assert isinstance(replayed[0], MessageRejected) and replayed[0].message_id == "m2"
    assert malformed == [MessageRejected("?", "?", "malformed message frame")]
    assert proto.data_to_send() == [] and (proto.stats.received, proto.stats.rejected) == (2, 2)


def test_durable_resume_holds_messages_until_a_route_claims_them() -> None:
    """A resumed durable client gets its held messages right after ``init_response``, before any route."""
    proto = make(client_id="dev-1", durable=True)
    connect(proto, now=10.0, resumed=True, subscriptions=["d/+"])
    assert proto.receive(message("d/1", "h1"), 10.0) == []
    assert proto.receive(message("d/2", "h2", retry=1), 10.1) == []
    assert proto.receive(message("d/2", "h2", retry=2), 10.2) == []  # a redelivery of one held
    assert proto.data_to_send() == [] and proto.stats.held == 2
    assert proto.next_deadline() == 10.0 + UNROUTED_GRACE_S
    events = proto.add_route("d/+", "app")
    assert sent(proto) == [f.Subscribe("d/+")]  # the ack is not part of it
    assert [(e.message.message_id, e.consumers, e.late) for e in events if isinstance(e, MessageReceived)] == [
        ("h1", ("app",), True),
        ("h2", ("app",), True),
    ]
    for event in events:
        assert isinstance(event, MessageReceived)
        proto.handed_over(event.message.message_id)
    assert sent(proto) == [f.Ack("h1", "d/1"), f.Ack("h2", "d/2")]
    assert proto.stats.routed_late == 2 and proto.next_deadline() is None


def test_unclaimed_held_messages_are_dropped_without_an_ack() -> None:
    proto = make(client_id="dev-1", durable=True)
    connect(proto, resumed=True)
    proto.receive(message("d/1", "h1"), 0.0)
    proto.receive(message("d/2", "h2"), 1.0)
    assert proto.due(UNROUTED_GRACE_S - 0.01) == []
    assert proto.due(UNROUTED_GRACE_S) == [MessageDropped("d/1", "h1")]
    assert proto.next_deadline() == 1.0 + UNROUTED_GRACE_S
    assert proto.due(1.0 + UNROUTED_GRACE_S) == [MessageDropped("d/2", "h2")]
    assert proto.add_route("d/+", "late") == []  # nothing left to claim
    assert only_subscribes(sent(proto)) and proto.stats.unrouted == 2 and proto.stats.acks_sent == 0
    # Not marked seen: the broker's redelivery is handed over (and acked) normally.
    (event,) = proto.receive(message("d/1", "h1", retry=1), 5.0)
    assert isinstance(event, MessageReceived)


def only_subscribes(frames_sent: list[f.ClientFrame]) -> bool:
    return all(isinstance(frame, f.Subscribe) for frame in frames_sent)


def test_a_removed_consumer_gets_nothing_and_its_messages_are_held() -> None:
    proto = make()
    connect(proto)
    proto.add_route("t", "c")
    proto.remove_consumer("t", "c")
    assert proto.receive(message("t", "m1"), 0.0) == []
    assert proto.stats.held == 1 and proto.topics == ["t"]


def test_other_frames_become_events() -> None:
    proto = make()
    connect(proto)
    error = FastportError("Not initialized", code=ErrorCode.NOT_INITIALIZED)
    assert proto.receive(codec.encode_error(error, None, messageId="m", topic="t"), 0.0) == [
        BrokerError("Not initialized", int(ErrorCode.NOT_INITIALIZED), "m", "t")
    ]
    for payload in (b"not json", b"[1]", orjson.dumps({"type": "brand_new"})):
        (event,) = proto.receive(payload, 0.0)
        assert isinstance(event, FrameIgnored)
    file_frame = orjson.dumps({"type": "init_file", "topic": "t", "fileId": "f1"})
    assert isinstance(proto.receive(file_frame, 0.0)[0], FrameIgnored)
    assert proto.receive(publish_response("unknown", 1), 0.0) == []  # not ours: nothing to do

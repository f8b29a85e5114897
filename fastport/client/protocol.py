"""The client's protocol core, sans I/O: bytes and times in, events and bytes out.

``ClientProtocol`` holds everything the fastport client decides (``docs/protocol.md`` §3 for the frames, built
and read by ``fastport.protocol.codec``, the broker's own codec):

* the publish state machine: a publish is re-sent with the same messageId every ``retry_interval_s`` until the
  broker answered ``publish_response`` and, for QoS 1 with ``deliveredTo`` > 0, a subscriber acked it
  (``ack_received``); after ``max_retries`` re-sends in all it fails with ``AckTimeout``. An answer to a
  re-send (``duplicate``) does not restart the count. A new connection re-sends every unconfirmed publish.
* routing: topic filters, each with its consumers (opaque objects of the caller: callbacks, iterators), and the
  unrouted hold: a verified message no route matches yet is kept, unacked, for ``UNROUTED_GRACE_S`` (at most
  ``UNROUTED_CAPACITY``) and handed to the first matching route added, else dropped without an ack;
* envelopes (sealed on publish, opened and checked on receipt), and the dedupe of redeliveries (``SeenIds``);
* **no ack before the application has the message**: ``receive`` returns a ``MessageReceived`` event with the
  consumers to hand it to and queues nothing for it; the caller hands it over and then calls
  ``handed_over(message_id)``, which is what marks it seen and queues its ``ack``. A caller that fails between
  the two never acks, so the broker redelivers: at least once, by construction.

It imports no asyncio, no picows and reads no clock: every time is an argument (``now``, in seconds, from one
monotonic clock that never goes back). The caller writes ``data_to_send()`` after each call, and calls
``due(now)`` at ``next_deadline()``. ``fastport.client.Client`` is the asyncio + picows adapter over it.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from fastport.client.crypto import EnvelopeCipher, EnvelopeVersion
from fastport.client.errors import (
    AckTimeout,
    ConnectionClosed,
    EnvelopeError,
    InitRefused,
    PublishRefused,
    RequestRefused,
    wire_code,
)
from fastport.client.seen_ids import DEFAULT_CAPACITY, SeenIds
from fastport.client.values import ClientStats, Message, PublishResult
from fastport.errors import ProtocolError
from fastport.protocol import codec, frames
from fastport.protocol.topics import filter_matches, validate_filter, validate_topic

#: How long a verified message that no route matches yet is kept for one (unacked) before it is dropped.
UNROUTED_GRACE_S: Final = 2.0
#: Messages kept for a route at most (the oldest is dropped, unacked, beyond).
UNROUTED_CAPACITY: Final = 10_000

C = TypeVar("C")
"""A consumer of a route's messages: whatever the caller hands messages to (the protocol never calls it)."""


# --------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class InitAccepted:
    """``init`` succeeded: the connection is open; resubscribes and re-sends are queued."""

    session_name: str | None
    resumed: bool
    subscriptions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InitFailed:
    """``init`` was refused (bad password, unknown or suspended session)."""

    error: InitRefused


@dataclass(frozen=True, slots=True)
class SubscribeAnswered(Generic[C]):
    """The broker answered a subscription. On a refusal (``error``) the route is gone: end ``consumers``."""

    topic: str
    error: RequestRefused | None = None
    consumers: tuple[C, ...] = ()


@dataclass(frozen=True, slots=True)
class UnsubscribeAnswered:
    """The request ``request_id`` (from ``unsubscribe``) ended: answered, refused (``error``), or moot (lost
    connection: error None, the next one does not resubscribe it; closed: ``ConnectionClosed``)."""

    request_id: int
    topic: str
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class PublishAnswered:
    """The first successful ``publish_response`` to ``message_id``: what ``emit`` returns."""

    message_id: str
    result: PublishResult


@dataclass(frozen=True, slots=True)
class PublishConfirmed:
    """``message_id`` is confirmed (answered, and acked when an ack was due): no more re-sends."""

    message_id: str


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """``message_id`` failed for good: ``PublishRefused``, ``AckTimeout``, or the client closed."""

    message_id: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class MessageReceived(Generic[C]):
    """A verified, new message and the consumers to hand it to; then call ``handed_over(message_id)``.

    ``late``: it was held (no route matched when it came) and a route just claimed it.
    """

    message: Message
    consumers: tuple[C, ...]
    late: bool = False


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A message that failed its checks (malformed frame, bad envelope): not acked, so it comes back."""

    topic: str
    message_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A held message no route claimed in time (or beyond the hold's capacity): dropped unacked."""

    topic: str
    message_id: str


@dataclass(frozen=True, slots=True)
class RouteEnded(Generic[C]):
    """The protocol closed: the route of ``topic`` is gone, end its ``consumers`` (with ``error`` if any)."""

    topic: str
    consumers: tuple[C, ...]
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class BrokerError:
    """A generic ``error`` frame from the broker."""

    error: str
    code: int | None
    message_id: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class FrameIgnored:
    """A frame the client does not handle (not JSON, unknown type, a malformed answer, a file frame)."""

    reason: str


Event = (
    InitAccepted
    | InitFailed
    | SubscribeAnswered[C]
    | UnsubscribeAnswered
    | PublishAnswered
    | PublishConfirmed
    | PublishFailed
    | MessageReceived[C]
    | MessageRejected
    | MessageDropped
    | RouteEnded[C]
    | BrokerError
    | FrameIgnored
)


# ---------------------------------------------------------------------------------------------------- state


class _Outgoing:
    """An unconfirmed publish: its frame (re-sent verbatim) and how far it got."""

    __slots__ = ("message_id", "frame", "qos", "answered", "acked", "retries")

    def __init__(self, message_id: str, frame: bytes, qos: int) -> None:
        self.message_id = message_id
        self.frame = frame
        self.qos = qos
        self.answered = False
        self.acked = False
        self.retries = 0


class _Route(Generic[C]):
    __slots__ = ("topic", "qos", "consumers")

    def __init__(self, topic: str, qos: int) -> None:
        self.topic = topic
        self.qos = qos
        self.consumers: list[C] = []


_IDLE: Final = 0  # no connection
_HANDSHAKE: Final = 1  # init sent, not answered
_OPEN: Final = 2
_CLOSED: Final = 3

ConnectionPhase = Literal["idle", "handshake", "open", "closed"]
_PHASES: Final[tuple[ConnectionPhase, ...]] = ("idle", "handshake", "open", "closed")


class ClientProtocol(Generic[C]):
    """The fastport client without I/O (see the module docstring for the rules it keeps).

    Args:
        session_name: the session (tenant) to join.
        password: the session's password.
        key: the session's shared AES-256 key, base64 of 32 bytes (or the 32 bytes).
        client_id: sent as ``clientId``; needed for ``durable``.
        durable: ask the broker to keep subscriptions and unacked messages across disconnects.
        envelope: the envelope sent, ``"v2"`` or ``"v1"``; both are opened.
        retry_interval_s: how long a publish waits for its answer (or ack) before a re-send.
        max_retries: re-sends of one publish, in all, before it fails with ``AckTimeout``.
        dedup_capacity: how many handed-over messageIds are remembered to drop redeliveries.

    Raises:
        EnvelopeFormatError: an unusable key (never echoed).
    """

    def __init__(
        self,
        session_name: str,
        password: str,
        key: str | bytes,
        *,
        client_id: str | None = None,
        durable: bool = False,
        envelope: EnvelopeVersion = "v2",
        retry_interval_s: float = 5.0,
        max_retries: int = 5,
        dedup_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self._cipher = EnvelopeCipher(key, session_name)
        self._init = codec.encode_client(
            frames.Init(session_name=session_name, password=password, client_id=client_id, durable=durable)
        )
        self.envelope: EnvelopeVersion = envelope
        self.retry_interval_s = retry_interval_s
        self.max_retries = max_retries
        self.stats = ClientStats()
        self._phase = _IDLE
        self._outbox: list[bytes] = []
        self._seen = SeenIds(dedup_capacity)
        self._outgoing: dict[str, _Outgoing] = {}
        #: messageId -> re-send deadline, in deadline order (every deadline is ``now + retry_interval_s``).
        self._timers: OrderedDict[str, float] = OrderedDict()
        self._routes: dict[str, _Route[C]] = {}
        #: messageId -> (message, ack it when handed over, time it arrived), oldest first.
        self._unrouted: dict[str, tuple[Message, bool, float]] = {}
        #: messageId -> (topic, ack it) of messages given out in a ``MessageReceived``, not yet ``handed_over``.
        self._handing: dict[str, tuple[str, bool]] = {}
        self._unsubscribing: dict[str, deque[int]] = {}
        self._next_request = 0

    # ------------------------------------------------------------------------------------- connection

    @property
    def phase(self) -> ConnectionPhase:
        """``idle`` (no connection), ``handshake`` (init sent), ``open`` or ``closed`` (for good)."""
        return _PHASES[self._phase]

    @property
    def is_open(self) -> bool:
        """Whether ``init`` was accepted on the current connection."""
        return self._phase == _OPEN

    def connection_made(self, now: float) -> None:
        """A new connection is up: queue ``init`` (anything queued for an older one is dropped)."""
        if self._phase == _CLOSED:
            return
        self._phase = _HANDSHAKE
        self._outbox = [self._init]

    def connection_lost(self, now: float) -> list[Event[C]]:
        """The connection is gone. Unconfirmed publishes wait for the next one (no re-send timers meanwhile);
        pending unsubscribes end (the next connection does not resubscribe those filters)."""
        if self._phase == _CLOSED:
            return []
        self._phase = _IDLE
        self._outbox = []
        self._timers.clear()
        events: list[Event[C]] = [
            UnsubscribeAnswered(request_id, topic)
            for topic, waiting in self._unsubscribing.items()
            for request_id in waiting
        ]
        self._unsubscribing.clear()
        return events

    def close(self, error: BaseException | None = None) -> list[Event[C]]:
        """Stop for good: every publish fails (with ``error``, or ``ConnectionClosed``), every route ends,
        held messages are dropped unacked. Later calls are no-ops."""
        if self._phase == _CLOSED:
            return []
        self._phase = _CLOSED
        ended = error or ConnectionClosed("client closed")
        events: list[Event[C]] = [self._complete(out, ended) for out in list(self._outgoing.values())]
        events.extend(RouteEnded(route.topic, tuple(route.consumers), error) for route in self._routes.values())
        events.extend(
            UnsubscribeAnswered(request_id, topic, ended)
            for topic, waiting in self._unsubscribing.items()
            for request_id in waiting
        )
        self._routes.clear()
        self._unsubscribing.clear()
        self._unrouted.clear()
        self._handing.clear()
        self._timers.clear()
        self._outbox = []
        return events

    def data_to_send(self) -> list[bytes]:
        """The text-frame payloads to write now, in order (each is returned once)."""
        out = self._outbox
        self._outbox = []
        return out

    # ------------------------------------------------------------------------------------------- time

    def next_deadline(self) -> float | None:
        """When ``due`` has something to do next (a re-send, an ``AckTimeout``, the end of a hold), or None."""
        deadline: float | None = None
        if self._timers:
            deadline = next(iter(self._timers.values()))
        if self._unrouted:
            held_until = next(iter(self._unrouted.values()))[2] + UNROUTED_GRACE_S
            if deadline is None or held_until < deadline:
                deadline = held_until
        return deadline

    def due(self, now: float) -> list[Event[C]]:
        """Do what is due at ``now``: re-send unconfirmed publishes, fail those out of re-sends
        (``AckTimeout``), drop held messages whose grace ended."""
        events: list[Event[C]] = []
        timers = self._timers
        while timers:
            message_id, deadline = next(iter(timers.items()))
            if deadline > now:
                break
            del timers[message_id]
            out = self._outgoing.get(message_id)
            if out is None or self._phase != _OPEN:
                continue
            if out.retries >= self.max_retries:
                what = "ack_received" if out.answered else "publish_response"
                error = AckTimeout(f"no {what} for message {out.message_id} after {out.retries} re-sends")
                events.append(self._complete(out, error))
                continue
            out.retries += 1
            self.stats.republished += 1
            self._send_publish(out, now)
        held = self._unrouted
        horizon = now - UNROUTED_GRACE_S
        while held:
            message_id, (message, _, arrived) = next(iter(held.items()))
            if arrived > horizon:
                break
            del held[message_id]
            self.stats.unrouted += 1
            events.append(MessageDropped(message.topic, message_id))
        return events

    # ------------------------------------------------------------------------------------- publishing

    def publish(
        self,
        topic: str,
        message: str | bytes,
        *,
        now: float,
        timestamp_ms: int,
        qos: int = 1,
        retain: bool = False,
        message_id: str | None = None,
    ) -> str:
        """Seal ``message`` and publish it on ``topic``; return its messageId (a new UUID unless given).

        It is sent now if the connection is open, else when the next one opens; answers come as
        ``PublishAnswered``, then ``PublishConfirmed`` or ``PublishFailed``.

        Raises:
            InvalidTopic: a bad topic (also a ValueError).
            ValueError: qos not 0 or 1.
            ConnectionClosed: the protocol was closed.
        """
        if self._phase == _CLOSED:
            raise ConnectionClosed("client closed")
        validate_topic(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        message_id = message_id or str(uuid.uuid4())
        sealed = self._cipher.seal(message, version=self.envelope, topic=topic, message_id=message_id)
        frame = frames.Publish(
            topic, sealed.data, message_id, hash=sealed.hash, timestamp=timestamp_ms, qos=qos, retain=retain
        )
        out = _Outgoing(message_id, codec.encode_client(frame), qos)
        self._outgoing[message_id] = out
        self._send_publish(out, now)
        return message_id

    @property
    def unconfirmed(self) -> int:
        """Publishes not confirmed yet."""
        return len(self._outgoing)

    def _send_publish(self, out: _Outgoing, now: float) -> None:
        if self._phase != _OPEN:
            return  # the next connection re-sends it
        self._outbox.append(out.frame)
        self.stats.published += 1
        self._arm(out, now)

    def _arm(self, out: _Outgoing, now: float) -> None:
        self._timers[out.message_id] = now + self.retry_interval_s
        self._timers.move_to_end(out.message_id)

    def _complete(self, out: _Outgoing, error: BaseException | None = None) -> PublishConfirmed | PublishFailed:
        if self._outgoing.get(out.message_id) is out:
            del self._outgoing[out.message_id]
        self._timers.pop(out.message_id, None)
        if error is None:
            return PublishConfirmed(out.message_id)
        return PublishFailed(out.message_id, error)

    # ------------------------------------------------------------------------------------------ routes

    def add_route(self, topic: str, consumer: C, *, qos: int = 1) -> list[Event[C]]:
        """Hand the messages of ``topic`` (a filter) to ``consumer`` too; subscribe if it is a new filter.

        Returns the ``MessageReceived`` events of the held messages it now claims.

        Raises:
            InvalidTopic: a bad filter. ValueError: qos not 0 or 1. ConnectionClosed: closed.
        """
        if self._phase == _CLOSED:
            raise ConnectionClosed("client closed")
        validate_filter(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        route = self._routes.get(topic)
        if route is None:
            route = self._routes[topic] = _Route(topic, qos)
            if self._phase == _OPEN:
                self._send_subscribe(route)
        route.consumers.append(consumer)
        return self._route_held()

    def remove_consumer(self, topic: str, consumer: C) -> None:
        """Stop handing ``topic``'s messages to ``consumer``; the filter stays subscribed."""
        route = self._routes.get(topic)
        if route is not None and consumer in route.consumers:
            route.consumers.remove(consumer)

    def unsubscribe(self, topic: str) -> tuple[int | None, tuple[C, ...]]:
        """Drop the route of ``topic`` and unsubscribe it.

        Returns the id of the request (its answer comes as ``UnsubscribeAnswered``), or None when no
        connection is open (the next one simply does not resubscribe it); and the consumers to end.
        """
        route = self._routes.pop(topic, None)
        consumers = tuple(route.consumers) if route is not None else ()
        if self._phase != _OPEN:
            return None, consumers
        self._next_request += 1
        self._unsubscribing.setdefault(topic, deque()).append(self._next_request)
        self._outbox.append(codec.encode_client(frames.Unsubscribe(topic)))
        return self._next_request, consumers

    @property
    def topics(self) -> list[str]:
        """The subscribed topic filters (resubscribed on every new connection)."""
        return list(self._routes)

    def _send_subscribe(self, route: _Route[C]) -> None:
        self._outbox.append(codec.encode_client(frames.Subscribe(route.topic, route.qos)))

    def _consumers_of(self, topic: str) -> tuple[C, ...]:
        return tuple(
            consumer
            for route in self._routes.values()
            if route.consumers and filter_matches(route.topic, topic)
            for consumer in route.consumers
        )

    def _route_held(self) -> list[Event[C]]:
        events: list[Event[C]] = []
        for message_id, (message, wants_ack, _) in list(self._unrouted.items()):
            consumers = self._consumers_of(message.topic)
            if consumers and self._unrouted.pop(message_id, None) is not None:
                self.stats.routed_late += 1
                self._handing[message_id] = (message.topic, wants_ack)
                events.append(MessageReceived(message, consumers, late=True))
        return events

    # --------------------------------------------------------------------------------------- receiving

    def handed_over(self, message_id: str) -> None:
        """The caller gave a ``MessageReceived`` message to its consumers: remember it and ack it (QoS 1)."""
        handing = self._handing.pop(message_id, None)
        if handing is None:
            return
        topic, wants_ack = handing
        self._seen.add(message_id)
        self.stats.delivered += 1
        if wants_ack:
            self._ack(topic, message_id)

    def receive(self, payload: bytes, now: float) -> list[Event[C]]:
        """Handle one text frame from the broker; return what happened."""
        try:
            obj = codec.parse(payload)
        except ProtocolError as exc:
            return [FrameIgnored(exc.error)]
        try:
            frame = codec.server_frame_of(obj, payload)
        except ProtocolError as exc:
            if obj.get("type") == frames.MESSAGE:
                self.stats.received += 1
                return [self._reject("?", "?", "malformed message frame")]
            return [FrameIgnored(f"{str(obj.get('type'))[:64]!r} frame: {exc.error}")]
        if isinstance(frame, frames.Message):
            return self._on_message(frame, now)
        if isinstance(frame, frames.AckReceived):
            return self._on_ack_received(frame)
        if isinstance(frame, frames.PublishResponse):
            return self._on_publish_response(frame, now)
        if isinstance(frame, frames.SubscribeResponse):
            return self._on_subscribe_response(frame)
        if isinstance(frame, frames.UnsubscribeResponse):
            return self._on_unsubscribe_response(frame)
        if isinstance(frame, frames.InitResponse):
            return self._on_init_response(frame, now)
        if isinstance(frame, frames.Error):
            return [BrokerError(frame.error, frame.code, frame.message_id, frame.topic)]
        return [FrameIgnored(f"{frame.kind} frame: file transfers are not handled")]

    def _on_init_response(self, frame: frames.InitResponse, now: float) -> list[Event[C]]:
        if self._phase != _HANDSHAKE:
            return []
        if not frame.success:
            error = InitRefused(
                frame.error or "init refused", response_type="init_response", code=wire_code(frame.code)
            )
            return [InitFailed(error)]
        self._phase = _OPEN
        for route in self._routes.values():
            self._send_subscribe(route)
        for out in list(self._outgoing.values()):
            self.stats.republished += 1
            self._send_publish(out, now)
        return [InitAccepted(frame.session_name, frame.resumed is True, frame.subscriptions or ())]

    def _on_subscribe_response(self, frame: frames.SubscribeResponse) -> list[Event[C]]:
        route = self._routes.get(frame.topic) if frame.topic is not None else None
        if route is None:
            return []
        if frame.success:
            return [SubscribeAnswered(route.topic)]
        error = RequestRefused(
            frame.error or "subscribe refused", response_type="subscribe_response", code=wire_code(frame.code)
        )
        del self._routes[route.topic]
        return [SubscribeAnswered(route.topic, error, tuple(route.consumers))]

    def _on_unsubscribe_response(self, frame: frames.UnsubscribeResponse) -> list[Event[C]]:
        topic = frame.topic
        waiting = self._unsubscribing.get(topic) if topic is not None else None
        if not waiting or topic is None:
            return []
        request_id = waiting.popleft()
        if not waiting:
            del self._unsubscribing[topic]
        if frame.success:
            return [UnsubscribeAnswered(request_id, topic)]
        error = RequestRefused(
            frame.error or "unsubscribe refused", response_type="unsubscribe_response", code=wire_code(frame.code)
        )
        return [UnsubscribeAnswered(request_id, topic, error)]

    def _on_publish_response(self, frame: frames.PublishResponse, now: float) -> list[Event[C]]:
        out = self._outgoing.get(frame.message_id) if frame.message_id is not None else None
        if out is None:
            return []
        if not frame.success:
            error = PublishRefused(
                frame.error or "publish refused", message_id=out.message_id, code=wire_code(frame.code)
            )
            return [self._complete(out, error)]
        delivered = frame.delivered_to
        first_answer = not out.answered
        out.answered = True
        events: list[Event[C]] = []
        if first_answer:
            result = PublishResult(out.message_id, delivered, frame.duplicate, out.acked)
            events.append(PublishAnswered(out.message_id, result))
        if out.acked or out.qos == 0 or delivered == 0:
            events.append(self._complete(out))
        elif first_answer:
            # Now waiting for ack_received. The re-sends already made still count: an answer to a re-send
            # (``duplicate``) must not restart the count, or AckTimeout could never come.
            self._arm(out, now)
        return events

    def _on_ack_received(self, frame: frames.AckReceived) -> list[Event[C]]:
        out = self._outgoing.get(frame.message_id)
        if out is None:
            return []
        out.acked = True
        return [self._complete(out)] if out.answered else []

    def _on_message(self, frame: frames.Message, now: float) -> list[Event[C]]:
        self.stats.received += 1
        topic, message_id = frame.topic, frame.message_id
        wants_ack = frame.qos != 0
        if self._seen.seen(message_id):
            self.stats.duplicates += 1
            if wants_ack:
                self._ack(topic, message_id)
            return []
        if message_id in self._handing:
            self.stats.duplicates += 1  # its hand-over is under way; that acks it
            return []
        try:
            payload = self._cipher.open(frame.data, frame.hash, topic=topic, message_id=message_id)
        except EnvelopeError as exc:
            return [self._reject(topic, message_id, exc.error)]
        timestamp = frame.timestamp if frame.timestamp is not None else 0
        message = Message(topic, payload, timestamp, message_id, frame.retry, 1 if wants_ack else 0, frame.retained)
        consumers = self._consumers_of(topic)
        if consumers:
            self._handing[message_id] = (topic, wants_ack)
            return [MessageReceived(message, consumers)]
        return self._hold(message, wants_ack, now)

    def _hold(self, message: Message, wants_ack: bool, now: float) -> list[Event[C]]:
        """Keep a message no route matches yet, unacked, for ``UNROUTED_GRACE_S``."""
        held = self._unrouted
        if message.message_id in held:
            return []  # a redelivery of one already held
        events: list[Event[C]] = []
        if len(held) >= UNROUTED_CAPACITY:
            oldest = next(iter(held))
            events.append(MessageDropped(held.pop(oldest)[0].topic, oldest))
            self.stats.unrouted += 1
        held[message.message_id] = (message, wants_ack, now)
        self.stats.held += 1
        return events

    def _ack(self, topic: str, message_id: str) -> None:
        if self._phase != _OPEN:
            return  # not acked: the broker redelivers it on the next connection
        self._outbox.append(codec.encode_client(frames.Ack(message_id, topic)))
        self.stats.acks_sent += 1

    def _reject(self, topic: str, message_id: str, reason: str) -> MessageRejected:
        self.stats.rejected += 1
        return MessageRejected(topic, message_id, reason)

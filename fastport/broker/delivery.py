"""Delivery: fan-out, per-subscriber at-least-once, queues, retained messages and dedupe.

Rules (``docs/protocol.md`` §6):

* A published message is tracked per (subscriber, message): each subscriber keeps its own
  ``inflight`` entry with its own retry count; one subscriber's ack never ends another's
  redelivery. Only an ack from the subscriber it was delivered to counts.
* The publisher gets ``ack_received`` on the first ack. The message is complete when every
  target acked it, or it expired or ran out of retries for that target.
* Redeliveries (``"retry": k``) go only to subscribers that have not acked, every
  ``retryInterval``, at most ``maxRetryLimit`` times, never after ``messageExpiryTime``, and
  not while the subscriber's socket still has unsent bytes (the previous copy may sit there).
* QoS 0 (the lower of the publish's and the subscription's level) is sent once, marked
  ``"qos": 0``, never held, retried or acked; it is dropped (and counted) for a subscriber
  that is offline or whose socket is backed up.
* Per subscriber, first deliveries follow publish order: at most ``inflightWindow`` messages
  are unacked at once; further ones wait in its bounded queue (``maxQueuedMessages``,
  ``maxQueuedBytes``); overflow follows ``queueOverflow`` and is counted and reported.
* A publish whose (session, messageId) was accepted within the dedupe window is not fanned
  out again. The window lasts as long as the message may live (its expiry, else retries
  times interval), bounded per session by ``DEDUPE_CAPACITY`` ids (``fastport.broker.dedupe``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from fastport._speedups import Inflight, fan_out
from fastport.broker.histogram import LatencyHistogram
from fastport.broker.subscriber import DurableExpiry, Subscriber
from fastport.errors import ErrorCode, LimitExceeded, ProtocolError
from fastport.protocol import codec
from fastport.protocol.frames import QOS_AT_MOST_ONCE, Publish, Will
from fastport.protocol.topics import filter_matches

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session
    from fastport.engines.redis import RedisEngine
    from fastport.engines.sqlite import SqliteStore

logger = logging.getLogger("fastport.delivery")


class Message:
    """One accepted publish and its delivery bookkeeping across subscribers."""

    __slots__ = (
        "session",
        "message_id",
        "topic",
        "publish",
        "timestamp",
        "qos",
        "seq",
        "size",
        "publisher",
        "frame",
        "pending",
        "acked",
        "delivered_to",
        "expires_at_ms",
        "dedupe_until_ms",
        "retained",
        "origin",
        "born_ms",
        "_retry_frame",
        "_retry_k",
    )

    def __init__(
        self,
        session: Session,
        publish: Publish,
        timestamp: int | float,
        seq: int,
        publisher: Connection | None,
        now_ms: int,
        retained: bool = False,
    ) -> None:
        settings = session.settings
        self.session = session
        self.message_id = publish.message_id
        self.topic = publish.topic
        self.publish: Publish | None = publish
        self.timestamp = timestamp
        self.qos = publish.qos
        self.seq = seq
        self.size = len(publish.data)
        self.publisher = publisher
        self.frame: bytes | None = codec.encode_message(publish, timestamp, retained=retained)
        self.pending = 0
        self.acked = False
        self.delivered_to = 0
        expiry = settings.message_expiry_ms
        self.expires_at_ms = None if expiry is None else now_ms + expiry
        lifetime = expiry if expiry is not None else settings.retry_interval_ms * (settings.max_retry_limit + 1)
        self.dedupe_until_ms = now_ms + lifetime
        self.retained = retained
        #: The node that accepted the publish, when another node did (scale-out).
        self.origin: str | None = None
        self.born_ms = now_ms
        self._retry_frame: bytes | None = None
        self._retry_k = 0

    def retry_frame(self, attempt: int) -> bytes:
        """The ``message`` frame of redelivery ``attempt`` (cached: many subscribers share a k)."""
        if self._retry_k != attempt or self._retry_frame is None:
            assert self.publish is not None
            self._retry_frame = codec.encode_message(
                self.publish, self.timestamp, retry=attempt, retained=self.retained
            )
            self._retry_k = attempt
        return self._retry_frame

    def qos0_frame(self) -> bytes:
        """The ``message`` frame of an at-most-once delivery (``"qos": 0``: do not ack)."""
        assert self.publish is not None
        return codec.encode_message(self.publish, self.timestamp, qos=QOS_AT_MOST_ONCE, retained=self.retained)


class Delivery:
    """Fan-out and at-least-once bookkeeping for every session of the broker.

    With a ``store``, every change a restart must see is written through it (durable clients'
    delivery state, retained messages, the dedupe window), and everything sent to a publisher
    about its message waits until the store committed it: a confirmed publish is on disk.
    """

    def __init__(
        self, scheduler: Scheduler, store: SqliteStore | None = None, engine: RedisEngine | None = None
    ) -> None:
        self._scheduler = scheduler
        self._clock = scheduler.clock
        self.store = store
        self.engine = engine
        self.published = 0
        self.deliveries = 0
        self.acks = 0
        self.redeliveries = 0
        self.expired = 0
        self.exhausted = 0
        self.duplicates = 0
        self.dropped_qos0 = 0
        self.queue_overflows = 0
        self.retained_evictions = 0
        self.wills_published = 0
        self.durable_expired = 0
        #: Publish to first delivery (queued deliveries wait for a slot or a resume).
        self.delivery_latency = LatencyHistogram()
        #: Publish to each subscriber's ack.
        self.ack_latency = LatencyHistogram()

    # ------------------------------------------------------------------ publish

    def publish(
        self, session: Session, publisher: Connection | None, publish: Publish, origin: str | None = None
    ) -> None:
        """Fan ``publish`` out to the session's matching subscribers and answer the publisher.

        Args:
            session: the publisher's session.
            publisher: the publishing connection (None for a last will or a remote publish).
            publish: the frame.
            origin: the node that accepted it, when it comes from another node.
        """
        now = self._scheduler.now_ms()
        recent = session.recent
        held = recent.get(publish.message_id)
        if held is not None and held.dedupe_until_ms > now:
            if origin is None:
                self._duplicate(held, publisher)
            return
        recent.prune(now)
        timestamp = publish.timestamp if publish.timestamp is not None else int(time.time() * 1000)
        session.seq += 1
        message = Message(session, publish, timestamp, session.seq, publisher, now)
        message.origin = origin
        if publish.retain:
            self._retain(session, publish, timestamp)
        targets = session.index.match(publish.topic)
        rest: list[tuple[Subscriber, int]] | None
        if publish.qos == QOS_AT_MOST_ONCE:
            delivered, rest = 0, [(subscriber, QOS_AT_MOST_ONCE) for subscriber in targets]
        else:
            # The common case in compiled code: every online subscriber with room gets the frame now.
            settings = session.settings
            delivered, rest = fan_out(
                targets,
                message,
                publisher,
                now + settings.retry_interval_ms,
                settings.inflight_window,
                self.store is not None,
                self._scheduler.call_at,
            )
            message.pending += delivered
            self.deliveries += delivered
        sent_now = delivered
        sent_before = self.deliveries
        durable_targets = False
        for subscriber, qos in rest or ():
            connection = subscriber.connection
            if connection is publisher and connection is not None:
                continue
            if self._offer(subscriber, message, qos, now):
                delivered += 1
                durable_targets = durable_targets or (subscriber.durable and qos != QOS_AT_MOST_ONCE)
        message.delivered_to = delivered
        self.delivery_latency.observe_many_immediate(sent_now + self.deliveries - sent_before)
        self.published += 1
        recent.remember(message)
        if self.store is not None:
            self._store_message(message, publish if durable_targets else None, timestamp, delivered)
        if self.engine is not None and origin is None:
            self.engine.forward_publish(
                session.name,
                {
                    "id": publish.message_id,
                    "t": publish.topic,
                    "d": publish.data,
                    "h": publish.hash,
                    "ts": timestamp,
                    "q": publish.qos,
                    "r": publish.retain,
                },
            )
        if message.pending == 0:
            self._complete(message)
        else:
            session.live_messages += 1
        if publisher is not None:
            self._to_publisher(
                publisher,
                codec.encode(
                    {
                        "type": "publish_response",
                        "success": True,
                        "messageId": publish.message_id,
                        "deliveredTo": delivered,
                    }
                ),
            )

    def _duplicate(self, held: Message, publisher: Connection | None) -> None:
        self.duplicates += 1
        if publisher is None:
            return
        # A client retry, maybe from a new connection: a later ack_received goes there.
        if held.pending:
            held.publisher = publisher
        self._to_publisher(
            publisher,
            codec.encode(
                {
                    "type": "publish_response",
                    "success": True,
                    "messageId": held.message_id,
                    "deliveredTo": held.delivered_to,
                    "duplicate": True,
                }
            ),
        )
        if held.acked:
            self._to_publisher(publisher, _ack_received(held))

    def _store_message(self, message: Message, publish: Publish | None, timestamp: int | float, delivered: int) -> None:
        """Write a message's dedupe record, with its payload when ``publish`` is given (a durable client needs it)."""
        assert self.store is not None
        self.store.put_message(
            message.session.name,
            message.message_id,
            message.seq,
            message.topic,
            None if publish is None else publish.data,
            None if publish is None else publish.hash,
            timestamp,
            message.qos,
            None if message.expires_at_ms is None else self._wall_ms(message.expires_at_ms),
            self._wall_ms(message.dedupe_until_ms),
            delivered,
        )

    def _to_publisher(self, publisher: Connection, frame: bytes) -> None:
        """Send ``frame`` to a publisher, after the store committed what it confirms."""
        if self.store is None:
            publisher.sink.send(frame)
            return
        sink = publisher.sink

        def send() -> None:
            if sink.is_open:
                sink.send(frame)

        self.store.after_commit(send)

    def _wall_ms(self, monotonic_ms: int) -> int:
        """Wall-clock epoch ms of a scheduler time (what the store keeps)."""
        return monotonic_ms + int(time.time() * 1000) - self._scheduler.now_ms()

    def _retain(self, session: Session, publish: Publish, timestamp: int | float) -> None:
        retained = session.retained
        store = self.store
        if retained.pop(publish.topic, None) is not None and store is not None and not publish.data:
            store.delete_retained(session.name, publish.topic)
        if not publish.data:
            return
        limit = session.settings.max_retained
        while retained and len(retained) >= limit:
            evicted = next(iter(retained))
            del retained[evicted]
            self.retained_evictions += 1
            if store is not None:
                store.delete_retained(session.name, evicted)
            logger.warning("session %r: retained store full, evicted topic %r", session.name, evicted)
        if limit:
            retained[publish.topic] = (publish, timestamp)
            if store is not None:
                store.put_retained(
                    session.name, publish.topic, publish.message_id, publish.data, publish.hash, timestamp, publish.qos
                )

    def send_retained(self, subscriber: Subscriber, topic_filter: str, subscription_qos: int) -> None:
        """Offer every retained message matching a new subscription, marked ``"retained": true``."""
        session = subscriber.session
        now = self._scheduler.now_ms()
        for topic, (publish, timestamp) in list(session.retained.items()):
            if not filter_matches(topic_filter, topic) or publish.message_id in subscriber.inflight:
                continue
            session.seq += 1
            message = Message(session, publish, timestamp, session.seq, None, now, retained=True)
            qos = publish.qos if publish.qos < subscription_qos else subscription_qos
            self._offer(subscriber, message, qos, now)
            if self.store is not None and subscriber.durable and message.pending:
                self._store_message(message, publish, timestamp, 1)
            if message.pending:
                session.live_messages += 1
            else:
                self._complete(message)

    def publish_will(self, session: Session, will: Will) -> None:
        """Publish a connection's last will (no publisher to answer)."""
        publish = Publish(
            topic=will.topic,
            data=will.data,
            message_id=str(uuid.uuid4()),
            hash=will.hash,
            timestamp=int(time.time() * 1000),
            qos=will.qos,
            retain=will.retain,
        )
        self.wills_published += 1
        self.publish(session, None, publish)

    # -------------------------------------------------------------- per subscriber

    def _offer(self, subscriber: Subscriber, message: Message, qos: int, now_ms: int) -> bool:
        """Send or queue ``message`` to one subscriber; False if it was dropped instead."""
        connection = subscriber.connection
        if qos == QOS_AT_MOST_ONCE:
            if connection is None or connection.sink.paused or not connection.sink.is_open:
                self.dropped_qos0 += 1
                return False
            connection.sink.send(message.qos0_frame())
            self.deliveries += 1
            return True
        if (
            connection is None
            or subscriber.queue
            or connection.sink.paused
            or len(subscriber.inflight) >= subscriber.session.settings.inflight_window
        ):
            return self._enqueue(subscriber, message)
        message.pending += 1
        self._transmit(subscriber, connection, message, now_ms)
        return True

    def _transmit(self, subscriber: Subscriber, connection: Connection, message: Message, now_ms: int) -> None:
        """First delivery of a message already counted in ``pending``."""
        inflight = subscriber.inflight
        superseded = inflight.pop(message.message_id, None)
        if superseded is not None:
            self._release(superseded.message)
        assert message.frame is not None
        connection.sink.send(message.frame)
        self.deliveries += 1
        due = now_ms + subscriber.session.settings.retry_interval_ms
        inflight[message.message_id] = Inflight(message, 0, due)
        if subscriber.durable and self.store is not None:
            self._store_target(subscriber, message.message_id, 0, sent=True)
        if subscriber.retry_handle is None:
            subscriber.retry_handle = self._scheduler.call_at(due, subscriber)

    def _enqueue(self, subscriber: Subscriber, message: Message) -> bool:
        settings = subscriber.session.settings
        queue = subscriber.queue
        if queue is None:
            queue = subscriber.queue = deque()
        while len(queue) >= settings.max_queued_messages or (
            queue and subscriber.queued_bytes + message.size > settings.max_queued_bytes
        ):
            if settings.queue_overflow == "drop-new" or not queue:
                self._overflow(subscriber, message)
                return False
            oldest = queue.popleft()
            subscriber.queued_bytes -= oldest.size
            self._overflow(subscriber, oldest)
            self._drop_target(subscriber, oldest)
        if message.size > settings.max_queued_bytes:
            self._overflow(subscriber, message)
            return False
        queue.append(message)
        subscriber.queued_bytes += message.size
        message.pending += 1
        if subscriber.durable and self.store is not None:
            self._store_target(subscriber, message.message_id, 0, sent=False)
        return True

    def _store_target(self, subscriber: Subscriber, message_id: str, attempts: int, sent: bool) -> None:
        assert self.store is not None and subscriber.client_id is not None
        self.store.put_target(subscriber.session.name, subscriber.client_id, message_id, attempts, sent)

    def _drop_target(self, subscriber: Subscriber, message: Message) -> None:
        """``subscriber`` is done with ``message`` without an ack (expired, exhausted, overflowed)."""
        if subscriber.durable and self.store is not None:
            assert subscriber.client_id is not None
            self.store.delete_target(subscriber.session.name, subscriber.client_id, message.message_id)
        self._release(message)

    def _overflow(self, subscriber: Subscriber, message: Message) -> None:
        self.queue_overflows += 1
        connection = subscriber.connection
        if connection is None:
            subscriber.dropped_offline += 1
            return
        error = LimitExceeded("queue full: message dropped", code=ErrorCode.QUEUE_OVERFLOW)
        connection.sink.send(codec.encode_error(error, None, messageId=message.message_id, topic=message.topic))

    def drain(self, subscriber: Subscriber) -> None:
        """Send queued messages into free inflight slots (the subscriber's socket drained)."""
        self._drain(subscriber, self._scheduler.now_ms())

    def _drain(self, subscriber: Subscriber, now_ms: int) -> None:
        """Move queued messages into free inflight slots, in publish order, while the socket takes them."""
        queue = subscriber.queue
        connection = subscriber.connection
        if not queue or connection is None:
            return
        window = subscriber.session.settings.inflight_window
        sink = connection.sink
        while queue and len(subscriber.inflight) < window and not sink.paused:
            message = queue.popleft()
            subscriber.queued_bytes -= message.size
            if message.expires_at_ms is not None and now_ms >= message.expires_at_ms:
                self.expired += 1
                self._drop_target(subscriber, message)
                continue
            self._transmit(subscriber, connection, message, now_ms)
            self.delivery_latency.observe(now_ms - message.born_ms)

    def ack(self, subscriber: Subscriber, message_id: str) -> None:
        """Record ``subscriber``'s ack of ``message_id``.

        Raises:
            ProtocolError: the message was not delivered to this subscriber, or is already acked.
        """
        entry = subscriber.inflight.pop(message_id, None)
        if entry is None:
            raise ProtocolError("Unknown or already acknowledged message", code=ErrorCode.UNKNOWN_MESSAGE)
        self.acks += 1
        message = entry.message
        now = int(self._clock() * 1000)  # the scheduler's now_ms(), inlined
        self.ack_latency.observe(now - message.born_ms)
        if not message.acked:
            message.acked = True
            publisher = message.publisher
            if publisher is not None and publisher.sink.is_open:
                self._to_publisher(publisher, _ack_received(message))
            elif message.origin is not None and self.engine is not None:
                self.engine.forward_ack(message.origin, message.session.name, message.message_id)
        # Every ack of every delivery passes here: ``_drop_target`` and ``_release``, inlined.
        if subscriber.durable and self.store is not None:
            assert subscriber.client_id is not None
            self.store.delete_target(subscriber.session.name, subscriber.client_id, message_id)
        message.pending -= 1
        if message.pending == 0:
            message.session.live_messages -= 1
            self._complete(message)
        if subscriber.queue:
            self._drain(subscriber, now)

    def remote_ack(self, session: Session, message_id: str) -> None:
        """A subscriber on another node acked a message published here: tell its publisher, once."""
        message = session.recent.get(message_id)
        if message is None or message.acked:
            return
        message.acked = True
        publisher = message.publisher
        if publisher is not None and publisher.sink.is_open:
            self._to_publisher(publisher, _ack_received(message))

    def on_retry_due(self, subscriber: Subscriber, now_ms: int) -> None:
        """Redeliver every due entry of ``subscriber``, or drop it if expired or out of retries."""
        subscriber.retry_handle = None
        connection = subscriber.connection
        if subscriber.released or connection is None:
            return
        inflight = subscriber.inflight
        settings = subscriber.session.settings
        interval = settings.retry_interval_ms
        due_ids = []
        for message_id, entry in inflight.items():
            if entry.due_ms > now_ms:
                break
            due_ids.append(message_id)
        sink = connection.sink
        for message_id in due_ids:
            entry = inflight.pop(message_id)
            message = entry.message
            if message.expires_at_ms is not None and now_ms >= message.expires_at_ms:
                self.expired += 1
                self._drop_target(subscriber, message)
                continue
            if entry.attempts >= settings.max_retry_limit:
                self.exhausted += 1
                self._drop_target(subscriber, message)
                continue
            if sink.is_open and not sink.backlog:
                entry.attempts += 1
                sink.send(message.retry_frame(entry.attempts))
                self.redeliveries += 1
                if subscriber.durable and self.store is not None:
                    self._store_target(subscriber, message_id, entry.attempts, sent=True)
            entry.due_ms = now_ms + interval
            inflight[message_id] = entry
        self._drain(subscriber, now_ms)
        if inflight and subscriber.retry_handle is None:
            subscriber.retry_handle = self._scheduler.call_at(next(iter(inflight.values())).due_ms, subscriber)

    # ---------------------------------------------------------- subscriber lifecycle

    def new_subscriber(self, session: Session, client_id: str | None, durable: bool) -> Subscriber:
        """A subscriber for a new connection (or a new durable client)."""
        subscriber = Subscriber(self, session, client_id, durable)
        self.save_durable(subscriber)
        return subscriber

    def save_durable(self, subscriber: Subscriber) -> None:
        """Write a durable client's filters and online state to the store (a no-op otherwise)."""
        if subscriber.durable and self.store is not None and not subscriber.released:
            assert subscriber.client_id is not None
            offline_since = None if subscriber.connection is not None else int(time.time() * 1000)
            self.store.put_durable(subscriber.session.name, subscriber.client_id, subscriber.filters, offline_since)

    def resume(self, subscriber: Subscriber, connection: Connection) -> None:
        """Attach a durable subscriber to its new connection and send what it holds, in publish order."""
        if subscriber.ttl_handle is not None:
            self._scheduler.cancel(subscriber.ttl_handle)
            subscriber.ttl_handle = None
        subscriber.connection = connection
        self.save_durable(subscriber)
        now = self._scheduler.now_ms()
        interval = subscriber.session.settings.retry_interval_ms
        held = sorted(subscriber.inflight.values(), key=lambda entry: entry.message.seq)
        subscriber.inflight.clear()
        for entry in held:
            message = entry.message
            if message.expires_at_ms is not None and now >= message.expires_at_ms:
                self.expired += 1
                self._drop_target(subscriber, message)
                continue
            entry.attempts += 1
            connection.sink.send(message.retry_frame(entry.attempts))
            self.redeliveries += 1
            if self.store is not None:
                self._store_target(subscriber, message.message_id, entry.attempts, sent=True)
            entry.due_ms = now + interval
            subscriber.inflight[message.message_id] = entry
        if subscriber.dropped_offline:
            error = LimitExceeded(
                f"queue full while offline: {subscriber.dropped_offline} message(s) dropped",
                code=ErrorCode.QUEUE_OVERFLOW,
            )
            connection.sink.send(codec.encode_error(error, None, dropped=subscriber.dropped_offline))
            subscriber.dropped_offline = 0
        self._drain(subscriber, now)
        if subscriber.inflight and subscriber.retry_handle is None:
            subscriber.retry_handle = self._scheduler.call_at(now + interval, subscriber)

    def detach(self, subscriber: Subscriber) -> None:
        """The subscriber's connection ended: keep a durable one for its TTL, release any other."""
        subscriber.connection = None
        if not subscriber.durable or subscriber.released:
            self.release_subscriber(subscriber)
            return
        self.save_durable(subscriber)
        self.arm_durable_ttl(subscriber, self._scheduler.now_ms() + subscriber.session.settings.durable_ttl_ms)

    def arm_durable_ttl(self, subscriber: Subscriber, deadline_ms: int) -> None:
        """Forget the offline durable ``subscriber`` at ``deadline_ms`` unless it resumes first."""
        subscriber.ttl_handle = self._scheduler.call_at(deadline_ms, DurableExpiry(subscriber))

    def expire_durable(self, subscriber: Subscriber) -> None:
        """A durable subscriber stayed away past its TTL: forget it."""
        if subscriber.connection is not None or subscriber.released:
            return
        self.durable_expired += 1
        logger.info("session %r: durable client %r expired", subscriber.session.name, subscriber.client_id)
        self.release_subscriber(subscriber)

    def export_durable(self, subscriber: Subscriber) -> dict[str, Any]:
        """A durable client's filters and held messages, in publish order, for another node."""
        held = [(entry.message, entry.attempts, True) for entry in subscriber.inflight.values()]
        held += [(message, 0, False) for message in subscriber.queue or ()]
        held.sort(key=lambda item: item[0].seq)
        node_id = self.engine.node_id if self.engine is not None else None
        messages = []
        for message, attempts, sent in held:
            publish = message.publish
            assert publish is not None
            messages.append(
                {
                    "id": message.message_id,
                    "t": message.topic,
                    "d": publish.data,
                    "h": publish.hash,
                    "ts": message.timestamp,
                    "q": message.qos,
                    "a": attempts,
                    "sent": sent,
                    "o": message.origin or node_id,
                }
            )
        return {"filters": dict(subscriber.filters), "messages": messages}

    def import_durable(self, session: Session, client_id: str, state: dict[str, Any]) -> Subscriber:
        """Take over a durable client exported by another node (``export_durable``)."""
        subscriber = Subscriber(self, session, client_id, durable=True)
        subscriber.filters = {str(name): int(qos) for name, qos in state["filters"].items()}
        for topic_filter, qos in subscriber.filters.items():
            session.index.add(topic_filter, subscriber, qos)
        session.clients[client_id] = subscriber
        now = self._scheduler.now_ms()
        node_id = self.engine.node_id if self.engine is not None else None
        for item in state["messages"]:
            known = session.recent.get(item["id"])
            if known is not None and known.publish is not None:
                message = known  # it was published or forwarded here too: share its bookkeeping
            else:
                publish = Publish(
                    topic=item["t"],
                    data=item["d"],
                    message_id=item["id"],
                    hash=item["h"],
                    timestamp=item["ts"],
                    qos=item["q"],
                )
                session.seq += 1
                message = Message(session, publish, item["ts"], session.seq, None, now)
                message.origin = None if item["o"] == node_id else item["o"]
                if known is not None:
                    message.publisher, message.acked = known.publisher, known.acked
            if message.pending == 0:
                session.live_messages += 1
            message.pending += 1
            if item["sent"]:
                subscriber.inflight[message.message_id] = Inflight(message, int(item["a"]), now)
            else:
                if subscriber.queue is None:
                    subscriber.queue = deque()
                subscriber.queue.append(message)
                subscriber.queued_bytes += message.size
        self.save_durable(subscriber)
        return subscriber

    def release_subscriber(self, subscriber: Subscriber, handed_over: bool = False) -> None:
        """Forget a subscriber: its filters leave the index, its held messages stop waiting for it.

        ``handed_over``: another node took the durable client over (its ownership record stays).
        """
        if subscriber.released:
            return
        subscriber.released = True
        session = subscriber.session
        if subscriber.durable and self.engine is not None and not handed_over:
            assert subscriber.client_id is not None
            self.engine.release_durable_soon(session.name, subscriber.client_id)
        if subscriber.durable and self.store is not None and not session.dropped:
            assert subscriber.client_id is not None
            self.store.delete_durable(session.name, subscriber.client_id)
        for topic_filter in subscriber.filters:
            session.index.discard(topic_filter, subscriber)
        subscriber.filters.clear()
        if subscriber.client_id is not None and session.clients.get(subscriber.client_id) is subscriber:
            del session.clients[subscriber.client_id]
        for handle in (subscriber.ttl_handle, subscriber.retry_handle):
            if handle is not None:
                self._scheduler.cancel(handle)
        subscriber.ttl_handle = subscriber.retry_handle = None
        for entry in subscriber.inflight.values():
            self._release(entry.message)
        subscriber.inflight.clear()
        if subscriber.queue:
            for message in subscriber.queue:
                self._release(message)
            subscriber.queue = None
        subscriber.queued_bytes = 0

    def forget_session(self, session: Session) -> None:
        """Release everything of a dropped session."""
        for subscriber in list(session.clients.values()):
            self.release_subscriber(subscriber)
        session.recent.clear()
        session.retained.clear()
        session.live_messages = 0

    # ------------------------------------------------------------------ messages

    def _release(self, message: Message) -> None:
        """One target of ``message`` is done with it (acked, expired, exhausted, dropped or gone)."""
        message.pending -= 1
        if message.pending == 0:
            message.session.live_messages -= 1
            self._complete(message)

    def _complete(self, message: Message) -> None:
        # Only the dedupe record stays (in session.recent): drop the payload.
        if self.store is not None and not message.session.dropped:
            self.store.finish_message(message.session.name, message.message_id, message.acked)
        message.frame = None
        message.publish = None
        message._retry_frame = None
        if message.acked or self.engine is None:
            # With other nodes, the first ack may still come from one of them.
            message.publisher = None


def _ack_received(message: Message) -> bytes:
    return codec.encode({"type": "ack_received", "messageId": message.message_id, "topic": message.topic})

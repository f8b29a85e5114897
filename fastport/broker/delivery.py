"""Delivery: publish -> fan-out -> offer, queue and drain -> ack -> retry, per subscriber, at least once.

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

"Send now or queue?" is ``send_now`` and "record a sent copy and arm its retry" is ``track``,
both in ``fastport._speedups`` next to the compiled ``fan_out`` that applies them to the common
case; every path here uses the same two functions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING

from fastport._speedups import fan_out, send_now, track
from fastport.broker.message import Message
from fastport.errors import ErrorCode, LimitExceeded
from fastport.protocol import codec
from fastport.protocol.frames import QOS_AT_MOST_ONCE, Publish, Will

if TYPE_CHECKING:
    from fastport._speedups import Inflight
    from fastport.broker.cluster import ClusterLink
    from fastport.broker.connection import Connection
    from fastport.broker.journal import Journal
    from fastport.broker.retained import RetainedMessages
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session
    from fastport.broker.stats import DeliveryCounters
    from fastport.broker.subscriber import Subscriber

logger = logging.getLogger("fastport.delivery")


class Delivery:
    """Fan-out and at-least-once bookkeeping for every session of the broker.

    Every change a restart must see goes to ``journal``; everything sent to a publisher about its
    message goes through ``journal.confirm``, so with a store a confirmed publish is on disk.

    Args:
        scheduler: the broker's timers (retries).
        journal: where deliveries to durable clients, accepted messages and retained ones are recorded.
        cluster: the link to other nodes (publishes and first acks are forwarded there).
        retained: the sessions' retained messages.
        counters: what is counted for ``/metrics``.
    """

    __slots__ = (
        "_arm",
        "_clock",
        "_cluster",
        "_durable_aside",
        "_journal",
        "_multi_node",
        "_retained",
        "_scheduler",
        "counters",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        journal: Journal,
        cluster: ClusterLink,
        retained: RetainedMessages,
        counters: DeliveryCounters,
    ) -> None:
        self._scheduler = scheduler
        self._clock = scheduler.clock
        self._journal = journal
        self._cluster = cluster
        self._retained = retained
        self.counters = counters
        # Both are constant for the life of the journal and the link; read once, not per publish.
        self._durable_aside = journal.keeps_durable_state
        self._multi_node = cluster.multi_node
        #: ``arm(due_ms, subscriber)``: the retry timer ``track`` and ``fan_out`` arm.
        self._arm = self.arm_retry

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
        counters = self.counters
        dedupe = session.dedupe
        held = dedupe.get(publish.message_id)
        if held is not None and held.dedupe_until_ms > now:
            if origin is None:
                self._duplicate(held, publisher)
            return
        dedupe.prune(now)
        timestamp = publish.timestamp if publish.timestamp is not None else int(time.time() * 1000)
        session.seq += 1
        message = Message(session, publish, timestamp, session.seq, publisher, now)
        message.origin = origin
        if publish.retain:
            self._retained.retain(session, publish, timestamp)
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
                self._durable_aside,
                self._arm,
            )
            message.pending += delivered
            counters.deliveries += delivered
        sent_now = delivered
        sent_before = counters.deliveries
        durable_targets = False
        for subscriber, qos in rest or ():
            connection = subscriber.connection
            if connection is publisher and connection is not None:
                continue
            if self.offer(subscriber, message, qos, now):
                delivered += 1
                durable_targets = durable_targets or (subscriber.durable and qos != QOS_AT_MOST_ONCE)
        message.delivered_to = delivered
        counters.delivery_latency.observe_many_immediate(sent_now + counters.deliveries - sent_before)
        counters.published += 1
        dedupe.remember(message)
        self._journal.message_accepted(message, durable_targets)
        if origin is None:
            self._cluster.forward_publish(session.name, publish, timestamp)
        if message.pending == 0:
            self.complete(message)
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
        self.counters.duplicates += 1
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
            self._to_publisher(publisher, held.ack_received_frame())

    def _to_publisher(self, publisher: Connection, frame: bytes) -> None:
        """Send ``frame`` to a publisher, once the journal committed what it confirms."""
        self._journal.confirm(publisher.sink, frame)

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
        self.counters.wills_published += 1
        self.publish(session, None, publish)

    def send_retained(self, subscriber: Subscriber, topic_filter: str, subscription_qos: int) -> None:
        """Offer every retained message matching a new subscription, marked ``"retained": true``."""
        session = subscriber.session
        now = self._scheduler.now_ms()
        for publish, timestamp in self._retained.matching(session, topic_filter):
            if publish.message_id in subscriber.inflight:
                continue
            session.seq += 1
            message = Message(session, publish, timestamp, session.seq, None, now, retained=True)
            qos = min(publish.qos, subscription_qos)
            self.offer(subscriber, message, qos, now)
            if message.pending:
                if subscriber.durable:
                    message.delivered_to = 1
                    self._journal.message_accepted(message, True)
                session.live_messages += 1
            else:
                self.complete(message)

    # -------------------------------------------------------------- per subscriber

    def offer(self, subscriber: Subscriber, message: Message, qos: int, now_ms: int) -> bool:
        """Send or queue ``message`` to one subscriber; False if it was dropped instead."""
        connection = subscriber.connection
        if qos == QOS_AT_MOST_ONCE:
            if connection is None or connection.sink.paused or not connection.sink.is_open:
                self.counters.dropped_qos0 += 1
                return False
            connection.sink.send(message.qos0_frame())
            self.counters.deliveries += 1
            return True
        if connection is None or not send_now(subscriber, subscriber.session.settings.inflight_window):
            return self._enqueue(subscriber, message)
        message.pending += 1
        self._transmit(subscriber, connection, message, now_ms)
        return True

    def _transmit(self, subscriber: Subscriber, connection: Connection, message: Message, now_ms: int) -> None:
        """First delivery of a message already counted in ``pending``."""
        superseded = subscriber.inflight.pop(message.message_id, None)
        if superseded is not None:
            self.release(superseded.message)
        assert message.frame is not None
        connection.sink.send(message.frame)
        self.counters.deliveries += 1
        track(subscriber, message, 0, now_ms + subscriber.session.settings.retry_interval_ms, self._arm)
        if subscriber.durable:
            self._hold(subscriber, message.message_id, 0, sent=True)

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
            self.drop_target(subscriber, oldest)
        if message.size > settings.max_queued_bytes:
            self._overflow(subscriber, message)
            return False
        queue.append(message)
        subscriber.queued_bytes += message.size
        message.pending += 1
        if subscriber.durable:
            self._hold(subscriber, message.message_id, 0, sent=False)
        return True

    def _hold(self, subscriber: Subscriber, message_id: str, attempts: int, sent: bool) -> None:
        """Record a durable subscriber's delivery state of one message."""
        assert subscriber.client_id is not None
        self._journal.target_held(subscriber.session.name, subscriber.client_id, message_id, attempts, sent)

    def drop_target(self, subscriber: Subscriber, message: Message) -> None:
        """``subscriber`` is done with ``message`` without an ack (expired, exhausted, overflowed)."""
        if subscriber.durable:
            assert subscriber.client_id is not None
            self._journal.target_done(subscriber.session.name, subscriber.client_id, message.message_id)
        self.release(message)

    def _overflow(self, subscriber: Subscriber, message: Message) -> None:
        self.counters.queue_overflows += 1
        connection = subscriber.connection
        if connection is None:
            subscriber.dropped_offline += 1
            return
        error = LimitExceeded("queue full: message dropped", code=ErrorCode.QUEUE_OVERFLOW)
        connection.sink.send(codec.encode_error(error, None, messageId=message.message_id, topic=message.topic))

    def drain(self, subscriber: Subscriber, now_ms: int | None = None) -> None:
        """Move queued messages into free inflight slots, in publish order, while the socket takes them."""
        queue = subscriber.queue
        connection = subscriber.connection
        if not queue or connection is None:
            return
        if now_ms is None:
            now_ms = self._scheduler.now_ms()
        window = subscriber.session.settings.inflight_window
        sink = connection.sink
        while queue and len(subscriber.inflight) < window and not sink.paused:
            message = queue.popleft()
            subscriber.queued_bytes -= message.size
            if message.expired(now_ms):
                self.counters.expired += 1
                self.drop_target(subscriber, message)
                continue
            self._transmit(subscriber, connection, message, now_ms)
            self.counters.delivery_latency.observe(now_ms - message.born_ms)

    def ack(self, subscriber: Subscriber, message_id: str) -> None:
        """Record ``subscriber``'s ack of ``message_id``.

        Acks are idempotent: one of a message not held for this subscriber (acked already, never
        delivered to it, or unknown) changes nothing and is answered with nothing; it is counted.
        """
        entry = subscriber.inflight.pop(message_id, None)
        counters = self.counters
        if entry is None:
            counters.ignored_acks += 1
            return
        counters.acks += 1
        message = entry.message
        now = int(self._clock() * 1000)  # the scheduler's now_ms(), inlined
        counters.ack_latency.observe(now - message.born_ms)
        if not message.acked:
            message.acked = True
            publisher = message.publisher
            if publisher is not None and publisher.sink.is_open:
                self._to_publisher(publisher, message.ack_received_frame())
            elif message.origin is not None:
                self._cluster.forward_ack(message.origin, message.session.name, message.message_id)
        # Every ack of every delivery passes here: ``drop_target`` and ``release``, inlined.
        if subscriber.durable:
            assert subscriber.client_id is not None
            self._journal.target_done(subscriber.session.name, subscriber.client_id, message_id)
        message.pending -= 1
        if message.pending == 0:
            message.session.live_messages -= 1
            self.complete(message)
        if subscriber.queue:
            self.drain(subscriber, now)

    def remote_ack(self, session: Session, message_id: str) -> None:
        """A subscriber on another node acked a message published here: tell its publisher, once."""
        message = session.dedupe.get(message_id)
        if message is None or message.acked:
            return
        message.acked = True
        publisher = message.publisher
        if publisher is not None and publisher.sink.is_open:
            self._to_publisher(publisher, message.ack_received_frame())

    # ------------------------------------------------------------------ retries

    def arm_retry(self, due_ms: int, subscriber: Subscriber) -> int:
        """Arm ``subscriber``'s retry timer for ``due_ms``; returns its handle."""
        return self._scheduler.call_at(due_ms, self._retry_due, subscriber)

    def resend(self, subscriber: Subscriber, entry: Inflight[Message], now_ms: int) -> None:
        """Send a held entry again as its next redelivery (``"retry": k``), due again in one interval.

        The entry goes to the back of the subscriber's ``inflight`` (the map stays in retry order).
        """
        message = entry.message
        entry.attempts += 1
        connection = subscriber.connection
        assert connection is not None
        connection.sink.send(message.retry_frame(entry.attempts))
        self.counters.redeliveries += 1
        if subscriber.durable:
            self._hold(subscriber, message.message_id, entry.attempts, sent=True)
        entry.due_ms = now_ms + subscriber.session.settings.retry_interval_ms
        subscriber.inflight[message.message_id] = entry

    def _retry_due(self, subscriber: Subscriber, now_ms: int) -> None:
        """Redeliver every due entry of ``subscriber``, or drop it if expired or out of retries."""
        subscriber.retry_handle = None
        connection = subscriber.connection
        if subscriber.released or connection is None:
            return
        inflight = subscriber.inflight
        settings = subscriber.session.settings
        due_ids = []
        for message_id, entry in inflight.items():
            if entry.due_ms > now_ms:
                break
            due_ids.append(message_id)
        sink = connection.sink
        for message_id in due_ids:
            entry = inflight.pop(message_id)
            message = entry.message
            if message.expired(now_ms):
                self.counters.expired += 1
                self.drop_target(subscriber, message)
            elif entry.attempts >= settings.max_retry_limit:
                self.counters.exhausted += 1
                self.drop_target(subscriber, message)
            elif sink.is_open and not sink.backlog:
                self.resend(subscriber, entry, now_ms)
            else:
                # The previous copy may still sit in the socket's buffer: wait another interval.
                entry.due_ms = now_ms + settings.retry_interval_ms
                inflight[message_id] = entry
        self.drain(subscriber, now_ms)
        if inflight and subscriber.retry_handle is None:
            subscriber.retry_handle = self.arm_retry(next(iter(inflight.values())).due_ms, subscriber)

    # ------------------------------------------------------------------ messages

    def release_held(self, subscriber: Subscriber) -> None:
        """Stop ``subscriber``'s retries; every message it holds stops waiting for it."""
        if subscriber.retry_handle is not None:
            self._scheduler.cancel(subscriber.retry_handle)
            subscriber.retry_handle = None
        for entry in subscriber.inflight.values():
            self.release(entry.message)
        subscriber.inflight.clear()
        if subscriber.queue:
            for message in subscriber.queue:
                self.release(message)
        subscriber.queue = None
        subscriber.queued_bytes = 0

    def release(self, message: Message) -> None:
        """One target of ``message`` is done with it (acked, expired, exhausted, dropped or gone)."""
        message.pending -= 1
        if message.pending == 0:
            message.session.live_messages -= 1
            self.complete(message)

    def complete(self, message: Message) -> None:
        """No subscriber holds ``message`` any more: only its dedupe record stays (in ``session.dedupe``)."""
        if not message.session.dropped:
            self._journal.message_finished(message)
        message.drop_payload()
        if message.acked or not self._multi_node:
            # With other nodes, the first ack may still come from one of them.
            message.publisher = None

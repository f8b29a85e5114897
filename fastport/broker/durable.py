"""Subscriber lifecycle: new, resumed, detached, expired, released; durable clients outlive connections.

A subscriber belongs to one connection, or, for a durable client (``clientId`` with
``"durable": true``), outlives its connections: while it is offline its filters stay in the
session's index, so matching QoS 1 messages wait in its queue until it resumes (everything it
holds is resent, in publish order, as redeliveries) or its ``durableTtl`` runs out.

A durable client is rebuilt in one place, ``rehydrate``: at startup from the journal
(``fastport.broker.recovery``) and when another node hands it over (``import_state``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastport._speedups import track
from fastport.broker.cluster import DurableState, HeldMessage
from fastport.broker.message import Message
from fastport.broker.subscriber import Subscriber
from fastport.errors import ErrorCode, LimitExceeded
from fastport.protocol import codec
from fastport.protocol.frames import Publish

if TYPE_CHECKING:
    from fastport.broker.cluster import ClusterLink
    from fastport.broker.connection import Connection
    from fastport.broker.delivery import Delivery
    from fastport.broker.journal import Journal
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session
    from fastport.broker.stats import DeliveryCounters

logger = logging.getLogger("fastport.delivery")


class Subscribers:
    """Creates, resumes, detaches, expires, releases and hands over the subscribers of every session.

    Args:
        delivery: what (re)sends and releases held messages.
        scheduler: the broker's timers (durable TTLs).
        journal: where durable clients are recorded.
        cluster: the link to other nodes (durable ownership).
        counters: what is counted for ``/metrics``.
    """

    __slots__ = ("_cluster", "_counters", "_delivery", "_journal", "_scheduler")

    def __init__(
        self,
        delivery: Delivery,
        scheduler: Scheduler,
        journal: Journal,
        cluster: ClusterLink,
        counters: DeliveryCounters,
    ) -> None:
        self._delivery = delivery
        self._scheduler = scheduler
        self._journal = journal
        self._cluster = cluster
        self._counters = counters

    def new(self, session: Session, client_id: str | None, durable: bool) -> Subscriber:
        """A subscriber for a new connection (or a new durable client)."""
        subscriber = Subscriber(session, client_id, durable)
        self.save(subscriber)
        return subscriber

    def save(self, subscriber: Subscriber) -> None:
        """Record a durable client's filters and online state (a no-op for any other subscriber)."""
        if subscriber.durable and not subscriber.released:
            assert subscriber.client_id is not None
            offline_since = None if subscriber.connection is not None else int(time.time() * 1000)
            self._journal.durable_saved(
                subscriber.session.name, subscriber.client_id, subscriber.filters, offline_since
            )

    def resume(self, subscriber: Subscriber, connection: Connection) -> None:
        """Attach a durable subscriber to its new connection and resend what it holds, in publish order."""
        if subscriber.ttl_handle is not None:
            self._scheduler.cancel(subscriber.ttl_handle)
            subscriber.ttl_handle = None
        subscriber.connection = connection
        self.save(subscriber)
        delivery = self._delivery
        now = self._scheduler.now_ms()
        held = sorted(subscriber.inflight.values(), key=lambda entry: entry.message.seq)
        subscriber.inflight.clear()
        for entry in held:
            if entry.message.expired(now):
                self._counters.expired += 1
                delivery.drop_target(subscriber, entry.message)
            else:
                delivery.resend(subscriber, entry, now)
        if subscriber.dropped_offline:
            error = LimitExceeded(
                f"queue full while offline: {subscriber.dropped_offline} message(s) dropped",
                code=ErrorCode.QUEUE_OVERFLOW,
            )
            connection.sink.send(codec.encode_error(error, None, dropped=subscriber.dropped_offline))
            subscriber.dropped_offline = 0
        delivery.drain(subscriber, now)
        if subscriber.inflight and subscriber.retry_handle is None:
            interval = subscriber.session.settings.retry_interval_ms
            subscriber.retry_handle = delivery.arm_retry(now + interval, subscriber)

    def detach(self, subscriber: Subscriber) -> None:
        """The subscriber's connection ended: keep a durable one for its TTL, release any other."""
        subscriber.connection = None
        if not subscriber.durable or subscriber.released:
            self.release(subscriber)
            return
        self.save(subscriber)
        self.arm_ttl(subscriber, self._scheduler.now_ms() + subscriber.session.settings.durable_ttl_ms)

    def arm_ttl(self, subscriber: Subscriber, deadline_ms: int) -> None:
        """Forget the offline durable ``subscriber`` at ``deadline_ms`` unless it resumes first."""
        subscriber.ttl_handle = self._scheduler.call_at(deadline_ms, self._ttl_due, subscriber)

    def _ttl_due(self, subscriber: Subscriber, now_ms: int) -> None:
        """A durable subscriber stayed away past its TTL: forget it."""
        if subscriber.connection is not None or subscriber.released:
            return
        self._counters.durable_expired += 1
        logger.info("session %r: durable client %r expired", subscriber.session.name, subscriber.client_id)
        self.release(subscriber)

    def release(self, subscriber: Subscriber, handed_over: bool = False) -> None:
        """Forget a subscriber: its filters leave the index, its held messages stop waiting for it.

        ``handed_over``: another node took the durable client over (its ownership record stays).
        """
        if subscriber.released:
            return
        subscriber.released = True
        session = subscriber.session
        client_id = subscriber.client_id
        if subscriber.durable:
            assert client_id is not None
            if not handed_over:
                self._cluster.release_durable(session.name, client_id)
            if not session.dropped:
                self._journal.durable_forgotten(session.name, client_id)
        for topic_filter in subscriber.filters:
            session.index.discard(topic_filter, subscriber)
        subscriber.filters.clear()
        if client_id is not None and session.clients.get(client_id) is subscriber:
            del session.clients[client_id]
        if subscriber.ttl_handle is not None:
            self._scheduler.cancel(subscriber.ttl_handle)
            subscriber.ttl_handle = None
        self._delivery.release_held(subscriber)

    def forget_session(self, session: Session) -> None:
        """Release every subscriber of a dropped session."""
        for subscriber in list(session.clients.values()):
            self.release(subscriber)

    # ------------------------------------------------------------ rebuild and handover

    def rehydrate(
        self,
        session: Session,
        client_id: str,
        filters: dict[str, int],
        held: Iterable[tuple[Message, int, bool]],
    ) -> Subscriber:
        """Rebuild an offline durable client: its filters, and the messages it holds in publish order.

        Args:
            session: its session.
            client_id: its clientId.
            filters: topic filter -> QoS.
            held: (message, sends so far, sent) per held message, in publish order: sent ones
                become inflight entries (resent on resume), the others wait in its queue.

        Returns:
            The subscriber, registered in ``session.clients`` and the session's index.
        """
        subscriber = Subscriber(session, client_id, durable=True)
        subscriber.filters = dict(filters)
        for topic_filter, qos in subscriber.filters.items():
            session.index.add(topic_filter, subscriber, qos)
        session.clients[client_id] = subscriber
        now = self._scheduler.now_ms()
        for message, attempts, sent in held:
            if message.pending == 0:
                session.live_messages += 1
            message.pending += 1
            if sent:
                track(subscriber, message, attempts, now, None)
            else:
                if subscriber.queue is None:
                    subscriber.queue = deque()
                subscriber.queue.append(message)
                subscriber.queued_bytes += message.size
        return subscriber

    def export_state(self, subscriber: Subscriber) -> DurableState:
        """A durable client's filters and held messages, in publish order, for another node."""
        held = [(entry.message, entry.attempts, True) for entry in subscriber.inflight.values()]
        held += [(message, 0, False) for message in subscriber.queue or ()]
        held.sort(key=lambda item: item[0].seq)
        exported = []
        for message, attempts, sent in held:
            publish = message.publish
            assert publish is not None
            exported.append(
                HeldMessage(
                    message.message_id,
                    message.topic,
                    publish.data,
                    publish.hash,
                    message.timestamp,
                    message.qos,
                    attempts,
                    sent,
                    message.origin,
                )
            )
        return DurableState(dict(subscriber.filters), exported)

    def import_state(self, session: Session, client_id: str, state: DurableState) -> Subscriber:
        """Take over a durable client exported by another node (``export_state``)."""
        now = self._scheduler.now_ms()
        held = []
        for item in state.held:
            known = session.dedupe.get(item.message_id)
            if known is not None and known.publish is not None:
                message = known  # it was published or forwarded here too: share its bookkeeping
            else:
                publish = Publish(
                    topic=item.topic,
                    data=item.data,
                    message_id=item.message_id,
                    hash=item.hash,
                    timestamp=item.timestamp,
                    qos=item.qos,
                )
                session.seq += 1
                message = Message(session, publish, item.timestamp, session.seq, None, now)
                message.origin = item.origin
                if known is not None:
                    message.publisher, message.acked = known.publisher, known.acked
            held.append((message, item.attempts, item.sent))
        subscriber = self.rehydrate(session, client_id, state.filters, held)
        self.save(subscriber)
        return subscriber

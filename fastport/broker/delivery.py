"""At-least-once delivery: the inflight table, acks, redeliveries and expiry.

Rules (``shared/spec/PROTOCOL.md`` §5):

* a message is keyed by (session, messageId): each session owns its inflight table;
* it is held until every connection it was delivered to has acked it; only an ack
  from such a connection counts, and one subscriber's ack never ends another's retries;
* the publisher gets ``ack_received`` on the first ack;
* unacked copies are redelivered with ``"retry": k`` every ``retryInterval``, at most
  ``maxRetryLimit`` times, and never once ``messageExpiryTime`` has passed (checked
  before every redelivery; the message is also dropped at its expiry);
* a publish whose messageId is still inflight (a client retry) is not fanned out again.

Every retry and expiry is one entry in the broker's single ``Scheduler``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fastport.errors import ErrorCode, ProtocolError
from fastport.protocol import codec
from fastport.protocol.frames import Publish

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.scheduler import Scheduler
    from fastport.broker.sessions import Session

logger = logging.getLogger("fastport.delivery")


class InflightMessage:
    """A published message some subscribers have not acked yet."""

    __slots__ = (
        "delivery",
        "session",
        "publish",
        "timestamp",
        "publisher",
        "pending",
        "delivered_to",
        "attempts",
        "expires_at_ms",
        "acked",
        "timer",
    )

    def __init__(
        self,
        delivery: Delivery,
        session: Session,
        publish: Publish,
        timestamp: int | float,
        publisher: Connection,
        pending: set[Connection],
        expires_at_ms: int | None,
    ) -> None:
        self.delivery = delivery
        self.session = session
        self.publish = publish
        self.timestamp = timestamp
        self.publisher = publisher
        self.pending = pending
        self.delivered_to = len(pending)
        self.attempts = 0
        self.expires_at_ms = expires_at_ms
        self.acked = False
        self.timer = 0

    def on_timer(self, now_ms: int) -> None:
        """Redeliver or drop: the scheduler calls this at the retry or expiry deadline."""
        self.delivery.on_deadline(self, now_ms)


class Delivery:
    """Fan-out of publishes and the at-least-once bookkeeping of every session."""

    __slots__ = ("_scheduler", "published", "deliveries", "acks", "redeliveries", "expired", "exhausted")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.published = 0
        self.deliveries = 0
        self.acks = 0
        self.redeliveries = 0
        self.expired = 0
        self.exhausted = 0

    def publish(self, session: Session, publisher: Connection, publish: Publish) -> bytes:
        """Fan ``publish`` out to the session's subscribers of its topic.

        Returns:
            The ``publish_response`` frame for the publisher.
        """
        message_id = publish.message_id
        held = session.inflight.get(message_id)
        if held is not None:
            # A client retry, maybe from a new connection: later ack_received go there.
            held.publisher = publisher
            if held.acked:
                publisher.sink.send(_ack_received(held))
            return codec.encode(
                {
                    "type": "publish_response",
                    "success": True,
                    "messageId": message_id,
                    "deliveredTo": held.delivered_to,
                    "duplicate": True,
                }
            )
        timestamp = publish.timestamp if publish.timestamp is not None else int(time.time() * 1000)
        frame = codec.encode_message(publish, timestamp)
        sent: set[Connection] = set()
        for subscriber in session.index.match(publish.topic):
            if subscriber is publisher:
                continue
            sink = subscriber.sink
            if sink.is_open:
                sink.send(frame)
                sent.add(subscriber)
        self.published += 1
        self.deliveries += len(sent)
        if sent:
            self._hold(session, publisher, publish, timestamp, sent)
        return codec.encode(
            {"type": "publish_response", "success": True, "messageId": message_id, "deliveredTo": len(sent)}
        )

    def _hold(
        self,
        session: Session,
        publisher: Connection,
        publish: Publish,
        timestamp: int | float,
        sent: set[Connection],
    ) -> None:
        settings = session.settings
        now = self._scheduler.now_ms()
        expiry = settings.message_expiry_ms
        expires_at = None if expiry is None else now + expiry
        message = InflightMessage(self, session, publish, timestamp, publisher, sent, expires_at)
        session.inflight[publish.message_id] = message
        self._schedule(message, now + settings.retry_interval_ms)

    def _schedule(self, message: InflightMessage, retry_at_ms: int) -> None:
        expires_at = message.expires_at_ms
        deadline = retry_at_ms if expires_at is None else min(retry_at_ms, expires_at)
        message.timer = self._scheduler.call_at(deadline, message)

    def ack(self, session: Session, subscriber: Connection, message_id: str) -> None:
        """Record ``subscriber``'s ack of ``message_id``.

        Raises:
            ProtocolError: the message is unknown to this session, already acked by this
                connection, or was never delivered to it.
        """
        message = session.inflight.get(message_id)
        if message is None or subscriber not in message.pending:
            raise ProtocolError("Unknown or already acknowledged message", code=ErrorCode.UNKNOWN_MESSAGE)
        message.pending.discard(subscriber)
        self.acks += 1
        if not message.acked:
            message.acked = True
            publisher = message.publisher
            if publisher.sink.is_open:
                publisher.sink.send(_ack_received(message))
        if not message.pending:
            self._complete(message)

    def on_deadline(self, message: InflightMessage, now_ms: int) -> None:
        """Redeliver ``message`` to the subscribers that have not acked it, or drop it."""
        session = message.session
        if session.inflight.get(message.publish.message_id) is not message:
            return
        if message.expires_at_ms is not None and now_ms >= message.expires_at_ms:
            self.expired += 1
            logger.warning(
                "message %s of session %r expired unacked by %d subscriber(s)",
                message.publish.message_id,
                session.name,
                len(message.pending),
            )
            self._complete(message)
            return
        if message.attempts >= session.settings.max_retry_limit:
            self.exhausted += 1
            logger.warning(
                "message %s of session %r dropped after %d redeliveries, unacked by %d subscriber(s)",
                message.publish.message_id,
                session.name,
                message.attempts,
                len(message.pending),
            )
            self._complete(message)
            return
        message.attempts += 1
        frame = codec.encode_message(message.publish, message.timestamp, retry=message.attempts)
        for subscriber in list(message.pending):
            sink = subscriber.sink
            if sink.is_open:
                sink.send(frame)
                self.redeliveries += 1
            else:
                message.pending.discard(subscriber)
        if message.pending:
            self._schedule(message, now_ms + session.settings.retry_interval_ms)
        else:
            self._complete(message)

    def _complete(self, message: InflightMessage) -> None:
        self._scheduler.cancel(message.timer)
        session = message.session
        if session.inflight.get(message.publish.message_id) is message:
            del session.inflight[message.publish.message_id]

    def forget_session(self, session: Session) -> None:
        """Cancel every retry of a dropped session and release its messages."""
        for message in session.inflight.values():
            self._scheduler.cancel(message.timer)
        session.inflight.clear()


def _ack_received(message: InflightMessage) -> bytes:
    return codec.encode(
        {"type": "ack_received", "messageId": message.publish.message_id, "topic": message.publish.topic}
    )

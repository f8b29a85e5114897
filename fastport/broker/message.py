"""One accepted publish and its delivery bookkeeping across subscribers.

A ``Message`` is created once per accepted publish (or retained copy, restored row, handed-over
durable message) and shared by every subscriber it goes to: each subscriber's ``inflight`` map
holds an ``Inflight`` entry (``fastport._speedups``) pointing at it, its queue holds the message
itself. ``pending`` counts the subscribers still holding it; at 0 the message is complete and
only its dedupe record stays (``Session.dedupe``).

Rule for anyone changing this class: **a message never refers to its ``Inflight`` entries**, nor
to a subscriber or an ``inflight`` map. The compiled ``Inflight`` is kept out of the cyclic
garbage collector (it lives for one round trip, once per delivery, and the collector's passes
over it cost several percent of fan-out CPU), which is safe only while no reference cycle runs
through an entry other than message -> session -> subscriber -> inflight map -> entry, which
the broker breaks by emptying a subscriber's ``inflight`` map when it releases the subscriber.
An attribute here that leads back to an entry would make a cycle the collector cannot see: a leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastport.protocol import codec
from fastport.protocol.frames import QOS_AT_MOST_ONCE, Publish

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.sessions import Session


class Message:
    """One accepted publish and its delivery bookkeeping across subscribers.

    Args:
        session: the session it was published in.
        publish: the publish frame (its payload is dropped once the message is complete).
        timestamp: the publish's timestamp (epoch ms), sent in every ``message`` frame.
        seq: its place in the session's publish order.
        publisher: the connection to answer (``ack_received``), or None.
        now_ms: the scheduler time of acceptance (expiry and dedupe windows run from it).
        retained: a copy of a retained message, sent to a new subscription.
    """

    __slots__ = (
        "_retry_frame",
        "_retry_k",
        "acked",
        "born_ms",
        "dedupe_until_ms",
        "delivered_to",
        "expires_at_ms",
        "frame",
        "message_id",
        "origin",
        "pending",
        "publish",
        "publisher",
        "qos",
        "retained",
        "seq",
        "session",
        "size",
        "timestamp",
        "topic",
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

    def expired(self, now_ms: int) -> bool:
        """Whether the message's ``messageExpiryTime`` has passed."""
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms

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

    def drop_payload(self) -> None:
        """The message is complete: keep only what its dedupe record needs."""
        self.frame = None
        self.publish = None
        self._retry_frame = None

    def ack_received_frame(self) -> bytes:
        """The ``ack_received`` frame telling the publisher that a subscriber acked."""
        return codec.encode({"type": "ack_received", "messageId": self.message_id, "topic": self.topic})

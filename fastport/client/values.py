"""What the client hands to its user: received messages, publish results, states and counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ConnectionState(enum.StrEnum):
    """The client's connection state, reported to ``on_state`` on every change.

    ``CONNECTING`` -> ``CONNECTED`` -> (lost) ``RECONNECTING`` -> ``CONNECTING`` -> ... and
    finally ``CLOSED``, after ``Client.close()`` or an error that stops reconnecting.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """One received, decrypted and verified message.

    Attributes:
        topic: the topic it was published on (not the filter that matched it).
        data: the plaintext: ``str`` or ``bytes`` as the sender gave it (v2); for v1,
            ``str`` when it is valid UTF-8, else ``bytes``.
        timestamp: the publisher's timestamp, in milliseconds since the epoch.
        message_id: the publisher's ``messageId``.
        retry: 0 for the first delivery, k for the broker's k-th redelivery.
        qos: 1 (at least once: the client acks it) or 0 (at most once: no ack).
        retained: a topic's retained message, sent because a subscription matched it.
    """

    topic: str
    data: str | bytes
    timestamp: int | float
    message_id: str
    retry: int = 0
    qos: int = 1
    retained: bool = False

    @property
    def payload(self) -> str | bytes:
        """The plaintext, the same as ``data`` (the name of earlier releases)."""
        return self.data


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The broker's answer to one ``emit``.

    Attributes:
        message_id: the ``messageId`` the client chose (kept across re-sends).
        delivered_to: how many subscribers the broker sent it to.
        duplicate: the broker already had this messageId (a re-send after a lost answer).
        acked: a subscriber acknowledged it (``ack_received``) before ``emit`` returned.
    """

    message_id: str
    delivered_to: int
    duplicate: bool = False
    acked: bool = False


@dataclass(slots=True)
class ClientStats:
    """Counters of one client since it was made.

    Attributes:
        published: publish frames sent, re-sends included.
        republished: re-sends of unconfirmed publishes (timer or reconnect).
        received: ``message`` frames received.
        delivered: messages handed to callbacks and iterators (after dedup and checks).
        duplicates: redelivered messageIds already handed over (acked again, not delivered).
        rejected: messages that failed their envelope check: not acked, not delivered.
        held: verified messages that came before any matching ``get``/``subscribe`` (a durable
            resume sends what it held right after ``init``) and were kept, not acked, for a route.
        routed_late: held messages handed over when a matching route was registered.
        unrouted: held messages no route claimed within ``UNROUTED_GRACE_S`` (or over
            ``UNROUTED_CAPACITY``): dropped and **not** acked, so the broker keeps them.
        acks_sent: ``ack`` frames sent.
        reconnects: successful reconnects.
    """

    published: int = 0
    republished: int = 0
    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    held: int = 0
    routed_late: int = 0
    unrouted: int = 0
    acks_sent: int = 0
    reconnects: int = 0

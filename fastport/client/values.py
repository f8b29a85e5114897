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
        payload: the plaintext: ``str`` or ``bytes`` as the sender gave it (v2); for v1,
            ``str`` when it is valid UTF-8, else ``bytes``.
        timestamp: the publisher's timestamp, in milliseconds since the epoch.
        message_id: the publisher's ``messageId``.
        retry: 0 for the first delivery, k for the broker's k-th redelivery.
    """

    topic: str
    payload: str | bytes
    timestamp: int | float
    message_id: str
    retry: int = 0


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
        unrouted: verified messages no local subscription wanted (acked, dropped).
        acks_sent: ``ack`` frames sent.
        reconnects: successful reconnects.
    """

    published: int = 0
    republished: int = 0
    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    unrouted: int = 0
    acks_sent: int = 0
    reconnects: int = 0

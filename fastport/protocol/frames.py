"""Typed frames of the fastPort JSON wire protocol (``docs/protocol.md`` §3, WebSocket frames).

Client-to-server frames are frozen, slotted dataclasses produced by ``codec.decode`` (the
broker's side) and written by ``codec.encode_client`` (the client's side).
Server-to-client frames are built as bytes by ``codec`` directly on the broker (they are encoded
once and written many times, so no object is made for them) and read by ``codec.decode_server``
into the typed frames below, on the client. One module defines the wire format for both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: ``type`` strings of client frames.
INIT: Final = "init"
SUBSCRIBE: Final = "subscribe"
UNSUBSCRIBE: Final = "unsubscribe"
PUBLISH: Final = "publish"
ACK: Final = "ack"
INIT_FILE: Final = "init_file"
END_FILE: Final = "end_file"
DISCONNECT: Final = "disconnect"

#: ``type`` strings of server frames.
INIT_RESPONSE: Final = "init_response"
SUBSCRIBE_RESPONSE: Final = "subscribe_response"
UNSUBSCRIBE_RESPONSE: Final = "unsubscribe_response"
PUBLISH_RESPONSE: Final = "publish_response"
ACK_RECEIVED: Final = "ack_received"
MESSAGE: Final = "message"
ERROR: Final = "error"

#: Delivery levels: at most once (no ack, no retry) and at least once (held until acked).
QOS_AT_MOST_ONCE: Final = 0
QOS_AT_LEAST_ONCE: Final = 1


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message of a connection, published if it ends without a clean close."""

    topic: str
    data: str
    hash: str | None = None
    qos: int = QOS_AT_LEAST_ONCE
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Init:
    """Bind the connection to a session (tenant) with its password.

    ``client_id`` names a client across connections: a second connection with the same id
    takes over. With ``durable``, its subscriptions and unacked messages survive a disconnect.
    """

    session_name: str
    password: str
    user_id: str | None = None
    client_id: str | None = None
    durable: bool = False
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start receiving messages published on ``topic`` (a topic filter) at most at ``qos``."""

    topic: str
    qos: int = QOS_AT_LEAST_ONCE


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving messages on ``topic``."""

    topic: str


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish an (end-to-end encrypted) envelope to every subscriber of ``topic``.

    ``data``, ``hash`` and ``timestamp`` are forwarded verbatim; the broker never
    looks inside ``data``. ``timestamp`` is in milliseconds since the epoch.
    """

    topic: str
    data: str
    message_id: str
    hash: str | None = None
    timestamp: int | float | None = None
    qos: int = QOS_AT_LEAST_ONCE
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """A subscriber accepted the message ``message_id``."""

    message_id: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class FileControl:
    """``init_file`` or ``end_file``: forwarded verbatim to the topic's other subscribers.

    ``raw`` is the frame exactly as received, so fields the broker does not know
    (``fileName``, ``totalChunks``, ...) reach the receivers unchanged.
    """

    kind: str
    topic: str
    file_id: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A clean goodbye: the connection's last will is not published."""


ClientFrame = Init | Subscribe | Unsubscribe | Publish | Ack | FileControl | Disconnect


# ---------------------------------------------------------------------------------------- server to client
# A refusal (``success: false``) carries ``error``, ``code`` and, when one field was wrong, ``field``.


@dataclass(frozen=True, slots=True)
class InitResponse:
    """The answer to ``init``. With a ``clientId``, ``resumed`` tells whether a durable client's state
    was found, and a resumed one lists its ``subscriptions`` (topic filters)."""

    success: bool
    session_name: str | None = None
    resumed: bool | None = None
    subscriptions: tuple[str, ...] | None = None
    error: str | None = None
    code: int | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResponse:
    """The answer to ``subscribe`` of ``topic`` (a filter)."""

    success: bool
    topic: str | None = None
    error: str | None = None
    code: int | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class UnsubscribeResponse:
    """The answer to ``unsubscribe`` of ``topic``."""

    success: bool
    topic: str | None = None
    error: str | None = None
    code: int | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class PublishResponse:
    """The answer to ``publish`` of ``message_id``: sent (or queued) to ``delivered_to`` subscribers;
    ``duplicate`` when the broker already had that messageId (a re-send)."""

    success: bool
    message_id: str | None = None
    delivered_to: int = 0
    duplicate: bool = False
    error: str | None = None
    code: int | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """A subscriber acked the publisher's message ``message_id``."""

    message_id: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of a published message. ``retry`` k > 0 is the k-th redelivery; ``qos`` 0 is not
    to be acked; ``retained`` marks a topic's retained message sent on subscribe."""

    topic: str
    data: str
    message_id: str
    timestamp: int | float | None = None
    hash: str | None = None
    retry: int = 0
    qos: int = QOS_AT_LEAST_ONCE
    retained: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    """A generic error frame (``"type": "error"``), tied to a request by ``message_id``/``topic`` when
    it answers one; ``dropped`` counts the messages a durable client lost while it was away."""

    error: str
    code: int | None = None
    field: str | None = None
    message_id: str | None = None
    topic: str | None = None
    dropped: int | None = None


ServerFrame = (
    InitResponse
    | SubscribeResponse
    | UnsubscribeResponse
    | PublishResponse
    | AckReceived
    | Message
    | Error
    | FileControl
)

"""The fastport client: ``Client`` (asyncio, picows) and the payload envelopes it seals and opens.

See ``docs/client.md`` for usage and ``docs/envelope.md`` for the v1 and v2 envelope formats.
"""

from __future__ import annotations

from fastport.client.backoff import ReconnectPolicy
from fastport.client.client import Client, MessageCallback, StateCallback, Subscription
from fastport.client.crypto import EnvelopeCipher, EnvelopeVersion, Sealed
from fastport.client.errors import (
    AckTimeout,
    ClientError,
    ConnectionClosed,
    EnvelopeAuthError,
    EnvelopeError,
    EnvelopeFormatError,
    EnvelopeHashMismatch,
    InitRefused,
    PublishRefused,
    RequestRefused,
    SessionEnded,
)
from fastport.client.protocol import ClientProtocol
from fastport.client.values import ClientStats, ConnectionState, Message, PublishResult

__all__ = [
    "AckTimeout",
    "Client",
    "ClientError",
    "ClientProtocol",
    "ClientStats",
    "ConnectionClosed",
    "ConnectionState",
    "EnvelopeAuthError",
    "EnvelopeCipher",
    "EnvelopeError",
    "EnvelopeFormatError",
    "EnvelopeHashMismatch",
    "EnvelopeVersion",
    "InitRefused",
    "Message",
    "MessageCallback",
    "PublishRefused",
    "PublishResult",
    "ReconnectPolicy",
    "RequestRefused",
    "Sealed",
    "SessionEnded",
    "StateCallback",
    "Subscription",
]

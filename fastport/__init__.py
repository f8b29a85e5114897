"""fastport: a multi-tenant pub/sub broker speaking the fastPort WebSocket protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fastport.client import (
        AckTimeout,
        Client,
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

__all__ = [
    "AckTimeout",
    "Client",
    "ClientError",
    "ConnectionClosed",
    "EnvelopeAuthError",
    "EnvelopeError",
    "EnvelopeFormatError",
    "EnvelopeHashMismatch",
    "InitRefused",
    "PublishRefused",
    "RequestRefused",
    "SessionEnded",
    "__version__",
]

# The client imports picows and cryptography: load it on first use, not with the package.
_CLIENT_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> object:
    if name in _CLIENT_NAMES:
        import fastport.client

        return getattr(fastport.client, name)
    raise AttributeError(f"module 'fastport' has no attribute {name!r}")

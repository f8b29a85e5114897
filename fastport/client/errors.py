"""Exceptions raised by the fastport client, on top of the tree in ``fastport.errors``::

    FastportError
    └── ClientError
        ├── ConnectionClosed     the connection is gone and the client will not (or may not) reconnect
        │   └── SessionEnded     the broker closed the session: 4001 dropped, 4002 expired
        ├── RequestRefused       a ``*_response`` with ``success: false``
        │   ├── InitRefused      bad credentials, unknown or suspended session (never retried)
        │   └── PublishRefused   the broker refused a publish
        ├── AckTimeout           no answer within the retry budget (also a TimeoutError)
        └── EnvelopeError        a payload envelope that cannot be opened (also a ValueError)
            ├── EnvelopeFormatError   neither a v1 nor a v2 envelope, or a bad key
            ├── EnvelopeHashMismatch  the ``hash`` field does not match ``data``
            └── EnvelopeAuthError     decryption failed: tampered, wrong key, or (v2) replayed
                                      onto another session, topic or messageId

``error_code`` is the broker's numeric ``code`` when the broker sent one.
"""

from __future__ import annotations

from fastport.errors import ErrorCode, FastportError


def wire_code(value: object) -> ErrorCode | None:
    """Return the ``ErrorCode`` named by an error frame's ``code`` field, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ErrorCode(value)
        except ValueError:
            return None
    return None


class ClientError(FastportError):
    """Base of every error raised by ``fastport.Client``."""


class ConnectionClosed(ClientError):
    """The connection is closed: by ``Client.close()``, or lost beyond the reconnect budget.

    Attributes:
        close_code: the WebSocket close code the broker sent, or None.
        reason: the close reason the broker sent ("" when none).
    """

    def __init__(self, error: str, *, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(error)
        self.close_code = close_code
        self.reason = reason


class SessionEnded(ConnectionClosed):
    """The broker ended the session (close 4001 dropped, 4002 expired); the client stops reconnecting."""


class RequestRefused(ClientError):
    """The broker answered a request with ``success: false``.

    Attributes:
        response_type: the ``type`` of the refusing frame (``subscribe_response``, ...).
    """

    def __init__(self, error: str, *, response_type: str, code: ErrorCode | None = None) -> None:
        super().__init__(error, code=code)
        self.response_type = response_type


class InitRefused(RequestRefused):
    """``init`` was refused (``Invalid password``, ``Session not found``, ``Session is suspended``)."""


class PublishRefused(RequestRefused):
    """The broker refused a publish (``Session suspended or invalid``, bad topic, ...).

    Attributes:
        message_id: the refused message's id.
    """

    def __init__(self, error: str, *, message_id: str, code: ErrorCode | None = None) -> None:
        super().__init__(error, response_type="publish_response", code=code)
        self.message_id = message_id


class AckTimeout(ClientError, TimeoutError):
    """A publish got no ``publish_response`` (or no ``ack_received`` when waited for) within its retries."""


class EnvelopeError(ClientError, ValueError):
    """A payload envelope that cannot be opened."""


class EnvelopeFormatError(EnvelopeError):
    """The data is neither a v1 nor a v2 envelope, or the key is not 32 bytes of base64."""


class EnvelopeHashMismatch(EnvelopeError):
    """The ``hash`` field is missing (v1) or is not the SHA-256 of ``data``."""


class EnvelopeAuthError(EnvelopeError):
    """Decryption failed: the data was tampered with or made with another key; for v2, it may
    also have been made for another session, topic or messageId (a replay)."""

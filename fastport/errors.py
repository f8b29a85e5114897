"""The one exception tree of fastport.

Each error carries its own answer on the wire, mapped in one place per transport
(``server/ws.py`` for error frames and close codes, ``server/http.py`` for HTTP
statuses)::

    FastportError
    ├── ProtocolError            malformed, wrong-typed, out-of-order frame (error frame, connection kept)
    │   ├── InvalidTopic         bad topic or filter (also a ValueError)
    │   ├── FrameTooLarge        over the frame size limit (close 1009, HTTP 413)
    │   └── InvalidUtf8          text frame that is not UTF-8 (close 1007)
    ├── AuthError                bad session credentials or admin credentials
    ├── SessionError             unknown, suspended or dropped session
    ├── LimitExceeded            a configured limit was hit
    ├── EngineUnavailable        the shared engine (Redis) is unreachable (HTTP 503)
    └── ConfigError              bad server or session configuration (also a ValueError)

``error`` strings that the original fastPort clients match on (``"Not initialized"``,
``"Session not found"``, ...) are kept verbatim; fastport adds a numeric ``code``.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Machine-readable ``code`` of every fastport error frame and HTTP error body."""

    # 1xxx: the frame itself is wrong
    INVALID_JSON = 1001
    NOT_AN_OBJECT = 1002
    UNKNOWN_TYPE = 1003
    MISSING_FIELD = 1004
    INVALID_FIELD = 1005
    INVALID_TOPIC = 1006
    INVALID_FILE_CHUNK = 1007
    ROUTE_NOT_FOUND = 1008
    METHOD_NOT_ALLOWED = 1009
    MALFORMED_REQUEST = 1010
    UNSUPPORTED_MEDIA_TYPE = 1011
    # 2xxx: the frame is out of order for this connection
    NOT_INITIALIZED = 2001
    ALREADY_INITIALIZED = 2002
    NOT_SUBSCRIBED = 2003
    UNKNOWN_MESSAGE = 2004
    FILE_NOT_OPEN = 2005
    # 3xxx: authentication and sessions
    SESSION_NOT_FOUND = 3001
    INVALID_PASSWORD = 3002
    SESSION_SUSPENDED = 3003
    SESSION_INVALID = 3004
    SESSION_EXISTS = 3005
    INVALID_CREDENTIALS = 3006
    ADMIN_AUTH_MISSING = 3007
    ADMIN_AUTH_INVALID = 3008
    # 4xxx: limits
    LIMIT_EXCEEDED = 4001
    BODY_TOO_LARGE = 4002
    QUEUE_OVERFLOW = 4003
    RATE_LIMITED = 4005
    TOO_MANY_SUBSCRIPTIONS = 4006
    TOO_MANY_CONNECTIONS = 4007
    AUTH_THROTTLED = 4008
    TOO_MANY_FILES = 4009
    # 5xxx: the broker failed
    INTERNAL = 5000
    ENGINE_UNAVAILABLE = 5001


class CloseCode(IntEnum):
    """WebSocket close codes fastport sends (RFC 6455 §7.4 plus the 4000-4999 private range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SESSION_DROPPED = 4001
    SESSION_EXPIRED = 4002
    INIT_TIMEOUT = 4003
    CLIENT_TAKEN_OVER = 4004
    RATE_LIMIT_ABUSE = 4005
    AUTH_CUT_OFF = 4006
    SLOW_CONSUMER = 4007


class FastportError(Exception):
    """Base of every fastport error.

    Attributes:
        error: the human-readable ``error`` string put on the wire.
        error_code: the numeric ``code`` put on the wire.
        http_status: the HTTP status when the error answers a REST request.
        close_code: the WebSocket close code when the error ends the connection, else None
            (an error frame answers it and the connection stays).
    """

    error_code: ErrorCode = ErrorCode.INTERNAL
    http_status: int = 500
    close_code: int | None = None

    def __init__(
        self,
        error: str,
        *,
        code: ErrorCode | None = None,
        field: str | None = None,
        close: CloseCode | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.field = field
        if code is not None:
            self.error_code = code
        if close is not None:
            self.close_code = close


class ProtocolError(FastportError):
    """A frame or request that is malformed, wrong-typed or out of order."""

    error_code = ErrorCode.INVALID_FIELD
    http_status = 400


class InvalidTopic(ProtocolError, ValueError):
    """A topic or topic filter that breaks the topic rules (see ``protocol/topics.py``)."""

    error_code = ErrorCode.INVALID_TOPIC


class FrameTooLarge(ProtocolError):
    """A frame or request body over the configured size limit."""

    error_code = ErrorCode.LIMIT_EXCEEDED
    http_status = 413
    close_code = CloseCode.MESSAGE_TOO_BIG


class InvalidUtf8(ProtocolError):
    """A text frame whose payload is not valid UTF-8 (close 1007, RFC 6455 §8.1)."""

    close_code = CloseCode.INVALID_DATA


class AuthError(FastportError):
    """Wrong session password, secret key or admin credential."""

    error_code = ErrorCode.INVALID_CREDENTIALS
    http_status = 401


class SessionError(FastportError):
    """An unknown, suspended or otherwise unusable session."""

    error_code = ErrorCode.SESSION_NOT_FOUND
    http_status = 400


class LimitExceeded(FastportError):
    """A configured limit was hit."""

    error_code = ErrorCode.LIMIT_EXCEEDED
    http_status = 429


class EngineUnavailable(FastportError):
    """The shared engine (Redis) cannot be reached for an operation that needs it."""

    error_code = ErrorCode.ENGINE_UNAVAILABLE
    http_status = 503


class ConfigError(FastportError, ValueError):
    """Bad server or session configuration."""

    error_code = ErrorCode.INVALID_FIELD
    http_status = 400

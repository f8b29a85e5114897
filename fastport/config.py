"""Server configuration and per-session settings: frozen, validated once.

Server settings come from ``fastport serve`` flags, else ``FASTPORT_<NAME>`` environment
variables, else the defaults below. ``ADMIN_USER`` / ``ADMIN_PASS`` are honoured for
compatibility with the original fastPort broker.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from fastport.errors import ConfigError

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3000
DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
DEFAULT_MAX_BODY_SIZE: Final = 64 << 10
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

# Session setting ranges. The lower bound on retryInterval and the upper bound on
# maxRetryLimit are what keep a session's settings from causing a retry storm.
RETRY_INTERVAL_MS_RANGE: Final = (200, 86_400_000)
MAX_RETRY_LIMIT_RANGE: Final = (0, 1000)
MESSAGE_EXPIRY_MS_RANGE: Final = (100, 30 * 86_400_000)
MAX_SESSION_LIFETIME_MS: Final = 10 * 365 * 86_400_000
DEFAULT_RETRY_INTERVAL_MS: Final = 5000
DEFAULT_MAX_RETRY_LIMIT: Final = 100


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/fastport``, or ``~/.local/share/fastport``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "fastport"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``fastport serve`` needs to run.

    Attributes:
        host: address to listen on.
        port: TCP port for HTTP and WebSocket (0 picks a free one).
        data_dir: where the admin token (and later the store) lives.
        max_frame_size: largest WebSocket message accepted, in bytes.
        max_body_size: largest REST request body accepted, in bytes.
        log_level: one of ``LOG_LEVELS``.
        admin_user: HTTP Basic admin user (``ADMIN_USER``), or None.
        admin_pass: HTTP Basic admin password (``ADMIN_PASS``), or None.
        admin_token: Bearer admin token; None means read or create ``data_dir/admin-token``.
        tls_cert: PEM certificate chain; with ``tls_key``, serve https:// and wss:// on the port.
        tls_key: PEM private key of ``tls_cert``.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    log_level: str = "info"
    admin_user: str | None = None
    admin_pass: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    http_head_timeout_s: float = 10.0
    ws_handshake_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if not 1024 <= self.max_frame_size <= 256 << 20:
            raise ConfigError(f"max-frame-size must be 1024-268435456 bytes, got {self.max_frame_size}")
        if not 256 <= self.max_body_size <= 16 << 20:
            raise ConfigError(f"max-body-size must be 256-16777216 bytes, got {self.max_body_size}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if (self.admin_user is None) != (self.admin_pass is None):
            raise ConfigError("ADMIN_USER and ADMIN_PASS must be set together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls-cert and tls-key must be given together")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ConfigError("admin token must be at least 16 characters")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or None for plain HTTP/WebSocket.

        Raises:
            ConfigError: the certificate or key cannot be loaded.
        """
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS certificate {self.tls_cert} / key {self.tls_key}: {exc}") from None
        return context

    @property
    def logging_level(self) -> int:
        """The ``logging`` module level of ``log_level``."""
        return int(getattr(logging, self.log_level.upper()))


def _int_setting(body: dict[str, Any], name: str, default: int, bounds: tuple[int, int]) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer", field=name)
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}", field=name)
    return value


def _expiry_setting(value: object, now_ms: int) -> int | None:
    """``sessionExpiry``: null, epoch milliseconds, or an ISO 8601 date-time string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError("sessionExpiry must be an ISO 8601 date-time", field="sessionExpiry") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        at_ms = int(parsed.timestamp() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        at_ms = value
    else:
        raise ConfigError(
            "sessionExpiry must be null, epoch milliseconds or an ISO 8601 date-time", field="sessionExpiry"
        )
    if at_ms <= now_ms:
        raise ConfigError("sessionExpiry must be in the future", field="sessionExpiry")
    if at_ms - now_ms > MAX_SESSION_LIFETIME_MS:
        raise ConfigError("sessionExpiry must be within 10 years", field="sessionExpiry")
    return at_ms


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Per-session delivery settings (the ``createSession`` body, validated).

    Attributes:
        retry_interval_ms: time between redeliveries of an unacked message.
        max_retry_limit: redeliveries before a message is dropped.
        message_expiry_ms: lifetime of a message from its publish, or None (bounded by retries).
        expires_at_ms: wall-clock epoch ms at which the session ends, or None.
    """

    retry_interval_ms: int = DEFAULT_RETRY_INTERVAL_MS
    max_retry_limit: int = DEFAULT_MAX_RETRY_LIMIT
    message_expiry_ms: int | None = None
    expires_at_ms: int | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any], now_ms: int) -> SessionSettings:
        """Validate the settings fields of a ``createSession`` body.

        Args:
            body: the decoded JSON body.
            now_ms: the current wall-clock time in epoch milliseconds.

        Raises:
            ConfigError: a field has the wrong type or is out of range (``field`` names it).
        """
        expiry = body.get("messageExpiryTime")
        message_expiry_ms = (
            None if expiry is None else _int_setting(body, "messageExpiryTime", 0, MESSAGE_EXPIRY_MS_RANGE)
        )
        return cls(
            retry_interval_ms=_int_setting(body, "retryInterval", DEFAULT_RETRY_INTERVAL_MS, RETRY_INTERVAL_MS_RANGE),
            max_retry_limit=_int_setting(body, "maxRetryLimit", DEFAULT_MAX_RETRY_LIMIT, MAX_RETRY_LIMIT_RANGE),
            message_expiry_ms=message_expiry_ms,
            expires_at_ms=_expiry_setting(body.get("sessionExpiry"), now_ms),
        )


__all__ = ["ServerConfig", "SessionSettings", "default_data_dir"]

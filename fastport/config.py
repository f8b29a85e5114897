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
from fastport.protocol.topics import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LENGTH

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3000
DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
DEFAULT_MAX_BODY_SIZE: Final = 64 << 10
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("text", "json")
DEFAULT_HANDSHAKE_TIMEOUT_S: Final = 10.0
DEFAULT_INIT_TIMEOUT_S: Final = 10.0
DEFAULT_IDLE_TIMEOUT_S: Final = 30.0
DEFAULT_PING_TIMEOUT_S: Final = 10.0
MAX_TIMEOUT_S: Final = 86_400.0

# Session setting ranges. The lower bound on retryInterval and the upper bound on
# maxRetryLimit are what keep a session's settings from causing a retry storm.
RETRY_INTERVAL_MS_RANGE: Final = (200, 86_400_000)
MAX_RETRY_LIMIT_RANGE: Final = (0, 1000)
MESSAGE_EXPIRY_MS_RANGE: Final = (100, 30 * 86_400_000)
MAX_SESSION_LIFETIME_MS: Final = 10 * 365 * 86_400_000
DEFAULT_RETRY_INTERVAL_MS: Final = 5000
DEFAULT_MAX_RETRY_LIMIT: Final = 100
INFLIGHT_WINDOW_RANGE: Final = (1, 65_535)
DEFAULT_INFLIGHT_WINDOW: Final = 1000
MAX_QUEUED_MESSAGES_RANGE: Final = (0, 1_000_000)
DEFAULT_MAX_QUEUED_MESSAGES: Final = 10_000
MAX_QUEUED_BYTES_RANGE: Final = (0, 1 << 30)
DEFAULT_MAX_QUEUED_BYTES: Final = 16 << 20
QUEUE_OVERFLOW_POLICIES: Final = ("drop-new", "drop-oldest")
DURABLE_TTL_MS_RANGE: Final = (1000, 30 * 86_400_000)
DEFAULT_DURABLE_TTL_MS: Final = 3_600_000
MAX_RETAINED_RANGE: Final = (0, 1_000_000)
DEFAULT_MAX_RETAINED: Final = 10_000


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/fastport``, or ``~/.local/share/fastport``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "fastport"


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """The configurable limits of one broker.

    Attributes:
        max_subscriptions_per_connection: filters one client may hold.
        max_connections_per_session: live connections of one session.
        publish_rate_per_s: sustained publishes per second per connection (token bucket).
        publish_burst: bucket size: publishes allowed at once.
        publish_violations_before_close: rate-limited publishes before the connection is closed (4005).
        auth_failures_before_delay: failed ``init``s (per client address and per session) answered at once.
        auth_failures_before_cutoff: failed ``init``s after which ``init`` is refused outright and the
            connection closed (4006), until the window passes.
        auth_failure_window_s: how long a failed ``init`` is remembered.
        max_topic_length: characters in a topic or filter.
        max_topic_depth: levels in a topic or filter.
        outbound_buffer_limit: bytes queued in a connection's transport before it counts as a slow consumer.
        slow_consumer_grace_s: how long a connection may stay over that limit before it is closed (4007).
        init_timeout_s: time from the upgrade to a successful ``init``; later the connection is closed (4003).
    """

    max_subscriptions_per_connection: int = 1000
    max_connections_per_session: int = 10_000
    publish_rate_per_s: float = 50_000.0
    publish_burst: int = 100_000
    publish_violations_before_close: int = 1000
    auth_failures_before_delay: int = 5
    auth_failures_before_cutoff: int = 20
    auth_failure_window_s: float = 60.0
    max_topic_length: int = DEFAULT_MAX_LENGTH
    max_topic_depth: int = DEFAULT_MAX_DEPTH
    outbound_buffer_limit: int = 4 << 20
    slow_consumer_grace_s: float = 10.0
    init_timeout_s: float = 10.0


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
        http_head_timeout_s: time from accept to a complete request head (a REST request or the
            WebSocket upgrade: the opening handshake); later 408 and close.
        ws_handshake_timeout_s: picows's own bound on its part of the upgrade.
        log_format: ``text`` or ``json`` (one JSON object per line).
        metrics_open: serve ``GET /metrics`` without the admin credential.
        init_timeout_s: time from the upgrade to a successful ``init``; later close 4003.
        idle_timeout_s: ping a WebSocket peer silent for this long (0: never).
        ping_timeout_s: close (1001) a peer that has not answered a ping within this.
        limits: per-connection and per-session limits of the broker.
        store: ``sqlite:PATH`` to keep state on disk across restarts; None keeps it in memory.
        engine: ``redis://HOST:PORT/DB`` to join other broker processes; None runs alone.
        engine_prefix: prefix of every Redis key and channel (one per deployment, or per test).
        workers: broker processes sharing the port (``SO_REUSEPORT``); more than 1 needs ``engine``.
        reuse_port: bind with ``SO_REUSEPORT`` (set for each worker).
        allowed_origins: ``Origin`` values allowed to upgrade (lowercase, no trailing ``/``);
            empty allows all. An upgrade without ``Origin`` (not a browser) is always allowed.
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
    http_head_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    ws_handshake_timeout_s: float = 5.0
    log_format: str = "text"
    metrics_open: bool = False
    init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S
    allowed_origins: tuple[str, ...] = ()
    limits: BrokerLimits = field(default_factory=BrokerLimits)
    store: str | None = None
    engine: str | None = None
    engine_prefix: str = "fastport:"
    workers: int = 1
    reuse_port: bool = False

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
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"workers must be 1-256, got {self.workers}")
        if self.workers > 1 and self.engine is None:
            raise ConfigError("--workers above 1 needs a shared engine: add --engine redis://HOST:PORT/DB")
        if self.workers > 1 and self.port == 0:
            raise ConfigError("--workers above 1 needs a fixed --port (workers share it)")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log-format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        for name, value, low in (
            ("handshake-timeout", self.http_head_timeout_s, 0.05),
            ("init-timeout", self.init_timeout_s, 0.05),
            ("ping-timeout", self.ping_timeout_s, 0.05),
            ("idle-timeout", self.idle_timeout_s, 0.0),
        ):
            if not low <= value <= MAX_TIMEOUT_S:
                raise ConfigError(f"{name} must be {low:g}-{MAX_TIMEOUT_S:g} seconds, got {value:g}")
        if self.idle_timeout_s and self.ping_timeout_s > self.idle_timeout_s:
            raise ConfigError("ping-timeout must not exceed idle-timeout")
        for origin in self.allowed_origins:
            if not origin or origin != origin.strip().lower().rstrip("/") or "://" not in origin:
                raise ConfigError(f"allowed origin must look like https://example.com, got {origin!r}")

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
        inflight_window: messages sent and unacked per subscriber before further ones wait in its queue.
        max_queued_messages: messages a subscriber's queue holds (waiting for the window or a reconnect).
        max_queued_bytes: payload bytes a subscriber's queue holds.
        queue_overflow: ``drop-new`` (refuse the arriving message) or ``drop-oldest`` when a queue is full.
        durable_ttl_ms: how long a disconnected durable client's state is kept.
        max_retained: retained topics kept per session.
    """

    retry_interval_ms: int = DEFAULT_RETRY_INTERVAL_MS
    max_retry_limit: int = DEFAULT_MAX_RETRY_LIMIT
    message_expiry_ms: int | None = None
    expires_at_ms: int | None = None
    inflight_window: int = DEFAULT_INFLIGHT_WINDOW
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    queue_overflow: str = "drop-new"
    durable_ttl_ms: int = DEFAULT_DURABLE_TTL_MS
    max_retained: int = DEFAULT_MAX_RETAINED

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
        overflow = body.get("queueOverflow", "drop-new")
        if overflow not in QUEUE_OVERFLOW_POLICIES:
            raise ConfigError(
                f"queueOverflow must be one of {', '.join(QUEUE_OVERFLOW_POLICIES)}", field="queueOverflow"
            )
        return cls(
            retry_interval_ms=_int_setting(body, "retryInterval", DEFAULT_RETRY_INTERVAL_MS, RETRY_INTERVAL_MS_RANGE),
            max_retry_limit=_int_setting(body, "maxRetryLimit", DEFAULT_MAX_RETRY_LIMIT, MAX_RETRY_LIMIT_RANGE),
            message_expiry_ms=message_expiry_ms,
            expires_at_ms=_expiry_setting(body.get("sessionExpiry"), now_ms),
            inflight_window=_int_setting(body, "inflightWindow", DEFAULT_INFLIGHT_WINDOW, INFLIGHT_WINDOW_RANGE),
            max_queued_messages=_int_setting(
                body, "maxQueuedMessages", DEFAULT_MAX_QUEUED_MESSAGES, MAX_QUEUED_MESSAGES_RANGE
            ),
            max_queued_bytes=_int_setting(body, "maxQueuedBytes", DEFAULT_MAX_QUEUED_BYTES, MAX_QUEUED_BYTES_RANGE),
            queue_overflow=overflow,
            durable_ttl_ms=_int_setting(body, "durableTtl", DEFAULT_DURABLE_TTL_MS, DURABLE_TTL_MS_RANGE),
            max_retained=_int_setting(body, "maxRetained", DEFAULT_MAX_RETAINED, MAX_RETAINED_RANGE),
        )

    def to_store(self) -> dict[str, Any]:
        """The settings as a store keeps them (``from_request`` reads them back)."""
        return {key: value for key, value in self.to_response().items() if key != "sessionExpiry"} | {
            "expiresAt": self.expires_at_ms
        }

    @classmethod
    def from_store(cls, stored: dict[str, Any]) -> SessionSettings:
        """Settings written by ``to_store``, trusted (they were validated when the session was made)."""
        return cls(
            retry_interval_ms=stored["retryInterval"],
            max_retry_limit=stored["maxRetryLimit"],
            message_expiry_ms=stored["messageExpiryTime"],
            expires_at_ms=stored["expiresAt"],
            inflight_window=stored["inflightWindow"],
            max_queued_messages=stored["maxQueuedMessages"],
            max_queued_bytes=stored["maxQueuedBytes"],
            queue_overflow=stored["queueOverflow"],
            durable_ttl_ms=stored["durableTtl"],
            max_retained=stored["maxRetained"],
        )

    def to_response(self) -> dict[str, Any]:
        """The settings as the fields of a ``createSession`` response."""
        return {
            "retryInterval": self.retry_interval_ms,
            "maxRetryLimit": self.max_retry_limit,
            "messageExpiryTime": self.message_expiry_ms,
            "sessionExpiry": self.expires_at_ms,
            "inflightWindow": self.inflight_window,
            "maxQueuedMessages": self.max_queued_messages,
            "maxQueuedBytes": self.max_queued_bytes,
            "queueOverflow": self.queue_overflow,
            "durableTtl": self.durable_ttl_ms,
            "maxRetained": self.max_retained,
        }


__all__ = ["ServerConfig", "SessionSettings", "default_data_dir"]

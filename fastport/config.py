"""Server configuration and per-session settings: frozen, validated once.

Each ``fastport serve`` setting is declared once, in ``SETTINGS``: its flag, its
``FASTPORT_<NAME>`` environment variable, how its text parses, and the config field it sets
(whose dataclass default is the setting's default). ``resolve_server_config`` takes a flag,
else the variable, else the default. ``ADMIN_USER`` / ``ADMIN_PASS`` are honoured for
compatibility with the original fastPort broker.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


_SIZE_RE: Final = re.compile(r"(\d+)\s*(|k|kb|kib|m|mb|mib)", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(|s|ms)", re.IGNORECASE)
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


def parse_size(text: str, name: str) -> int:
    """Parse ``1048576``, ``512KiB`` or ``1MiB`` into bytes.

    Raises:
        ConfigError: ``text`` is no size; the message names the setting ``name``.
    """
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{name} must be a size such as 1048576, 512KiB or 1MiB, got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_duration(text: str, name: str) -> float:
    """Parse ``10``, ``2.5s`` or ``500ms`` into seconds.

    Raises:
        ConfigError: ``text`` is no duration; the message names the setting ``name``.
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{name} must be a duration such as 10, 2.5s or 500ms, got {text!r}")
    value = float(match.group(1))
    return value / 1000 if match.group(2).lower() == "ms" else value


def _parse_integer(text: str, name: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f"{name} must be a number, got {text!r}")
    return int(digits)


def _parse_number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None


def _parse_switch(text: str, name: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 1 or 0, got {text!r}")
    return word in _TRUE


def _parse_text(text: str, name: str) -> str:
    return text


def _parse_lowercase(text: str, name: str) -> str:
    return text.lower()


def _parse_path(text: str, name: str) -> Path:
    if not text:
        raise ConfigError(f"{name} must be a path, got ''")
    return Path(text)


def _parse_origins(text: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip().lower().rstrip("/") for part in text.split(",") if part.strip())


def _parse_networks(text: str, name: str) -> tuple[str, ...]:
    entries = tuple(part.strip() for part in text.split(",") if part.strip())
    _check_networks(entries, name)
    return entries


def _check_networks(entries: tuple[str, ...], name: str) -> None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name} must be addresses or networks such as 10.0.0.0/8, 192.0.2.7 or ::1, got {entry!r}"
            ) from None


def _show_number(value: float) -> str:
    """``10``, ``0.05`` or ``50000``: a whole number without its ``.0``, never in exponent form."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _show_size(size: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _show_switch(value: bool) -> str:
    return "on" if value else "off"


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """The configurable limits of one broker.

    Attributes:
        max_subscriptions_per_connection: filters one client may hold.
        max_connections_per_session: live connections of one session.
        publish_rate_per_s: sustained publishes per second per connection (token bucket).
        publish_burst: bucket size: publishes allowed at once.
        publish_violations_before_close: rate-limited publishes before the connection is closed (4005).
        auth_failures_before_delay: failed ``init``s (per client address and session pair, and per
            session) answered at once.
        auth_failures_before_cutoff: failed ``init``s (per client address and session pair, and per
            session) after which ``init`` is refused outright and the connection closed (4006), until
            the window passes.
        auth_address_failures_before_cutoff: the same cut-off for one client address, whatever the
            session (much higher: tenants behind one address do not lock each other out).
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
    auth_address_failures_before_cutoff: int = 200
    max_topic_length: int = DEFAULT_MAX_LENGTH
    max_topic_depth: int = DEFAULT_MAX_DEPTH
    outbound_buffer_limit: int = 4 << 20
    slow_consumer_grace_s: float = 10.0
    init_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        # Named by flag; the fields that have no flag by their own name.
        for name, value, low, high, unit in (
            ("max-subscriptions", self.max_subscriptions_per_connection, 1, 1_000_000, ""),
            ("max-connections-per-session", self.max_connections_per_session, 1, 1_000_000, ""),
            ("publish-rate", self.publish_rate_per_s, 0.01, 10_000_000, " per second"),
            ("publish-burst", self.publish_burst, 1, 10_000_000, ""),
            ("publish_violations_before_close", self.publish_violations_before_close, 1, 1_000_000, ""),
            ("auth_failures_before_delay", self.auth_failures_before_delay, 0, 1000, ""),
            ("auth_failures_before_cutoff", self.auth_failures_before_cutoff, 1, 1000, ""),
            ("auth_failure_window_s", self.auth_failure_window_s, 0.05, MAX_TIMEOUT_S, " seconds"),
            ("auth_address_failures_before_cutoff", self.auth_address_failures_before_cutoff, 1, 100_000, ""),
            ("max-topic-length", self.max_topic_length, 1, 65_535, " characters"),
            ("max-topic-depth", self.max_topic_depth, 1, 1024, " levels"),
            ("outbound-buffer-limit", self.outbound_buffer_limit, 1024, 1 << 30, " bytes"),
            ("slow-consumer-grace", self.slow_consumer_grace_s, 0.05, MAX_TIMEOUT_S, " seconds"),
            ("init-timeout", self.init_timeout_s, 0.05, MAX_TIMEOUT_S, " seconds"),
        ):
            if not low <= value <= high:
                raise ConfigError(
                    f"{name} must be {_show_number(low)}-{_show_number(high)}{unit}, got {_show_number(value)}"
                )


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
        admin_session: at startup, create the session ``admin_session`` with ``ADMIN_PASS`` as its password
            (the original fastPort's convention for its test suites and portal), unless it exists.
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
        trusted_proxies: addresses or CIDR networks (``10.0.0.0/8``, ``::1``) of reverse proxies whose
            ``Forwarded`` / ``X-Forwarded-For`` name the client (``server/client_address.py``);
            empty trusts no one.
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
    admin_session: bool = False
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
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
        if self.admin_session and self.admin_pass is None:
            raise ConfigError("admin-session needs ADMIN_USER and ADMIN_PASS (its password is ADMIN_PASS)")
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
        _check_networks(self.trusted_proxies, "trusted-proxies")

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


@dataclass(frozen=True, slots=True)
class SettingKind:
    """How the text of a setting becomes its value, and how a value is written as text again.

    Attributes:
        parse: ``(text, setting name) -> value``; raises ``ConfigError`` naming the setting.
        show: a value written as text that ``parse`` reads back as that value.
        metavar: the placeholder of the value in ``--help``; None: the setting's name in capitals.
        switch: a flag that takes no value (``--metrics-open``); its variable is ``1`` or ``0``.
    """

    parse: Callable[[str, str], Any]
    show: Callable[[Any], str] = str
    metavar: str | None = None
    switch: bool = False


INTEGER: Final = SettingKind(_parse_integer, metavar="N")
NUMBER: Final = SettingKind(_parse_number, _show_number, metavar="N")
SIZE: Final = SettingKind(parse_size, _show_size, metavar="SIZE")
DURATION: Final = SettingKind(parse_duration, _show_number, metavar="SECONDS")
SWITCH: Final = SettingKind(_parse_switch, _show_switch, switch=True)
TEXT: Final = SettingKind(_parse_text)
LOWERCASE: Final = SettingKind(_parse_lowercase)
PATH: Final = SettingKind(_parse_path, metavar="PATH")
ORIGIN_LIST: Final = SettingKind(_parse_origins, ",".join, metavar="ORIGINS")
NETWORK_LIST: Final = SettingKind(_parse_networks, ",".join, metavar="CIDRS")


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``fastport serve`` setting: the flag and ``FASTPORT_*`` variable that set one config field.

    Attributes:
        name: the flag without its dashes (``max-frame-size``); errors name the setting by it.
        owner: the class whose field the setting sets, ``ServerConfig`` or ``BrokerLimits``.
        field: that field; its dataclass default is the setting's default.
        kind: how the setting's text parses, and how its default is shown.
        help: what the setting does, for ``--help``.
        default_label: how ``--help`` and the README show a default that is not shown as a value
            (``memory``: no store); empty: the default value, as ``kind`` shows it.
    """

    name: str
    owner: type[ServerConfig | BrokerLimits]
    field: str
    kind: SettingKind
    help: str
    default_label: str = ""

    @property
    def flag(self) -> str:
        """The ``fastport serve`` option: ``--max-frame-size``."""
        return f"--{self.name}"

    @property
    def env(self) -> str:
        """The environment variable: ``FASTPORT_MAX_FRAME_SIZE``."""
        return "FASTPORT_" + self.name.upper().replace("-", "_")

    @property
    def default(self) -> Any:
        """The dataclass default of ``field``."""
        declared = next(item for item in dataclasses.fields(self.owner) if item.name == self.field)
        if declared.default_factory is not dataclasses.MISSING:
            return declared.default_factory()
        return declared.default

    @property
    def default_text(self) -> str:
        """The default as ``--help`` and the README's flag table show it: ``1MiB``, ``memory``."""
        return self.default_label or self.kind.show(self.default)


#: Every ``fastport serve`` setting, in the order of ``--help`` and the README's flag table.
SETTINGS: Final = (
    Setting("host", ServerConfig, "host", TEXT, "address to listen on"),
    Setting("port", ServerConfig, "port", INTEGER, "TCP port for HTTP and WebSocket; 0 picks a free one"),
    Setting("data-dir", ServerConfig, "data_dir", PATH, "directory of the admin token", "~/.local/share/fastport"),
    Setting(
        "max-frame-size", ServerConfig, "max_frame_size", SIZE, "largest WebSocket message, in bytes (or KiB, MiB)"
    ),
    Setting("max-body-size", ServerConfig, "max_body_size", SIZE, "largest REST request body, in bytes (or KiB, MiB)"),
    Setting("log-level", ServerConfig, "log_level", LOWERCASE, f"one of {', '.join(LOG_LEVELS)}"),
    Setting(
        "log-format",
        ServerConfig,
        "log_format",
        LOWERCASE,
        f"one of {', '.join(LOG_FORMATS)}; json writes one object per line",
    ),
    Setting("metrics-open", ServerConfig, "metrics_open", SWITCH, "serve /metrics without the admin credential"),
    Setting(
        "admin-session",
        ServerConfig,
        "admin_session",
        SWITCH,
        "create the session admin_session with ADMIN_PASS as its password (the original's convention)",
    ),
    Setting(
        "handshake-timeout",
        ServerConfig,
        "http_head_timeout_s",
        DURATION,
        "seconds to send a request head or WebSocket upgrade",
    ),
    Setting("init-timeout", BrokerLimits, "init_timeout_s", DURATION, "seconds from the upgrade to a successful init"),
    Setting(
        "idle-timeout", ServerConfig, "idle_timeout_s", DURATION, "ping a WebSocket silent this many seconds; 0: never"
    ),
    Setting("ping-timeout", ServerConfig, "ping_timeout_s", DURATION, "close a peer not answering a ping within this"),
    Setting(
        "allowed-origins",
        ServerConfig,
        "allowed_origins",
        ORIGIN_LIST,
        "comma-separated Origin allow-list for upgrades",
        "any",
    ),
    Setting(
        "trusted-proxies",
        ServerConfig,
        "trusted_proxies",
        NETWORK_LIST,
        "comma-separated proxy addresses/CIDRs whose Forwarded/X-Forwarded-For name the client",
        "none",
    ),
    Setting(
        "tls-cert",
        ServerConfig,
        "tls_cert",
        PATH,
        "PEM certificate chain: serve https:// and wss://; needs --tls-key",
        "none",
    ),
    Setting("tls-key", ServerConfig, "tls_key", PATH, "PEM private key of --tls-cert", "none"),
    Setting("store", ServerConfig, "store", TEXT, "sqlite:PATH keeps sessions and held messages on disk", "memory"),
    Setting("engine", ServerConfig, "engine", TEXT, "redis://HOST:PORT/DB joins other broker processes", "none"),
    Setting("engine-prefix", ServerConfig, "engine_prefix", TEXT, "prefix of the engine's Redis keys and channels"),
    Setting(
        "workers",
        ServerConfig,
        "workers",
        INTEGER,
        "broker processes sharing the port; more than 1 needs --engine and a fixed --port",
    ),
    Setting("max-subscriptions", BrokerLimits, "max_subscriptions_per_connection", INTEGER, "filters per connection"),
    Setting(
        "max-connections-per-session",
        BrokerLimits,
        "max_connections_per_session",
        INTEGER,
        "live connections per session",
    ),
    Setting("publish-rate", BrokerLimits, "publish_rate_per_s", NUMBER, "publishes per second per connection"),
    Setting("publish-burst", BrokerLimits, "publish_burst", INTEGER, "publishes at once per connection"),
    Setting("max-topic-length", BrokerLimits, "max_topic_length", INTEGER, "characters in a topic or filter"),
    Setting("max-topic-depth", BrokerLimits, "max_topic_depth", INTEGER, "levels in a topic or filter"),
    Setting(
        "outbound-buffer-limit",
        BrokerLimits,
        "outbound_buffer_limit",
        SIZE,
        "bytes queued to a connection before it is a slow consumer",
    ),
    Setting(
        "slow-consumer-grace",
        BrokerLimits,
        "slow_consumer_grace_s",
        DURATION,
        "seconds a slow consumer may stay over that limit",
    ),
)


def environment_layer(environ: Mapping[str, str]) -> dict[str, str]:
    """The text of each setting given as a ``FASTPORT_*`` variable, by setting name (empty: not given)."""
    return {setting.name: environ[setting.env] for setting in SETTINGS if environ.get(setting.env)}


def resolve_server_config(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> ServerConfig:
    """Take each setting from its flag, else its ``FASTPORT_*`` variable, else its default.

    Args:
        flags: the text of each flag given, by setting name (``max-frame-size``); None: not given.
        environ: the environment; it also holds the settings without a flag: ``ADMIN_USER`` and
            ``ADMIN_PASS`` (or ``FASTPORT_ADMIN_USER``/``FASTPORT_ADMIN_PASS``), ``FASTPORT_ADMIN_TOKEN``
            and ``FASTPORT_REUSE_PORT`` (set for each worker).

    Raises:
        ConfigError: a value is malformed or out of range; the message names the setting.
    """
    # Most important first; each layer holds the text of the settings it gives, by setting name.
    layers = ({name: text for name, text in flags.items() if text is not None}, environment_layer(environ))
    values: dict[type, dict[str, Any]] = {ServerConfig: {}, BrokerLimits: {}}
    for setting in SETTINGS:
        text = next((layer[setting.name] for layer in layers if setting.name in layer), None)
        if text is not None:
            values[setting.owner][setting.field] = setting.kind.parse(text, setting.name)
    return ServerConfig(
        **values[ServerConfig],
        limits=BrokerLimits(**values[BrokerLimits]),
        admin_user=environ.get("FASTPORT_ADMIN_USER") or environ.get("ADMIN_USER") or None,
        admin_pass=environ.get("FASTPORT_ADMIN_PASS") or environ.get("ADMIN_PASS") or None,
        admin_token=environ.get("FASTPORT_ADMIN_TOKEN") or None,
        reuse_port=bool(environ.get("FASTPORT_REUSE_PORT")),
    )


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
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError("sessionExpiry must be an ISO 8601 date-time", field="sessionExpiry") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
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

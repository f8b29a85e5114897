"""The ``fastport`` command: ``serve`` runs the broker, ``session`` manages sessions of a running one.

Every ``serve`` flag can also be set as ``FASTPORT_<NAME>`` in the environment (a flag
wins). Bad configuration prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from fastport import __version__
from fastport.config import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_INIT_TIMEOUT_S,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_PING_TIMEOUT_S,
    DEFAULT_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    BrokerLimits,
    ServerConfig,
    default_data_dir,
)
from fastport.errors import ConfigError
from fastport.log import configure as configure_logging
from fastport.server.admin import token_path

_SIZE_RE = re.compile(r"(\d+)\s*(|k|kb|kib|m|mb|mib)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text: str, name: str) -> int:
    """Parse ``1048576``, ``512KiB`` or ``1MiB`` into bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{name} must be a size such as 1048576, 512KiB or 1MiB, got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(|s|ms)", re.IGNORECASE)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_duration(text: str, name: str) -> float:
    """Parse ``10``, ``2.5s`` or ``500ms`` into seconds."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{name} must be a duration such as 10, 2.5s or 500ms, got {text!r}")
    value = float(match.group(1))
    return value / 1000 if match.group(2).lower() == "ms" else value


def _duration(flag: str | None, name: str, default: float) -> float:
    text = _setting(flag, name.upper().replace("-", "_"))
    return default if text is None else parse_duration(text, name)


def _flag(flag: bool, name: str) -> bool:
    if flag:
        return True
    text = (os.environ.get(f"FASTPORT_{name}") or "").strip().lower()
    if text in _TRUE:
        return True
    if text and text not in _FALSE:
        raise ConfigError(f"FASTPORT_{name} must be 1 or 0, got {text!r}")
    return False


def _origins(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(part.strip().lower().rstrip("/") for part in text.split(",") if part.strip())


def _setting(flag: str | None, name: str, *fallback_env: str) -> str | None:
    if flag is not None:
        return flag
    for env in (f"FASTPORT_{name}", *fallback_env):
        value = os.environ.get(env)
        if value:
            return value
    return None


def build_config(args: argparse.Namespace) -> ServerConfig:
    """Resolve flags, then ``FASTPORT_*`` variables, then defaults into a validated config.

    Raises:
        ConfigError: a value is malformed or out of range.
    """
    port_text = _setting(args.port, "PORT") or str(DEFAULT_PORT)
    if not port_text.isdigit():
        raise ConfigError(f"port must be a number, got {port_text!r}")
    data_dir = _setting(args.data_dir, "DATA_DIR")
    frame_size = _setting(args.max_frame_size, "MAX_FRAME_SIZE")
    body_size = _setting(args.max_body_size, "MAX_BODY_SIZE")
    host = _setting(args.host, "HOST")
    tls_cert = _setting(args.tls_cert, "TLS_CERT")
    tls_key = _setting(args.tls_key, "TLS_KEY")
    return ServerConfig(
        host=DEFAULT_HOST if host is None else host,
        port=int(port_text),
        data_dir=Path(data_dir) if data_dir else default_data_dir(),
        max_frame_size=parse_size(frame_size, "max-frame-size") if frame_size else DEFAULT_MAX_FRAME_SIZE,
        max_body_size=parse_size(body_size, "max-body-size") if body_size else DEFAULT_MAX_BODY_SIZE,
        log_level=(_setting(args.log_level, "LOG_LEVEL") or "info").lower(),
        admin_user=_setting(None, "ADMIN_USER", "ADMIN_USER"),
        admin_pass=_setting(None, "ADMIN_PASS", "ADMIN_PASS"),
        admin_token=_setting(None, "ADMIN_TOKEN"),
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        log_format=(_setting(args.log_format, "LOG_FORMAT") or "text").lower(),
        metrics_open=_flag(args.metrics_open, "METRICS_OPEN"),
        http_head_timeout_s=_duration(args.handshake_timeout, "handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT_S),
        init_timeout_s=_duration(args.init_timeout, "init-timeout", DEFAULT_INIT_TIMEOUT_S),
        idle_timeout_s=_duration(args.idle_timeout, "idle-timeout", DEFAULT_IDLE_TIMEOUT_S),
        ping_timeout_s=_duration(args.ping_timeout, "ping-timeout", DEFAULT_PING_TIMEOUT_S),
        allowed_origins=_origins(_setting(args.allowed_origins, "ALLOWED_ORIGINS")),
        limits=_limits(args),
        store=_setting(args.store, "STORE"),
        engine=_setting(args.engine, "ENGINE"),
        engine_prefix=_setting(args.engine_prefix, "ENGINE_PREFIX") or "fastport:",
        workers=_count(_setting(args.workers, "WORKERS"), "workers"),
        reuse_port=bool(os.environ.get("FASTPORT_REUSE_PORT")),
    )


#: ``serve`` flag -> (BrokerLimits field, parser) of every configurable limit.
_LIMIT_FLAGS: Final = {
    "max_subscriptions": ("max_subscriptions_per_connection", int),
    "max_connections_per_session": ("max_connections_per_session", int),
    "publish_rate": ("publish_rate_per_s", float),
    "publish_burst": ("publish_burst", int),
    "max_topic_length": ("max_topic_length", int),
    "max_topic_depth": ("max_topic_depth", int),
    "outbound_buffer_limit": ("outbound_buffer_limit", None),
    "slow_consumer_grace": ("slow_consumer_grace_s", float),
}


def _limits(args: argparse.Namespace) -> BrokerLimits:
    values: dict[str, Any] = {}
    for flag, (field, parse) in _LIMIT_FLAGS.items():
        text = _setting(getattr(args, flag), flag.upper())
        if text is None:
            continue
        name = flag.replace("_", "-")
        try:
            value = parse_size(text, name) if parse is None else parse(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {text!r}") from None
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {text!r}")
        values[field] = value
    return BrokerLimits(**values)


def _count(text: str | None, name: str) -> int:
    if text is None:
        return 1
    if not text.isdigit():
        raise ConfigError(f"{name} must be a number, got {text!r}")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    config = build_config(args)
    config.ssl_context()  # refuse an unreadable certificate before anything starts
    configure_logging(config.logging_level, config.log_format)
    if config.workers > 1:
        from fastport.server.workers import supervise

        return supervise(args.argv, config.workers)
    from fastport.server.app import run

    run(config)
    return 0


def _admin_request(args: argparse.Namespace, path: str, body: dict[str, Any], admin: bool) -> int:
    headers = {"Content-Type": "application/json"}
    if admin:
        token = os.environ.get("FASTPORT_ADMIN_TOKEN")
        if not token:
            data_dir = Path(_setting(args.data_dir, "DATA_DIR") or default_data_dir())
            try:
                token = token_path(data_dir).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the admin token in {data_dir}: {exc.strerror}") from None
        headers["Authorization"] = f"Bearer {token}"
    url = f"{args.url.rstrip('/')}{path}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.read().decode("utf-8"))
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode("utf-8", "replace"), file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"fastport: cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1


def _session(args: argparse.Namespace) -> int:
    if args.action == "create":
        body: dict[str, Any] = {"sessionName": args.name, "password": args.password}
        for option, field in (
            ("retry_interval", "retryInterval"),
            ("max_retry_limit", "maxRetryLimit"),
            ("message_expiry", "messageExpiryTime"),
        ):
            if getattr(args, option) is not None:
                body[field] = getattr(args, option)
        if args.session_expiry is not None:
            body["sessionExpiry"] = args.session_expiry
        return _admin_request(args, "/api/createSession", body, admin=True)
    if not args.secret_key:
        raise ConfigError(f"session {args.action} needs --secret-key")
    body = {"sessionName": args.name, "password": args.password, "secretKey": args.secret_key}
    if args.action == "drop":
        return _admin_request(args, "/api/dropSession", body, admin=False)
    body["suspend"] = args.action == "suspend"
    return _admin_request(args, "/api/suspendSession", body, admin=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastport`` command."""
    parser = argparse.ArgumentParser(prog="fastport", description="fastport pub/sub broker")
    parser.add_argument("--version", action="version", version=f"fastport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the broker (HTTP and WebSocket on one port)")
    serve.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--data-dir", help="directory for the admin token (default ~/.local/share/fastport)")
    serve.add_argument("--max-frame-size", help=f"largest WebSocket message (default {DEFAULT_MAX_FRAME_SIZE})")
    serve.add_argument("--max-body-size", help=f"largest REST request body (default {DEFAULT_MAX_BODY_SIZE})")
    serve.add_argument("--log-level", help=f"one of {', '.join(LOG_LEVELS)} (default info)")
    limits = BrokerLimits()
    serve.add_argument(
        "--max-subscriptions", help=f"filters per connection ({limits.max_subscriptions_per_connection})"
    )
    serve.add_argument(
        "--max-connections-per-session", help=f"live connections per session ({limits.max_connections_per_session})"
    )
    serve.add_argument("--publish-rate", help=f"publishes per second per connection ({limits.publish_rate_per_s:g})")
    serve.add_argument("--publish-burst", help=f"publishes at once per connection ({limits.publish_burst})")
    serve.add_argument("--max-topic-length", help=f"characters in a topic ({limits.max_topic_length})")
    serve.add_argument("--max-topic-depth", help=f"levels in a topic ({limits.max_topic_depth})")
    serve.add_argument(
        "--outbound-buffer-limit",
        help=f"bytes queued to a connection before it is a slow consumer ({limits.outbound_buffer_limit})",
    )
    serve.add_argument(
        "--slow-consumer-grace",
        help=f"seconds a slow consumer may stay over the limit ({limits.slow_consumer_grace_s:g})",
    )
    serve.add_argument("--store", help="sqlite:PATH keeps sessions and held messages on disk (default: memory)")
    serve.add_argument("--engine", help="redis://HOST:PORT/DB joins other broker processes (default: none)")
    serve.add_argument("--engine-prefix", help="prefix of the engine's Redis keys and channels (default fastport:)")
    serve.add_argument("--workers", help="broker processes sharing the port (needs --engine; default 1)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve https:// and wss:// (with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--log-format", help=f"one of {', '.join(LOG_FORMATS)} (default text)")
    serve.add_argument("--metrics-open", action="store_true", help="serve /metrics without the admin credential")
    serve.add_argument(
        "--handshake-timeout",
        help=f"seconds to send a request head or upgrade (default {DEFAULT_HANDSHAKE_TIMEOUT_S:g})",
    )
    serve.add_argument(
        "--init-timeout", help=f"seconds from upgrade to a successful init (default {DEFAULT_INIT_TIMEOUT_S:g})"
    )
    serve.add_argument(
        "--idle-timeout",
        help=f"ping a silent WebSocket after this many seconds; 0: never (default {DEFAULT_IDLE_TIMEOUT_S:g})",
    )
    serve.add_argument("--ping-timeout", help=f"close a peer not answering a ping (default {DEFAULT_PING_TIMEOUT_S:g})")
    serve.add_argument("--allowed-origins", help="comma-separated Origin allow-list for upgrades (default: any)")
    serve.set_defaults(handler=_serve)

    session = commands.add_parser("session", help="create, drop, suspend or resume a session of a running broker")
    session.add_argument("action", choices=("create", "drop", "suspend", "resume"))
    session.add_argument("name", help="session name")
    session.add_argument("--password", required=True, help="the session's client password")
    session.add_argument("--secret-key", help="the session's secret key (drop, suspend, resume)")
    session.add_argument("--retry-interval", type=int, help="ms between redeliveries (create)")
    session.add_argument("--max-retry-limit", type=int, help="redeliveries before a message is dropped (create)")
    session.add_argument("--message-expiry", type=int, help="message lifetime in ms (create)")
    session.add_argument("--session-expiry", help="ISO 8601 date-time or epoch ms at which the session ends")
    session.add_argument("--url", default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", help="broker base URL")
    session.add_argument("--data-dir", help="the broker's data dir, where its admin token is")
    session.set_defaults(handler=_session)

    from fastport.client.tools import add_commands

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastport`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "session_expiry", None) is not None and args.session_expiry.isdigit():
        args.session_expiry = int(args.session_expiry)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"fastport: error: {exc.error}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fastport: error: {exc}", file=sys.stderr)
        return 2

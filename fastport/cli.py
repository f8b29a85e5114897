"""The ``fastport`` command: ``serve`` runs the broker, ``session`` manages sessions of a running one.

Every ``serve`` flag can also be set as ``FASTPORT_<NAME>`` in the environment (a flag
wins). Bad configuration prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastport import __version__
from fastport.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    SETTINGS,
    ServerConfig,
    default_data_dir,
    environment_layer,
    resolve_server_config,
)
from fastport.errors import ConfigError
from fastport.log import configure as configure_logging
from fastport.server.admin import token_path


def build_config(args: argparse.Namespace) -> ServerConfig:
    """Resolve the ``serve`` flags, then ``FASTPORT_*`` variables, then defaults into a validated config.

    Raises:
        ConfigError: a value is malformed or out of range.
    """
    return resolve_server_config({setting.name: getattr(args, setting.name) for setting in SETTINGS}, os.environ)


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


def _session_url(args: argparse.Namespace) -> str:
    """``--url``, else ``FASTPORT_URL``, else the default; a ws(s):// URL becomes http(s):// (same host, port, path)."""
    url: str = args.url or os.environ.get("FASTPORT_URL") or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    scheme, separator, rest = url.partition("://")
    http_scheme = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme.lower())
    if not separator or http_scheme is None or not rest.strip("/"):
        raise ConfigError(f"session --url must be http://, https://, ws:// or wss://HOST[:PORT][/PATH], not {url!r}")
    return f"{http_scheme}://{rest.rstrip('/')}"


def _broker_error(exc: urllib.error.HTTPError) -> str:
    """The broker's JSON error body as ``<error> (code <code>)``; the HTTP status when the body is not one."""
    try:
        body = json.loads(exc.read())
    except (OSError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error = " ".join(body["error"].split())
        code = body.get("code")
        return f"{error} (code {code})" if isinstance(code, int) else error
    return f"HTTP {exc.code} {' '.join(str(exc.reason).split())}".rstrip()


def _admin_request(args: argparse.Namespace, path: str, body: dict[str, Any], admin: bool) -> int:
    from fastport.client.commands import connection_failure, tls_context

    base = _session_url(args)
    context = tls_context(base, args.cacert, args.insecure)
    headers = {"Content-Type": "application/json"}
    if admin:
        token = os.environ.get("FASTPORT_ADMIN_TOKEN")
        if not token:
            data_dir = Path(args.data_dir or environment_layer(os.environ).get("data-dir") or default_data_dir())
            try:
                token = token_path(data_dir).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the admin token in {data_dir}: {exc.strerror}") from None
        headers["Authorization"] = f"Bearer {token}"
    url = f"{base}{path}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            print(response.read().decode("utf-8"))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"fastport: error: {_broker_error(exc)}", file=sys.stderr)
    except urllib.error.URLError as exc:
        print(f"fastport: error: {connection_failure(exc.reason, base)}", file=sys.stderr)
    except (OSError, http.client.HTTPException) as exc:  # the connection broke during the exchange
        print(f"fastport: error: {connection_failure(exc, base)}", file=sys.stderr)
    return 1


def _session_secret(flag: str | None, option: str, env: str, what: str) -> str:
    value = flag if flag is not None else os.environ.get(env)
    if not value:
        raise ConfigError(f"missing {what}: pass {option} or set {env}")
    return value


def _session(args: argparse.Namespace) -> int:
    password = _session_secret(args.password, "--password", "FASTPORT_PASSWORD", "password")
    if args.action == "create":
        body: dict[str, Any] = {"sessionName": args.name, "password": password}
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
    secret_key = _session_secret(
        args.secret_key, "--secret-key", "FASTPORT_SECRET_KEY", f"secret key (session {args.action})"
    )
    body = {"sessionName": args.name, "password": password, "secretKey": secret_key}
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
    for setting in SETTINGS:
        help_text = f"{setting.help} (default {setting.default_text})"
        if setting.kind.switch:
            serve.add_argument(setting.flag, dest=setting.name, action="store_const", const="1", help=help_text)
        else:
            serve.add_argument(setting.flag, dest=setting.name, metavar=setting.kind.metavar, help=help_text)
    serve.set_defaults(handler=_serve)

    session = commands.add_parser("session", help="create, drop, suspend or resume a session of a running broker")
    from fastport.client.commands import add_commands, one_line_errors

    one_line_errors(session)
    session.add_argument("action", choices=("create", "drop", "suspend", "resume"))
    session.add_argument("name", help="session name")
    session.add_argument("--password", help="the session's client password (FASTPORT_PASSWORD; better there than here)")
    session.add_argument(
        "--secret-key", help="the session's secret key, for drop, suspend and resume (FASTPORT_SECRET_KEY)"
    )
    session.add_argument("--retry-interval", type=int, help="ms between redeliveries (create)")
    session.add_argument("--max-retry-limit", type=int, help="redeliveries before a message is dropped (create)")
    session.add_argument("--message-expiry", type=int, help="message lifetime in ms (create)")
    session.add_argument("--session-expiry", help="ISO 8601 date-time or epoch ms at which the session ends")
    session.add_argument(
        "--url",
        help=f"broker base URL, http(s):// or ws(s):// (FASTPORT_URL, default http://{DEFAULT_HOST}:{DEFAULT_PORT})",
    )
    session.add_argument("--data-dir", help="the broker's data dir, where its admin token is")
    session.add_argument("--cacert", metavar="FILE", help="verify an https:// broker with this CA (PEM)")
    session.add_argument("--insecure", action="store_true", help="do not verify the broker's TLS certificate")
    session.set_defaults(handler=_session)

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

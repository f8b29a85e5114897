"""The client side of the ``fastport`` command: ``keygen``, ``pub`` and ``sub``.

Connection settings come from flags, else ``FASTPORT_URL``, ``FASTPORT_SESSION``,
``FASTPORT_PASSWORD`` and ``FASTPORT_KEY``, so a password or key never has to be on the
command line (where ``ps`` shows it). For a ``wss://`` broker, ``--cacert FILE`` verifies its
certificate against that CA and ``--insecure`` does not verify it at all. Every failure is one
line on stderr and a non-zero exit status (2 for bad settings, 1 for a refused or failed operation).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import math
import os
import secrets
import ssl
import sys
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from picows import WSError

from fastport.client.client import Client
from fastport.client.crypto import EnvelopeVersion
from fastport.client.errors import ClientError, RequestRefused
from fastport.errors import ConfigError, ErrorCode, FastportError, ProtocolError
from fastport.protocol.codec import CLIENT_ID_RE
from fastport.protocol.topics import validate_filter, validate_topic

DEFAULT_URL = "ws://127.0.0.1:3000"
#: How long ``pub`` waits for the broker's answer (and, with ``--wait-ack``, the ack) by default.
DEFAULT_TIMEOUT_S = 30.0
#: The client's re-send interval for an unconfirmed publish.
RETRY_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Where and as whom to connect."""

    url: str
    session: str
    password: str
    key: str
    envelope: str
    ssl_context: ssl.SSLContext | None = None


def new_key() -> str:
    """A new base64 AES-256 key for a session's clients."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def settings_of(args: argparse.Namespace) -> Settings:
    """Resolve flags, then ``FASTPORT_*`` variables.

    Raises:
        ConfigError: a setting is missing or unusable.
    """

    def pick(flag: str | None, env: str, default: str | None = None) -> str:
        value = flag if flag is not None else os.environ.get(env, default)
        if not value:
            raise ConfigError(f"missing {env.removeprefix('FASTPORT_').lower()}: pass --{env[9:].lower()} or set {env}")
        return value

    url = pick(args.url, "FASTPORT_URL", DEFAULT_URL)
    return Settings(
        url=url,
        session=pick(args.session, "FASTPORT_SESSION"),
        password=pick(args.password, "FASTPORT_PASSWORD"),
        key=pick(args.key, "FASTPORT_KEY"),
        envelope=args.envelope,
        ssl_context=tls_context(url, args.cacert, args.insecure),
    )


def tls_context(url: str, cacert: str | None, insecure: bool) -> ssl.SSLContext | None:
    """The TLS context for ``--cacert FILE`` or ``--insecure``; None (the default context) without either.

    ``--insecure`` says once on stderr that the broker's certificate goes unverified.

    Raises:
        ConfigError: both flags, a flag with a plain ``ws://``/``http://`` URL, or an unloadable CA file.
    """
    if cacert is None and not insecure:
        return None
    if cacert is not None and insecure:
        raise ConfigError("pass --cacert or --insecure, not both")
    if not url.lower().startswith(("wss://", "https://")):
        raise ConfigError(f"--{'insecure' if insecure else 'cacert'} needs a wss:// or https:// URL, not {url}")
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        print("fastport: warning: --insecure: the broker's TLS certificate is not verified", file=sys.stderr)
        return context
    try:
        return ssl.create_default_context(cafile=cacert)
    except OSError as exc:  # ssl.SSLError included: not a PEM certificate
        raise ConfigError(f"cannot load --cacert {cacert}: {exc.strerror or exc}") from None


def connection_failure(reason: object, target: str) -> str:
    """One line on why ``target`` could not be reached (``reason``: an exception or a urllib reason)."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = reason.verify_message or reason.reason
        return f"TLS certificate of {target} not trusted: {why}; pass --cacert FILE (or --insecure)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS with {target} failed: {reason.reason or reason}"
    if isinstance(reason, TimeoutError):
        return f"cannot reach {target}: timed out"
    if isinstance(reason, OSError):
        return f"cannot reach {target}: {reason.strerror or reason}"
    return f"cannot reach {target}: {reason}"


def _client(settings: Settings, *, client_id: str | None = None, durable: bool = False, max_retries: int = 5) -> Client:
    envelope: EnvelopeVersion = "v1" if settings.envelope == "v1" else "v2"
    return Client(
        settings.url,
        settings.session,
        settings.password,
        settings.key,
        client_id=client_id,
        durable=durable,
        envelope=envelope,
        retry_interval_s=RETRY_INTERVAL_S,
        max_retries=max_retries,
        ssl_context=settings.ssl_context,
    )


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def publish(
    settings: Settings,
    topic: str,
    message: str,
    *,
    qos: Literal[0, 1] = 1,
    retain: bool = False,
    wait_ack: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Publish one message; prints its messageId and how many subscribers it went to.

    Waits at most ``timeout_s`` for the broker's answer and, with ``wait_ack``, the ack.

    Raises:
        ClientError: refused, or no answer (ack) within ``timeout_s``.
    """
    # Re-send for as long as the timeout runs, so the timeout (not the retry budget) ends the wait.
    max_retries = max(5, math.ceil(timeout_s / RETRY_INTERVAL_S) + 1)
    message_id = str(uuid.uuid4())
    async with _client(settings, max_retries=max_retries) as client:
        # Not cancelled on timeout: close() fails it, and no future is left with an unread error.
        emit = asyncio.ensure_future(
            client.emit(topic, message, qos=qos, retain=retain, wait_ack=wait_ack, message_id=message_id)
        )
        emit.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({emit}, timeout=timeout_s)
        if not done:
            what = "ack" if wait_ack else "answer"
            raise ClientError(f"no {what} for message {message_id} within {timeout_s:g} s")
        result = emit.result()
    acked = " acked" if result.acked else ""
    print(f"{result.message_id} delivered to {result.delivered_to}{acked}")
    return 0


async def subscribe(
    settings: Settings,
    topic: str,
    count: int | None,
    *,
    qos: Literal[0, 1] = 1,
    client_id: str | None = None,
    durable: bool = False,
) -> int:
    """Print each decrypted message on ``topic`` (one line: topic, then the message) until ``count``.

    Raises:
        ClientError: refused, or the broker ended the session.
    """
    received = 0
    client = _client(settings, client_id=client_id, durable=durable)
    # Subscribed before init: a resumed durable client's held messages come right after init_response.
    subscription = client.subscribe(topic, qos=qos)
    async with client:
        await subscription.ready()
        resumed = " (resumed)" if client.resumed else ""
        print(f"subscribed to {topic}{resumed}", file=sys.stderr, flush=True)
        async for message in subscription:
            payload = message.payload
            text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
            print(f"{message.topic} {text}", flush=True)
            received += 1
            if count is not None and received == count:
                # No new messages for this iterator; the ones already handed over (and acked) are
                # still printed before the iteration ends, so nothing acked goes unprinted.
                subscription.close()
    return 0


class _ClientWarnings(logging.Handler):
    """The client's warnings no error line repeats (rejected messages, broker error frames), one line each."""

    SHOWN = ("rejected message", "broker error")

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING and str(record.msg).startswith(self.SHOWN):
            print(f"fastport: warning: {record.getMessage()}", file=sys.stderr, flush=True)


def _route_client_logging() -> None:
    client_logger = logging.getLogger("fastport.client")
    if not any(isinstance(handler, _ClientWarnings) for handler in client_logger.handlers):
        client_logger.addHandler(_ClientWarnings())
    client_logger.propagate = False


def run(coroutine: Coroutine[Any, Any, int], url: str) -> int:
    """Run a tool connected to ``url`` on uvloop; turn every failure into one ``fastport: error:`` line and a status."""
    import uvloop

    _route_client_logging()
    try:
        return int(uvloop.run(coroutine))
    except (ConfigError, ProtocolError) as exc:  # a bad setting, key or topic
        print(f"fastport: error: {exc.error}", file=sys.stderr)
        return 2
    except RequestRefused as exc:  # the broker said no: its error, and its code when it sent one
        code = f" (code {int(exc.error_code)})" if exc.error_code is not ErrorCode.INTERNAL else ""
        print(f"fastport: error: {exc.error}{code}", file=sys.stderr)
        return 1
    except FastportError as exc:  # the other ClientErrors: ended, timed out, closed
        print(f"fastport: error: {exc.error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout's reader went away (``fastport sub t | head -1``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"fastport: error: {connection_failure(exc, url)}", file=sys.stderr)
        return 1
    except WSError as exc:
        print(f"fastport: error: WebSocket handshake with {url} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report a bad command line as one ``fastport: error:`` line and status 2 (no usage dump)."""
    command = parser.prog.removeprefix("fastport ")

    def error(message: str) -> NoReturn:
        parser.exit(2, f"fastport: error: {command}: {message}; see {parser.prog} --help\n")

    parser.error = error  # type: ignore[method-assign]


def add_tls_flags(command: argparse.ArgumentParser) -> None:
    """``--cacert FILE`` and ``--insecure``, for ``pub``, ``sub`` and ``session``."""
    command.add_argument("--cacert", metavar="FILE", help="verify a wss:// (https://) broker with this CA (PEM)")
    command.add_argument("--insecure", action="store_true", help="do not verify the broker's TLS certificate")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keygen``, ``pub`` and ``sub`` to the ``fastport`` command."""
    keygen = commands.add_parser("keygen", help="print a new base64 AES-256 key for a session's clients")
    keygen.set_defaults(handler=lambda args: print(new_key()) or 0)
    for name, help_text in (("pub", "publish one message"), ("sub", "print the messages of a topic")):
        command = commands.add_parser(name, help=help_text)
        one_line_errors(command)
        command.add_argument("topic")
        if name == "pub":
            command.add_argument("message")
            command.add_argument("--wait-ack", action="store_true", help="wait until a subscriber acked it")
            command.add_argument(
                "--timeout",
                type=float,
                default=DEFAULT_TIMEOUT_S,
                metavar="SECONDS",
                help=f"how long to wait for the broker's answer and the ack (default {DEFAULT_TIMEOUT_S:g})",
            )
            command.add_argument("--retain", action="store_true", help="keep it as the topic's retained message")
        else:
            command.add_argument("--count", type=int, help="stop after this many messages")
            command.add_argument(
                "--durable", action="store_true", help="the broker keeps the subscription and messages while away"
            )
            command.add_argument("--client-id", help="this subscriber's stable id (needed by --durable)")
        command.add_argument(
            "--qos", type=int, choices=(0, 1), default=1, help="1 at-least-once (default), 0 at-most-once"
        )
        command.add_argument("--url", help=f"broker URL (FASTPORT_URL, default {DEFAULT_URL})")
        command.add_argument("--session", help="session name (FASTPORT_SESSION)")
        command.add_argument("--password", help="session password (FASTPORT_PASSWORD; better there than here)")
        command.add_argument("--key", help="base64 AES-256 key (FASTPORT_KEY; better there than here)")
        command.add_argument("--envelope", choices=("v2", "v1"), default="v2", help="envelope to send (default v2)")
        add_tls_flags(command)
        command.set_defaults(handler=_pub if name == "pub" else _sub)


def _check_topic(topic: str, *, is_filter: bool) -> None:
    """Refuse a bad topic (or filter) before connecting.

    Raises:
        ConfigError: it breaks a topic rule.
    """
    try:
        (validate_filter if is_filter else validate_topic)(topic)
    except ProtocolError as exc:
        raise ConfigError(f"bad {'topic filter' if is_filter else 'topic'} {topic!r}: {exc.error}") from None


def _pub(args: argparse.Namespace) -> int:
    _check_topic(args.topic, is_filter=False)
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise ConfigError("--timeout must be a number of seconds above 0")
    if args.wait_ack and args.qos == 0:
        raise ConfigError("--wait-ack needs --qos 1 (QoS 0 messages are not acked)")
    settings = settings_of(args)
    qos: Literal[0, 1] = 0 if args.qos == 0 else 1
    return run(
        publish(
            settings,
            args.topic,
            args.message,
            qos=qos,
            retain=args.retain,
            wait_ack=args.wait_ack,
            timeout_s=args.timeout,
        ),
        settings.url,
    )


def _sub(args: argparse.Namespace) -> int:
    _check_topic(args.topic, is_filter=True)
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    if args.durable and not args.client_id:
        raise ConfigError("--durable needs --client-id (the id the broker keeps this subscriber's state under)")
    if args.client_id is not None and not CLIENT_ID_RE.fullmatch(args.client_id):
        raise ConfigError("--client-id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    settings = settings_of(args)
    qos: Literal[0, 1] = 0 if args.qos == 0 else 1
    return run(
        subscribe(settings, args.topic, args.count, qos=qos, client_id=args.client_id, durable=args.durable),
        settings.url,
    )

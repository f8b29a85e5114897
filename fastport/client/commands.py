"""The client side of the ``fastport`` command: ``keygen``, ``pub`` and ``sub``.

Connection settings come from flags, else ``FASTPORT_URL``, ``FASTPORT_SESSION``,
``FASTPORT_PASSWORD`` and ``FASTPORT_KEY``. Every failure is one line on stderr and a
non-zero exit status (2 for bad settings, 1 for a refused or failed operation).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from dataclasses import dataclass

from fastport.client.client import Client
from fastport.client.crypto import EnvelopeVersion
from fastport.client.errors import ClientError
from fastport.errors import ConfigError

DEFAULT_URL = "ws://127.0.0.1:3000"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where and as whom to connect."""

    url: str
    session: str
    password: str
    key: str
    envelope: str


def new_key() -> str:
    """A new base64 AES-256 key for a session's clients."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def settings_of(args: argparse.Namespace) -> Settings:
    """Resolve flags, then ``FASTPORT_*`` variables.

    Raises:
        ConfigError: a setting is missing.
    """

    def pick(flag: str | None, env: str, default: str | None = None) -> str:
        value = flag if flag is not None else os.environ.get(env, default)
        if not value:
            raise ConfigError(f"missing {env.removeprefix('FASTPORT_').lower()}: pass --{env[9:].lower()} or set {env}")
        return value

    return Settings(
        url=pick(args.url, "FASTPORT_URL", DEFAULT_URL),
        session=pick(args.session, "FASTPORT_SESSION"),
        password=pick(args.password, "FASTPORT_PASSWORD"),
        key=pick(args.key, "FASTPORT_KEY"),
        envelope=args.envelope,
    )


def _client(settings: Settings) -> Client:
    envelope: EnvelopeVersion = "v1" if settings.envelope == "v1" else "v2"
    return Client(settings.url, settings.session, settings.password, settings.key, envelope=envelope)


async def publish(settings: Settings, topic: str, message: str, wait_ack: bool) -> int:
    """Publish one message; prints its messageId and how many subscribers it went to."""
    async with _client(settings) as client:
        result = await client.emit(topic, message, wait_ack=wait_ack)
    acked = " acked" if result.acked else ""
    print(f"{result.message_id} delivered to {result.delivered_to}{acked}")
    return 0


async def subscribe(settings: Settings, topic: str, count: int | None) -> int:
    """Print each decrypted message on ``topic`` (one line: topic, then the message) until ``count``."""
    received = 0
    async with _client(settings) as client:
        subscription = client.subscribe(topic)
        await subscription.ready()
        print(f"subscribed to {topic}", file=sys.stderr, flush=True)
        async for message in subscription:
            payload = message.payload
            text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
            print(f"{message.topic} {text}", flush=True)
            received += 1
            if count is not None and received >= count:
                break
    return 0


def run(coroutine_factory: object) -> int:
    """Run a tool on uvloop; turn client errors into one line and exit status 1."""
    try:
        import uvloop

        return int(uvloop.run(coroutine_factory))  # type: ignore[arg-type]
    except ClientError as exc:
        print(f"fastport: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"fastport: error: cannot reach the broker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keygen``, ``pub`` and ``sub`` to the ``fastport`` command."""
    keygen = commands.add_parser("keygen", help="print a new base64 AES-256 key for a session's clients")
    keygen.set_defaults(handler=lambda args: print(new_key()) or 0)
    for name, help_text in (("pub", "publish one message"), ("sub", "print the messages of a topic")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("topic")
        if name == "pub":
            command.add_argument("message")
            command.add_argument("--wait-ack", action="store_true", help="wait until a subscriber acked it")
        else:
            command.add_argument("--count", type=int, help="stop after this many messages")
        command.add_argument("--url", help=f"broker URL (FASTPORT_URL, default {DEFAULT_URL})")
        command.add_argument("--session", help="session name (FASTPORT_SESSION)")
        command.add_argument("--password", help="session password (FASTPORT_PASSWORD)")
        command.add_argument("--key", help="base64 AES-256 key (FASTPORT_KEY)")
        command.add_argument("--envelope", choices=("v2", "v1"), default="v2", help="envelope to send (default v2)")
        command.set_defaults(handler=_pub if name == "pub" else _sub)


def _pub(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    return run(publish(settings, args.topic, args.message, args.wait_ack))


def _sub(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    settings = settings_of(args)
    return run(subscribe(settings, args.topic, args.count))

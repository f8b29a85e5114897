"""Logging: logger names, the per-connection adapter, and the text or JSON-lines setup.

Loggers are ``fastport.server``, ``fastport.broker``, ``fastport.delivery``,
``fastport.http`` and ``fastport.client``. Records may carry ``connection`` (the
connection id) and ``session`` (the session name) as extras, added by
``ConnectionLogger``; the JSON format puts them in their own keys. Nothing here logs
payloads, passwords or keys: callers never pass them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

SERVER: Final = "fastport.server"
BROKER: Final = "fastport.broker"
DELIVERY: Final = "fastport.delivery"
HTTP: Final = "fastport.http"
CLIENT: Final = "fastport.client"

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes copied to JSON lines when present (set with ``extra=``).
CONTEXT_FIELDS: Final = ("connection", "session", "remote")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, and context ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


class ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that tags every record with a connection id and, once known, its session.

    Args:
        logger: the module logger.
        connection: the connection id.
        session: the session name, or None before ``init``.
    """

    def __init__(self, logger: logging.Logger, connection: int, session: str | None = None) -> None:
        super().__init__(logger, {"connection": connection, "session": session})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def configure(level: int, log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send fastport's (and picows's) logs to ``stream`` (stderr) as text or JSON lines.

    Replaces the root logger's handlers, so calling it twice does not duplicate lines.

    Args:
        level: the ``logging`` level.
        log_format: ``text`` or ``json``.
        stream: where to write; stderr by default.

    Returns:
        The installed handler.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # picows logs every accepted connection at INFO; keep its chatter at our debug level only.
    logging.getLogger("picows").setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


__all__ = ["ConnectionLogger", "JsonFormatter", "configure"]

"""Logging: logger names, the per-connection adapter, and the text or JSON-lines setup.

Loggers are ``fastport.server``, ``fastport.broker``, ``fastport.delivery``,
``fastport.http`` and ``fastport.client``. Records may carry ``connection`` (the
connection id) and ``session`` (the session name) as extras, added by
``ConnectionLogger`` or by ``extra=Connection.log_context()`` (the broker's lines about a
connection); the JSON format puts them in their own keys, ``session`` null before ``init``. Nothing here logs
payloads, passwords or keys: callers never pass them.

What a client can make picows log (a frame its parser refuses: oversize, bad opcode,
unmasked, bad control frame) is not the broker's fault: ``ClientCausedFilter`` demotes
those ERROR lines to INFO, at most ``burst`` of them per ``interval_s``, and tells its
``listeners`` (the servers' counters) about each one. ERROR stays for the broker's own faults.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
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
#: The loggers picows writes a server's lines to (``fastport.server.front`` passes it an adapter of this one).
PICOWS_LOGGERS: Final = ("picows.server",)
#: picows's ERROR line for a frame its parser refuses; the rest of the message comes from the client's bytes.
_PARSER_ERROR: Final = "WS parser error:"
#: picows's WARNING lines about a peer that does not read fast enough (``--outbound-buffer-limit`` handles those).
_WRITE_PAUSE: Final = ("Protocol writing pause requested", "Protocol writing resume requested")


class ClientCausedFilter(logging.Filter):
    """Demotes the picows lines a client can provoke, rate limits and counts them.

    A refused frame (``WS parser error``, ERROR) becomes an INFO line, emitted only when
    ``fastport.server`` logs INFO; past ``burst`` lines per ``interval_s`` the rest are
    dropped and the next emitted line says how many were. Every one calls each of
    ``listeners`` (for a metric). picows's write pause/resume warnings (a slow reader)
    become DEBUG. Every other record passes untouched.

    Args:
        interval_s: the rate-limit window.
        burst: lines emitted per window.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, interval_s: float = 10.0, burst: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.burst = burst
        self.listeners: set[Callable[[], None]] = set()
        self._clock = clock
        self._window_start = 0.0
        self._emitted = 0
        self._suppressed = 0
        self.reset()

    def reset(self) -> None:
        """Start a fresh rate-limit window."""
        self._window_start = self._clock() - self.interval_s
        self._emitted = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(record.msg, str):
            return True
        if record.msg.startswith(_WRITE_PAUSE):
            return _demote(record, logging.DEBUG)
        if not record.msg.startswith(_PARSER_ERROR):
            return True
        for listener in list(self.listeners):
            listener()
        now = self._clock()
        if now - self._window_start >= self.interval_s:
            self._window_start, self._emitted = now, 0
        if self._emitted >= self.burst:
            self._suppressed += 1
            return False
        self._emitted += 1
        if self._suppressed:
            record.msg, record.args = f"{record.getMessage()} ({self._suppressed} more like it not logged)", None
            self._suppressed = 0
        return _demote(record, logging.INFO)


def _demote(record: logging.LogRecord, level: int) -> bool:
    record.levelno, record.levelname = level, logging.getLevelName(level)
    # The record passed picows's level check as an ERROR; at its new level it obeys fastport's.
    return logging.getLogger(SERVER).isEnabledFor(level)


#: The one filter on picows's loggers (``install_client_caused_filter``).
CLIENT_CAUSED: Final = ClientCausedFilter()


def install_client_caused_filter() -> ClientCausedFilter:
    """Put ``CLIENT_CAUSED`` on picows's loggers (once; calling again changes nothing)."""
    for name in PICOWS_LOGGERS:
        picows_logger = logging.getLogger(name)
        if CLIENT_CAUSED not in picows_logger.filters:
            picows_logger.addFilter(CLIENT_CAUSED)
    return CLIENT_CAUSED


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
        if "connection" in entry:
            entry.setdefault("session", None)  # a line about a connection says so before its init, too
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
    install_client_caused_filter()
    return handler


def reopen_log_files() -> int:
    """Close every file the root logger writes to; each reopens at its next line (after logrotate).

    Returns:
        How many files there were (0: fastport logs to stderr, which has nothing to reopen).
    """
    reopened = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()  # the next emit opens baseFilename again
            finally:
                handler.release()
            reopened += 1
    return reopened


__all__ = [
    "CLIENT_CAUSED",
    "ClientCausedFilter",
    "ConnectionLogger",
    "JsonFormatter",
    "configure",
    "install_client_caused_filter",
    "reopen_log_files",
]

"""Per-connection state: lifecycle, session binding and subscriptions.

A connection moves ``AWAIT_INIT -> AUTHENTICATING -> OPEN -> CLOSED``; a failed
``init`` goes back to ``AWAIT_INIT`` (the original clients retry on the same socket).
It never changes session once ``OPEN``. Frames that arrive while the password is
being checked are queued (bounded) and handled, in order, once ``init`` is answered,
so a client that pipelines ``subscribe`` right after ``init`` works.

The broker talks to the transport only through ``Sink``; ``Connection.reject`` answers a refused
frame with its error frame and ``Connection.close`` ends the connection, both logged with
``Connection.log_context`` (the ``connection`` and ``session`` fields of a JSON line).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from fastport.protocol import codec

if TYPE_CHECKING:
    from fastport.broker.limits import TokenBucket
    from fastport.broker.sessions import Session
    from fastport.broker.subscriber import Subscriber
    from fastport.errors import FastportError
    from fastport.protocol.frames import Will

logger = logging.getLogger("fastport.broker")

#: Frames queued while ``init`` is being checked; more is a client bug.
MAX_FRAMES_DURING_INIT: Final = 256

_ids = itertools.count(1)


class Sink(Protocol):
    """What the broker needs from a transport."""

    def send(self, payload: bytes) -> None:
        """Queue one text frame (coalesced with others of the same loop iteration)."""

    def send_binary(self, payload: bytes) -> None:
        """Queue one binary frame."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and disconnect."""

    @property
    def is_open(self) -> bool:
        """False once the transport is closing or closed."""

    @property
    def backlog(self) -> int:
        """Bytes written to the transport and not yet handed to the socket."""

    @property
    def paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""


class ConnState(IntEnum):
    """Lifecycle states of a ``Connection``."""

    AWAIT_INIT = 0
    AUTHENTICATING = 1
    OPEN = 2
    CLOSED = 3


class Connection:
    """One WebSocket client, as the broker sees it."""

    __slots__ = (
        "id",
        "sink",
        "state",
        "session",
        "subscriber",
        "user_id",
        "will",
        "queued",
        "files",
        "remote",
        "bucket",
        "init_timer",
    )

    def __init__(self, sink: Sink, remote: str = "") -> None:
        self.id = next(_ids)
        self.sink = sink
        self.state = ConnState.AWAIT_INIT
        self.session: Session | None = None
        self.subscriber: Subscriber | None = None
        self.user_id: str | None = None
        self.will: Will | None = None
        self.queued: deque[bytes] | None = None
        self.files: dict[str, str] | None = None
        self.bucket: TokenBucket | None = None
        #: The scheduler handle that closes the connection if no ``init`` succeeds in time.
        self.init_timer: int | None = None
        self.remote = remote

    def reject(self, exc: FastportError, response_type: str | None = None, **extra: Any) -> None:
        """Answer a refused frame with the error frame of ``exc`` (the connection stays open).

        Args:
            exc: what was wrong (its ``error``, ``code`` and ``field`` go on the wire).
            response_type: the ``*_response`` type to answer with (``success: false``), or None
                for an ``error`` frame.
            extra: more fields of the answer (``messageId``, ``topic``...).
        """
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection #%d: %s", self.id, exc.error, extra=self.log_context())
        self.sink.send(codec.encode_error(exc, response_type, **extra))

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` and ``reason`` (logged)."""
        logger.info("closing connection #%d: %d %s", self.id, code, reason, extra=self.log_context())
        self.sink.close(code, reason)

    def close_for(self, exc: FastportError) -> None:
        """Close the connection for an error that ends it: its ``close_code``, its ``error`` as the reason."""
        assert exc.close_code is not None
        self.close(exc.close_code, exc.error)

    def log_context(self) -> dict[str, Any]:
        """The ``extra=`` of a log line about this connection: its id and its session's name (None before init).

        Built only when a line is logged (error and lifecycle paths), never per frame.
        """
        session = self.session
        return {"connection": self.id, "session": session.name if session is not None else None}

    def __repr__(self) -> str:
        session = self.session.name if self.session is not None else None
        return f"<Connection #{self.id} {self.state.name} session={session!r}>"

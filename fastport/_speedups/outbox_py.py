"""Outbox and Flusher: WebSocket framing and per-connection write coalescing (reference twin).

A broker fan-out hands the same encoded payload to many connections. Each connection's
``Outbox`` frames it (a final, unmasked server frame, RFC 6455 §5.2: ``FIN | opcode``, then a
7-bit length, or 126 and a 16-bit length, or 127 and a 64-bit length, big-endian) and keeps it
until the ``Flusher`` writes everything the connection got in this loop iteration with a
single ``write`` call.

Rules:

- ``text``/``binary`` queue one frame. The first frame queued to an empty outbox marks the
  outbox with its flusher; the first outbox marked since the last flush makes the flusher call
  ``call_soon(flusher.flush)`` once, so a loop iteration's fan-out costs one scheduled callback
  and one ``write`` per connection.
- ``Outbox.flush`` writes what is queued now (one ``write``, nothing when empty); the outbox is
  empty before ``write`` is called, so a ``write`` that raises loses those frames and never
  leaves the outbox stuck. ``discard`` drops what is queued (the connection is gone).
- ``Flusher.flush`` flushes every marked outbox in the order they were marked; an exception from
  one outbox's ``write`` does not stop the others, and the first one is raised at the end.
- Payloads are ``bytes`` (``TypeError`` otherwise), never copied before the flush here; the
  compiled twin copies them into a C buffer, so both are safe with immutable ``bytes`` only.

Sans-I/O: the outbox gets a ``write`` callable (a transport's ``write``), the flusher a
``call_soon``-like callable (an event loop's ``call_soon``); nothing here imports asyncio.
What is sent where is decided elsewhere (``fastport._speedups.fanout_py``, the broker).
``outbox_c.pyx`` is the compiled twin; both have the same names, signatures, results and
exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["OP_BINARY", "OP_TEXT", "Flusher", "Outbox"]

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2

_SHORT_TEXT_HEADERS: Final = tuple(bytes((0x80 | OP_TEXT, n)) for n in range(126))


def _header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final server frame carrying ``length`` payload bytes."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


class Outbox:
    """Frames queued for one connection and not written yet."""

    __slots__ = ("_chunks", "_flusher", "_write")

    def __init__(self, write: Callable[[bytes], object], flusher: Flusher) -> None:
        """Create an empty outbox.

        Args:
            write: Writes bytes to the connection (a transport's ``write``).
            flusher: The flusher that writes this outbox out at the end of the loop iteration.

        Raises:
            TypeError: If flusher is not a ``Flusher``.
        """
        if not isinstance(flusher, Flusher):
            raise TypeError(f"flusher must be a Flusher, not {type(flusher).__name__}")
        self._write = write
        self._flusher = flusher
        # None while empty: an idle connection holds no list.
        self._chunks: list[bytes] | None = None

    def text(self, payload: bytes) -> None:
        """Queue a text frame.

        Args:
            payload: The frame's payload (UTF-8 text, not checked).

        Raises:
            TypeError: If payload is not ``bytes``.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        chunks = self._chunks
        if chunks is None:
            # Marked before anything is queued: if call_soon raises, the outbox stays empty.
            self._flusher.mark(self)
            chunks = self._chunks = []
        length = len(payload)
        chunks.append(_SHORT_TEXT_HEADERS[length] if length < 126 else _header(OP_TEXT, length))
        chunks.append(payload)

    def binary(self, payload: bytes) -> None:
        """Queue a binary frame.

        Args:
            payload: The frame's payload.

        Raises:
            TypeError: If payload is not ``bytes``.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        chunks = self._chunks
        if chunks is None:
            # Marked before anything is queued: if call_soon raises, the outbox stays empty.
            self._flusher.mark(self)
            chunks = self._chunks = []
        chunks.append(_header(OP_BINARY, len(payload)))
        chunks.append(payload)

    def flush(self) -> None:
        """Write everything queued, in one ``write``; nothing when empty."""
        chunks = self._chunks
        if chunks is not None:
            self._chunks = None
            self._write(b"".join(chunks))

    def discard(self) -> None:
        """Drop everything queued (the connection is gone)."""
        self._chunks = None

    def pending(self) -> int:
        """Bytes queued (headers included) and not written yet."""
        chunks = self._chunks
        return 0 if chunks is None else sum(map(len, chunks))


class Flusher:
    """Flushes every outbox that got frames, once per loop iteration."""

    __slots__ = ("_call_soon", "_dirty", "_flush")

    def __init__(self, call_soon: Callable[[Callable[[], None]], object]) -> None:
        """Create a flusher with nothing marked.

        Args:
            call_soon: Schedules a callback for later in this loop iteration (an event loop's ``call_soon``).
        """
        self._call_soon = call_soon
        self._dirty: list[Outbox] = []
        self._flush = self.flush

    def mark(self, outbox: Outbox) -> None:
        """Remember that ``outbox`` has frames to write; schedule a flush if none is pending."""
        dirty = self._dirty
        if not dirty:
            self._call_soon(self._flush)
        dirty.append(outbox)

    def flush(self) -> None:
        """Flush all marked outboxes, in the order they were marked.

        Raises:
            Exception: The first exception an outbox's ``write`` raised, after every outbox was flushed.
        """
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        error: BaseException | None = None
        for outbox in dirty:
            try:
                outbox.flush()
            except Exception as exc:  # noqa: BLE001 - one broken transport must not starve the rest
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def __len__(self) -> int:
        """Outboxes marked since the last flush."""
        return len(self._dirty)

"""Write coalescing: every frame queued to a connection in one loop iteration goes out in one write.

A broker fan-out queues the same encoded bytes to many connections; each connection's
frames are framed here (server frames are unmasked, RFC 6455 §5.2) and written with a
single ``transport.write`` by the ``Flusher``, called once at the next loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2

_SHORT_TEXT_HEADERS: Final = tuple(bytes((0x80 | OP_TEXT, n)) for n in range(126))


def frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final server frame carrying ``length`` payload bytes."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


class Outbox:
    """Frames queued for one connection and not yet written."""

    __slots__ = ("_write", "_chunks", "_flusher")

    def __init__(self, write: Callable[[bytes], object], flusher: Flusher) -> None:
        self._write = write
        self._chunks: list[bytes] = []
        self._flusher = flusher

    def text(self, payload: bytes) -> None:
        """Queue a text frame."""
        chunks = self._chunks
        if not chunks:
            self._flusher.mark(self)
        length = len(payload)
        chunks.append(_SHORT_TEXT_HEADERS[length] if length < 126 else frame_header(OP_TEXT, length))
        chunks.append(payload)

    def binary(self, payload: bytes) -> None:
        """Queue a binary frame."""
        if not self._chunks:
            self._flusher.mark(self)
        self._chunks.append(frame_header(OP_BINARY, len(payload)))
        self._chunks.append(payload)

    def flush(self) -> None:
        """Write everything queued, in one write."""
        chunks = self._chunks
        if chunks:
            self._chunks = []
            self._write(b"".join(chunks))

    def discard(self) -> None:
        """Drop everything queued (the connection is gone)."""
        self._chunks = []


class Flusher:
    """Flushes every outbox that got frames, once per loop iteration."""

    __slots__ = ("_loop", "_dirty")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Outbox] = []

    def mark(self, outbox: Outbox) -> None:
        """Remember that ``outbox`` has frames to write."""
        if not self._dirty:
            self._loop.call_soon(self.flush)
        self._dirty.append(outbox)

    def flush(self) -> None:
        """Write all marked outboxes."""
        dirty = self._dirty
        self._dirty = []
        for outbox in dirty:
            outbox.flush()

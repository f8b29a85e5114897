"""Fan-out: per-connection write coalescing and the at-least-once fast path (reference twin).

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

``fan_out`` is the per-subscriber loop of a publish: it queues one encoded ``message`` frame to
every target that can take it at once, records the copy in the target's ``inflight`` map as an
``Inflight`` entry and arms its retry timer, and returns the targets it left to the broker's
delivery policy (``fastport.broker.delivery``): offline, paused, queued, full, QoS 0, durable
with a store, or already holding that messageId. Targets are duck-typed ``Subscriber`` objects.

Sans-I/O: the outbox gets a ``write`` callable (a transport's ``write``), the flusher a
``call_soon``-like callable (an event loop's ``call_soon``); nothing here imports asyncio.
``fanout_c.pyx`` is the compiled twin; both have the same names, signatures, results and
exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["OP_BINARY", "OP_TEXT", "Flusher", "Inflight", "Outbox", "fan_out"]

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
        if not isinstance(flusher, Flusher):
            raise TypeError(f"flusher must be a Flusher, not {type(flusher).__name__}")
        self._write = write
        self._flusher = flusher
        # None while empty: an idle connection holds no list.
        self._chunks: list[bytes] | None = None

    def text(self, payload: bytes) -> None:
        """Queue a text frame."""
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
        """Queue a binary frame."""
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
        """Flush all marked outboxes, in the order they were marked."""
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


class Inflight:
    """One sent, unacked copy of a message to one subscriber: the message, its sends so far, its next retry time."""

    __slots__ = ("message", "attempts", "due_ms")

    def __init__(self, message: Any, attempts: int, due_ms: int) -> None:
        self.message = message
        self.attempts = attempts
        self.due_ms = due_ms


def fan_out(
    targets: Mapping[Any, int],
    message: Any,
    publisher: Any,
    due_ms: int,
    window: int,
    durable_aside: bool,
    arm: Callable[[int, Any], int],
) -> tuple[int, list[tuple[Any, int]] | None]:
    """Send ``message.frame`` to every target that can take it now; return (sent, the rest).

    Args:
        targets: subscriber -> subscription QoS (a topic index match).
        message: the published message (``frame`` and ``message_id`` are read), QoS 1.
        publisher: the publishing connection, skipped as a target (None: no one is skipped).
        due_ms: the retry time of every copy sent here.
        window: a subscriber's ``inflight`` may hold at most this many entries.
        durable_aside: leave durable subscribers to the caller (it must store their delivery state).
        arm: ``arm(due_ms, subscriber)`` schedules a retry timer and returns its handle; called
            for a sent-to subscriber whose ``retry_handle`` is None.

    A target takes this path when its subscription QoS is not 0, its ``connection`` is online
    and not ``publisher``, it has no queue, its sink is not paused, its ``inflight`` has room
    and does not hold ``message.message_id`` (and it is not durable when ``durable_aside``).
    Every other target but ``publisher``'s own is returned, in match order, as (subscriber, QoS).
    """
    frame = message.frame
    message_id = message.message_id
    sent = 0
    rest: list[tuple[Any, int]] | None = None
    for subscriber, qos in targets.items():
        connection = subscriber.connection
        if connection is not None:
            if connection is publisher:
                continue
            if qos and not subscriber.queue and not (durable_aside and subscriber.durable):
                sink = connection.sink
                inflight = subscriber.inflight
                if not sink.paused and len(inflight) < window and message_id not in inflight:
                    sink.send(frame)
                    inflight[message_id] = Inflight(message, 0, due_ms)
                    sent += 1
                    if subscriber.retry_handle is None:
                        subscriber.retry_handle = arm(due_ms, subscriber)
                    continue
        if rest is None:
            rest = []
        rest.append((subscriber, qos))
    return sent, rest


def send_now(subscriber: Any, window: int) -> bool:
    """TEMPORARY stand-in (replaced by the _speedups split)."""
    connection = subscriber.connection
    return (
        connection is not None
        and not subscriber.queue
        and not connection.sink.paused
        and len(subscriber.inflight) < window
    )


def track(subscriber: Any, message: Any, attempts: int, due_ms: int, arm: Any) -> Inflight:
    """TEMPORARY stand-in (replaced by the _speedups split)."""
    entry = Inflight(message, attempts, due_ms)
    subscriber.inflight[message.message_id] = entry
    if arm is not None and subscriber.retry_handle is None:
        subscriber.retry_handle = arm(due_ms, subscriber)
    return entry

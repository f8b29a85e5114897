"""TimerWheel: a hierarchical timing wheel for the broker's deadlines (reference twin).

Rules:

- Sans-I/O: there is no clock inside. Times are integer milliseconds passed in by the caller
  (``now_ms``, ``deadline_ms``); the wheel counts integer ticks of ``tick_ms``.
- ``advance(now_ms)`` returns every item whose deadline is ``<= now_ms``, ordered by
  (deadline, schedule order). Time going backwards counts as no time passing. An item scheduled
  at or before the last advance time fires at the next advance.
- A deadline more than ``MAX_DELAY_MS`` (30 days) after the last advance time is refused with
  ``ValueError``. Times must lie within ``±2**61`` ms, else ``OverflowError``; they must be ints
  (anything with ``__index__``), else ``TypeError``.
- Handles are ints 1, 2, 3, ... in schedule order, never reused within one wheel. ``cancel`` is
  O(1) and removes the item at once (no lazy deletion), so every bucket holds live timers only.

Layout: six levels of 64 slots. A timer for tick ``p`` goes in the lowest level ``L`` whose
``64**(L+1)``-tick block also holds the current tick ``c``, in slot ``(p >> 6L) & 63``; the top
level also takes what lies beyond its block, which is safe because a 30-day delay spans far less
than one turn of it. So every timer at level ``L`` sits in a slot after ``c``'s own slot there,
and level 0 holds only the current 64-tick block. When ``c`` reaches the start of a level-``L``
slot, that slot cascades into the levels below. A bitmap per level marks non-empty slots, so
``advance`` jumps from one non-empty slot or cascade to the next and a gap of days costs no more
than a gap of a tick. A deadline ``d`` belongs to tick ``d // tick_ms``; the last tick reached
(``c``) may keep timers due later within that tick when ``tick_ms > 1``.

``timerwheel_c.pyx`` is the compiled twin of this module; both have the same names, signatures,
results, ordering and exceptions.
"""

from __future__ import annotations

from operator import attrgetter, index
from typing import Final

__all__ = ["MAX_DELAY_MS", "TimerWheel"]

MAX_DELAY_MS: Final = 2_592_000_000
"""The longest delay ``schedule`` accepts past the last advance time: 30 days."""

_TIME_LIMIT: Final = 1 << 61
_BITS: Final = 6
_SLOTS: Final = 1 << _BITS
_MASK: Final = _SLOTS - 1
_LEVELS: Final = 6
_TOP: Final = _LEVELS - 1
_TOP_SPAN_BITS: Final = _BITS * _LEVELS


class _Timer:
    """A pending item and where it sits in the wheel."""

    __slots__ = ("deadline", "handle", "item", "level", "slot", "tick")

    def __init__(self, deadline: int, tick: int, handle: int, item: object) -> None:
        self.deadline = deadline
        self.tick = tick
        self.handle = handle
        self.item = item
        self.level = 0
        self.slot = 0


_ORDER: Final = attrgetter("deadline", "handle")


def _time(value: int) -> int:
    """Return value as an int in the wheel's time range, or raise TypeError or OverflowError."""
    value = index(value)
    if not -_TIME_LIMIT <= value <= _TIME_LIMIT:
        raise OverflowError(f"time out of range: {value}")
    return value


def _lowest_bit(bits: int) -> int:
    """Return the index of the lowest set bit of a non-zero int."""
    return (bits & -bits).bit_length() - 1


class TimerWheel:
    """A hierarchical timing wheel: O(1) schedule and cancel, advance in time order.

    The broker's scheduler (``fastport.broker.scheduler``) keeps one per loop and arms a single
    loop timer for ``next_deadline()``. Items are timed objects, one timer each: a subscriber's
    retry timer (due with its first inflight entry, re-armed after each retry round, so an ack
    cancels nothing), a durable subscriber's TTL, a session's expiry, a connection's init
    deadline. A timer is cancelled when what it waits for no longer applies (the init succeeded,
    the durable client resumed, the subscriber was released).
    """

    __slots__ = ("_buckets", "_next_handle", "_now", "_occupied", "_tick", "_tick_ms", "_timers")

    def __init__(self, now_ms: int, tick_ms: int = 1) -> None:
        """Create an empty wheel.

        Args:
            now_ms: The origin time; it counts as the last advance time until the first advance.
            tick_ms: The tick length in ms, from 1 to ``MAX_DELAY_MS``.

        Raises:
            ValueError: If tick_ms is out of range.
            OverflowError: If now_ms is out of range.
        """
        tick_ms = index(tick_ms)
        if not 1 <= tick_ms <= MAX_DELAY_MS:
            raise ValueError(f"tick_ms out of range: {tick_ms} not in [1, {MAX_DELAY_MS}]")
        now_ms = _time(now_ms)
        self._tick_ms = tick_ms
        self._now = now_ms
        self._tick = now_ms // tick_ms
        self._next_handle = 1
        self._timers: dict[int, _Timer] = {}
        self._buckets: list[list[dict[int, _Timer]]] = [[{} for _ in range(_SLOTS)] for _ in range(_LEVELS)]
        self._occupied = [0] * _LEVELS

    def schedule(self, deadline_ms: int, item: object) -> int:
        """Schedule an item to be returned by the first advance to deadline_ms or later.

        Args:
            deadline_ms: The absolute deadline in ms; one at or before the last advance time fires
                at the next advance.
            item: Any object; the wheel keeps a reference until it fires or is cancelled.

        Returns:
            A handle for ``cancel``, unique within this wheel.

        Raises:
            ValueError: If deadline_ms is more than ``MAX_DELAY_MS`` after the last advance time.
            OverflowError: If deadline_ms is out of range.
        """
        deadline_ms = _time(deadline_ms)
        delay = deadline_ms - self._now
        if delay > MAX_DELAY_MS:
            raise ValueError(f"delay too long: {delay} ms > {MAX_DELAY_MS} ms")
        handle = self._next_handle
        self._next_handle = handle + 1
        timer = _Timer(deadline_ms, deadline_ms // self._tick_ms, handle, item)
        self._timers[handle] = timer
        self._place(timer)
        return handle

    def cancel(self, handle: int) -> bool:
        """Cancel a scheduled item in O(1).

        Args:
            handle: A handle returned by ``schedule``.

        Returns:
            True if the item was pending, False if the handle is unknown, fired or cancelled.
        """
        timer = self._timers.pop(handle, None)
        if timer is None:
            return False
        bucket = self._buckets[timer.level][timer.slot]
        del bucket[handle]
        if not bucket:
            self._occupied[timer.level] &= ~(1 << timer.slot)
        return True

    def advance(self, now_ms: int) -> list[object]:
        """Move the wheel's time forward and collect what is due.

        Args:
            now_ms: The current time; an earlier time than the last advance counts as no time
                passing.

        Returns:
            The items whose deadline is ``<= now_ms``, ordered by (deadline, schedule order).

        Raises:
            OverflowError: If now_ms is out of range.
        """
        now_ms = _time(now_ms)
        if now_ms < self._now:
            now_ms = self._now
        self._now = now_ms
        target = now_ms // self._tick_ms
        fired: list[object] = []
        tick = self._tick
        while True:
            if (self._occupied[0] >> (tick & _MASK)) & 1:
                self._fire(tick, tick < target, now_ms, fired)
            if tick >= target:
                break
            nxt = self._next_event(tick)
            if nxt is None or nxt > target:
                # Nothing lies in (tick, target]: jump there. No slot on the way needs a cascade.
                tick = target
                break
            tick = nxt
            self._tick = tick
            self._cascade(tick)
        self._tick = tick
        return fired

    def next_deadline(self) -> int | None:
        """Tell when to advance next.

        Returns:
            None if nothing is pending. Otherwise a time after the last advance time and no later
            than the earliest pending deadline (or the next ms, if an item is already overdue).
            It is exact when the earliest item sits in the finest level; otherwise it is the start
            of the slot to cascade, and advancing to it moves that slot's items a level down.
        """
        if not self._timers:
            return None
        tick = self._tick
        bits = self._occupied[0] >> (tick & _MASK)
        if bits:
            bucket = self._buckets[0][(tick & _MASK) + _lowest_bit(bits)]
            earliest = min(timer.deadline for timer in bucket.values())
            return max(earliest, self._now + 1)
        nxt = self._next_event(tick)
        assert nxt is not None  # a pending timer sits in some level
        return nxt * self._tick_ms

    def __len__(self) -> int:
        """Return the number of pending items (not fired, not cancelled)."""
        return len(self._timers)

    def _place(self, timer: _Timer) -> None:
        """Put a timer in its slot relative to the current tick."""
        tick = self._tick
        due = timer.tick
        if due <= tick:
            level = 0
            slot = tick & _MASK
        else:
            # The highest bit where due and tick differ picks the level; when their signs differ
            # they differ in every high bit, which only the top level can hold.
            diff = due ^ tick
            level = _TOP if diff < 0 else min((diff.bit_length() - 1) // _BITS, _TOP)
            slot = (due >> (_BITS * level)) & _MASK
        timer.level = level
        timer.slot = slot
        self._buckets[level][slot][timer.handle] = timer
        self._occupied[level] |= 1 << slot

    def _fire(self, tick: int, whole: bool, now_ms: int, fired: list[object]) -> None:
        """Move the due timers of the current tick's level-0 slot into fired, in order."""
        slot = tick & _MASK
        bucket = self._buckets[0][slot]
        if whole:
            due = list(bucket.values())
            bucket.clear()
        else:
            due = [timer for timer in bucket.values() if timer.deadline <= now_ms]
            for timer in due:
                del bucket[timer.handle]
        if not bucket:
            self._occupied[0] &= ~(1 << slot)
        # Cascades append older handles after newer ones, and one tick spans several ms.
        due.sort(key=_ORDER)
        timers = self._timers
        for timer in due:
            del timers[timer.handle]
            fired.append(timer.item)

    def _cascade(self, tick: int) -> None:
        """Redistribute the slots that start at tick into the levels below them."""
        for level in range(_TOP, 0, -1):
            shift = _BITS * level
            if tick & ((1 << shift) - 1):
                continue
            slot = (tick >> shift) & _MASK
            if not (self._occupied[level] >> slot) & 1:
                continue
            bucket = self._buckets[level][slot]
            moving = list(bucket.values())
            bucket.clear()
            self._occupied[level] &= ~(1 << slot)
            for timer in moving:
                self._place(timer)

    def _next_event(self, tick: int) -> int | None:
        """Return the first tick after tick with a level-0 slot to fire or a slot to cascade."""
        bits = self._occupied[0] >> ((tick & _MASK) + 1)
        if bits:
            return tick + 1 + _lowest_bit(bits)
        for level in range(1, _LEVELS):
            shift = _BITS * level
            current = (tick >> shift) & _MASK
            occupied = self._occupied[level]
            bits = occupied >> (current + 1)
            block = tick & -(1 << (shift + _BITS))
            if bits:
                return block | ((current + 1 + _lowest_bit(bits)) << shift)
            if level == _TOP and occupied:
                # The top level wraps: these slots start in its next turn.
                return (block + (1 << _TOP_SPAN_BITS)) | (_lowest_bit(occupied) << shift)
        return None

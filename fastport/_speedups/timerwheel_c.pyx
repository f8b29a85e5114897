# cython: language_level=3, embedsignature=True, annotation_typing=False
"""TimerWheel, compiled twin of ``fastport._speedups.timerwheel_py``.

Same rules, layout, names, signatures, results, ordering and exceptions as the reference twin,
whose module and method docstrings are the documentation. Here times and ticks are ``int64_t``,
the per-level occupancy bitmaps are a C array of ``uint64_t`` searched with count-trailing-zeros,
and timers are ``cdef`` objects; the buckets stay dicts keyed by handle so cancel is O(1).
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static __inline int fastport_ctz64(unsigned __int64 x) {
        unsigned long i; _BitScanForward64(&i, x); return (int)i;
    }
    static __inline int fastport_msb64(unsigned __int64 x) {
        unsigned long i; _BitScanReverse64(&i, x); return (int)i;
    }
    #else
    static inline int fastport_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int fastport_msb64(unsigned long long x) { return 63 - __builtin_clzll(x); }
    #endif
    """
    # Both are undefined for 0; callers pass non-zero words only.
    int fastport_ctz64(uint64_t x) nogil
    int fastport_msb64(uint64_t x) nogil

__all__ = ["MAX_DELAY_MS", "TimerWheel"]

MAX_DELAY_MS = 2_592_000_000

cdef int64_t _MAX_DELAY_MS = MAX_DELAY_MS
cdef int64_t _TIME_LIMIT = (<int64_t>1) << 61
cdef enum:
    _BITS = 6
    _SLOTS = 64
    _MASK = 63
    _LEVELS = 6
    _TOP = 5
    _TOP_SPAN_BITS = 36


@cython.final
@cython.freelist(256)
cdef class _Timer:
    cdef int64_t deadline
    cdef int64_t tick
    cdef int64_t seq
    cdef object handle
    cdef object item
    cdef int level
    cdef int slot


def _order(_Timer timer):
    return (timer.deadline, timer.seq)


cdef int64_t _time(object value) except? -1:
    cdef int overflow = 0
    cdef int64_t result
    value = PyNumber_Index(value)
    result = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or result < -_TIME_LIMIT or result > _TIME_LIMIT:
        raise OverflowError(f"time out of range: {value}")
    return result


@cython.final
cdef class TimerWheel:
    """A hierarchical timing wheel: O(1) schedule and cancel, advance in time order."""

    cdef int64_t _tick_ms
    cdef int64_t _now
    cdef int64_t _tick
    cdef int64_t _next_handle
    cdef dict _timers
    cdef list _buckets
    cdef uint64_t _occupied[_LEVELS]

    def __init__(self, now_ms: int, tick_ms: int = 1) -> None:
        cdef int level
        tick_ms = PyNumber_Index(tick_ms)
        if not 1 <= tick_ms <= MAX_DELAY_MS:
            raise ValueError(f"tick_ms out of range: {tick_ms} not in [1, {MAX_DELAY_MS}]")
        self._now = _time(now_ms)
        self._tick_ms = tick_ms
        self._tick = self._now // self._tick_ms
        self._next_handle = 1
        self._timers = {}
        self._buckets = [{} for _ in range(_LEVELS * _SLOTS)]
        for level in range(_LEVELS):
            self._occupied[level] = 0

    def schedule(self, deadline_ms: int, item: object) -> int:
        """Schedule item for the first advance to deadline_ms or later; return its handle."""
        cdef int64_t deadline = _time(deadline_ms)
        cdef int64_t delay = deadline - self._now
        cdef _Timer timer
        if delay > _MAX_DELAY_MS:
            raise ValueError(f"delay too long: {delay} ms > {MAX_DELAY_MS} ms")
        timer = _Timer.__new__(_Timer)
        timer.deadline = deadline
        timer.tick = deadline // self._tick_ms
        timer.seq = self._next_handle
        timer.handle = self._next_handle
        timer.item = item
        self._next_handle += 1
        self._timers[timer.handle] = timer
        self._place(timer)
        return timer.handle

    def cancel(self, handle: int) -> bool:
        """Cancel a scheduled item in O(1); False if unknown, fired or cancelled."""
        cdef object found = self._timers.pop(handle, None)
        cdef _Timer timer
        cdef dict bucket
        if found is None:
            return False
        timer = <_Timer>found
        bucket = <dict>self._buckets[timer.level * _SLOTS + timer.slot]
        del bucket[timer.handle]
        if not bucket:
            self._occupied[timer.level] &= ~((<uint64_t>1) << timer.slot)
        return True

    def advance(self, now_ms: int) -> list[object]:
        """Move time forward; return the items due by now_ms in (deadline, schedule) order."""
        cdef int64_t now = _time(now_ms)
        cdef int64_t target, tick, nxt
        cdef list fired = []
        if now < self._now:
            now = self._now
        self._now = now
        target = now // self._tick_ms
        tick = self._tick
        while True:
            if (self._occupied[0] >> (tick & _MASK)) & 1:
                self._fire(tick, tick < target, now, fired)
            if tick >= target:
                break
            if not self._next_event(tick, &nxt) or nxt > target:
                # Nothing lies in (tick, target]: jump there. No slot on the way needs a cascade.
                tick = target
                break
            tick = nxt
            self._tick = tick
            self._cascade(tick)
        self._tick = tick
        return fired

    def next_deadline(self) -> int | None:
        """None if nothing is pending, else a time to advance to next (see the Python twin)."""
        cdef int64_t tick = self._tick
        cdef uint64_t bits
        cdef int64_t earliest
        cdef _Timer timer
        cdef dict bucket
        if not self._timers:
            return None
        bits = self._occupied[0] >> (tick & _MASK)
        if bits:
            bucket = <dict>self._buckets[(tick & _MASK) + fastport_ctz64(bits)]
            earliest = _TIME_LIMIT
            for found in bucket.values():
                timer = <_Timer>found
                if timer.deadline < earliest:
                    earliest = timer.deadline
            return max(earliest, self._now + 1)
        # A pending timer sits in some level, so there is a next event.
        self._next_event(tick, &earliest)
        return earliest * self._tick_ms

    def __len__(self) -> int:
        """Return the number of pending items (not fired, not cancelled)."""
        return len(self._timers)

    cdef int _place(self, _Timer timer) except -1:
        cdef int64_t tick = self._tick
        cdef int level, slot
        if timer.tick <= tick:
            level = 0
            slot = tick & _MASK
        else:
            # As unsigned, a sign difference sets bit 63, which lands in the top level.
            level = fastport_msb64(<uint64_t>(timer.tick ^ tick)) // _BITS
            if level > _TOP:
                level = _TOP
            slot = (timer.tick >> (_BITS * level)) & _MASK
        timer.level = level
        timer.slot = slot
        (<dict>self._buckets[level * _SLOTS + slot])[timer.handle] = timer
        self._occupied[level] |= (<uint64_t>1) << slot
        return 0

    cdef int _fire(self, int64_t tick, bint whole, int64_t now, list fired) except -1:
        cdef int slot = tick & _MASK
        cdef dict bucket = <dict>self._buckets[slot]
        cdef list due
        cdef _Timer timer, previous = None
        cdef bint ordered = True
        if whole:
            due = list(bucket.values())
            bucket.clear()
        else:
            due = [found for found in bucket.values() if (<_Timer>found).deadline <= now]
            for found in due:
                del bucket[(<_Timer>found).handle]
        if not bucket:
            self._occupied[0] &= ~((<uint64_t>1) << slot)
        for found in due:
            timer = <_Timer>found
            if previous is not None and (
                timer.deadline < previous.deadline
                or (timer.deadline == previous.deadline and timer.seq < previous.seq)
            ):
                ordered = False
                break
            previous = timer
        if not ordered:
            due.sort(key=_order)
        for found in due:
            timer = <_Timer>found
            del self._timers[timer.handle]
            fired.append(timer.item)
        return 0

    cdef int _cascade(self, int64_t tick) except -1:
        cdef int level, slot, shift
        cdef dict bucket
        cdef list moving
        for level in range(_TOP, 0, -1):
            shift = _BITS * level
            if tick & (((<int64_t>1) << shift) - 1):
                continue
            slot = (tick >> shift) & _MASK
            if not (self._occupied[level] >> slot) & 1:
                continue
            bucket = <dict>self._buckets[level * _SLOTS + slot]
            moving = list(bucket.values())
            bucket.clear()
            self._occupied[level] &= ~((<uint64_t>1) << slot)
            for found in moving:
                self._place(<_Timer>found)
        return 0

    cdef bint _next_event(self, int64_t tick, int64_t *event) noexcept:
        # Store in event the first tick after tick with a level-0 slot to fire or a slot to
        # cascade; False if the wheel is empty.
        cdef uint64_t bits, occupied
        cdef int level, shift, current
        cdef int64_t block
        bits = self._occupied[0] >> ((tick & _MASK) + 1) if (tick & _MASK) < _MASK else 0
        if bits:
            event[0] = tick + 1 + fastport_ctz64(bits)
            return True
        for level in range(1, _LEVELS):
            shift = _BITS * level
            current = (tick >> shift) & _MASK
            occupied = self._occupied[level]
            bits = occupied >> (current + 1) if current < _MASK else 0
            block = tick & -((<int64_t>1) << (shift + _BITS))
            if bits:
                event[0] = block | ((<int64_t>(current + 1 + fastport_ctz64(bits))) << shift)
                return True
            if level == _TOP and occupied:
                # The top level wraps: these slots start in its next turn.
                event[0] = (block + ((<int64_t>1) << _TOP_SPAN_BITS)) | (
                    (<int64_t>fastport_ctz64(occupied)) << shift
                )
                return True
        return False

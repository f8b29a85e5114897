"""One loop timer driving the ``TimerWheel`` for every retry and expiry of the broker.

``call_at(deadline_ms, callback, arg)`` runs ``callback(arg, now_ms)`` at the deadline: the one
timer API of the broker (retries, durable TTLs, init deadlines, session expiry). The scheduler
keeps at most one ``loop.call_at`` armed, for the wheel's next deadline; scheduling a later call
costs no loop call at all. Time is the loop's monotonic clock in integer milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from fastport._speedups import MAX_DELAY_MS, TimerWheel

logger = logging.getLogger("fastport.broker")

T = TypeVar("T")


class Scheduler:
    """Schedules calls on one ``TimerWheel`` and one loop timer."""

    __slots__ = ("_loop", "_wheel", "_handle", "_armed_ms", "clock")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: The loop's clock in seconds: ``now_ms()`` is ``int(clock() * 1000)``, for hot paths to inline.
        self.clock = loop.time
        self._wheel = TimerWheel(self.now_ms())
        self._handle: asyncio.TimerHandle | None = None
        self._armed_ms: int | None = None

    def now_ms(self) -> int:
        """The loop's monotonic time in milliseconds."""
        return int(self.clock() * 1000)

    def __len__(self) -> int:
        return len(self._wheel)

    def call_at(self, deadline_ms: int, callback: Callable[[T, int], None], arg: T) -> int:
        """Call ``callback(arg, now_ms)`` at ``deadline_ms`` (capped at 15 days; callers re-arm beyond).

        The callback may schedule again; an exception it raises is logged, never propagated.

        Returns:
            A handle for ``cancel``.
        """
        # Half the horizon: the wheel measures it from its last advance, which may lag.
        deadline_ms = min(deadline_ms, self.now_ms() + MAX_DELAY_MS // 2)
        handle = self._wheel.schedule(deadline_ms, (callback, arg))
        if self._armed_ms is None or deadline_ms < self._armed_ms:
            self._arm(deadline_ms)
        return handle

    def cancel(self, handle: int) -> None:
        """Cancel a scheduled call (a no-op if it already ran)."""
        self._wheel.cancel(handle)

    def close(self) -> None:
        """Disarm the loop timer; pending items never run."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_ms = None

    def _arm(self, deadline_ms: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # Never arm in the past: uvloop's millisecond timers may fire a little early.
        deadline_ms = max(deadline_ms, self.now_ms() + 1)
        self._armed_ms = deadline_ms
        self._handle = self._loop.call_at(deadline_ms / 1000, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_ms = None
        now = self.now_ms()
        for callback, arg in cast("list[tuple[Callable[[Any, int], None], Any]]", self._wheel.advance(now)):
            try:
                callback(arg, now)
            except Exception:
                logger.exception("timer callback failed")
        following = self._wheel.next_deadline()
        if following is not None and (self._armed_ms is None or following < self._armed_ms):
            self._arm(following)

"""Idle detection for every WebSocket of the server with one loop timer.

picows can ping idle peers itself, but with a task per connection (about 1.8 KiB each). The
sweeper instead looks at every live connection every ``interval``: a connection that
received nothing for ``idle_timeout_s`` is pinged; one that then stays silent for
``ping_timeout_s`` more is closed with 1001 and dropped. Any frame received (a pong
included) counts as life; marking it costs the listener one attribute store per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Protocol


class Watched(Protocol):
    """What the sweeper needs of a connection."""

    heard: bool
    idle_since: float
    ping_sent_at: float | None

    def send_ping(self) -> None:
        """Send a ping frame."""

    def reap(self) -> None:
        """Close a peer that did not answer (1001) without waiting for it."""


class IdleSweeper:
    """Pings idle connections and reaps the ones that do not answer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, live: Collection[Watched], idle_timeout_s: float, ping_timeout_s: float
    ) -> None:
        self._loop = loop
        self._live = live
        self._idle_timeout_s = idle_timeout_s
        self._ping_timeout_s = ping_timeout_s
        self.interval_s = max(0.05, min(idle_timeout_s, ping_timeout_s) / 2)
        self._handle: asyncio.TimerHandle | None = None
        self.pings = 0
        self.reaped = 0

    def start(self) -> None:
        """Sweep every ``interval_s`` until ``stop``."""
        self._handle = self._loop.call_later(self.interval_s, self._sweep)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        now = self._loop.time()
        for watched in list(self._live):
            if watched.heard:
                watched.heard = False
                watched.idle_since = now
                watched.ping_sent_at = None
            elif watched.ping_sent_at is not None:
                if now - watched.ping_sent_at >= self._ping_timeout_s:
                    self.reaped += 1
                    watched.reap()
            elif now - watched.idle_since >= self._idle_timeout_s:
                watched.ping_sent_at = now
                self.pings += 1
                watched.send_ping()
        self._handle = self._loop.call_later(self.interval_s, self._sweep)

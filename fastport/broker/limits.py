"""Per-connection and per-session limits: their settings, a token bucket and the authentication throttle.

Every limit answers with its own error code (the connection is kept) or, for repeated
abuse, its own close code, and is counted by the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastport.protocol.topics import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LENGTH

#: Clients tracked by the authentication throttle, at most (oldest forgotten first).
MAX_THROTTLE_ENTRIES: Final = 100_000


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """The configurable limits of one broker.

    Attributes:
        max_subscriptions_per_connection: filters one client may hold.
        max_connections_per_session: live connections of one session.
        publish_rate_per_s: sustained publishes per second per connection (token bucket).
        publish_burst: bucket size: publishes allowed at once.
        publish_violations_before_close: rate-limited publishes before the connection is closed (4005).
        auth_failures_before_delay: failed ``init``s (per client address and per session) answered at once.
        auth_failures_before_cutoff: failed ``init``s after which ``init`` is refused outright and the
            connection closed (4006), until the window passes.
        auth_failure_window_s: how long a failed ``init`` is remembered.
        max_topic_length: characters in a topic or filter.
        max_topic_depth: levels in a topic or filter.
        outbound_buffer_limit: bytes queued in a connection's transport before it counts as a slow consumer.
        slow_consumer_grace_s: how long a connection may stay over that limit before it is closed (4007).
        init_timeout_s: time from the upgrade to a successful ``init``; later the connection is closed (4003).
    """

    max_subscriptions_per_connection: int = 1000
    max_connections_per_session: int = 10_000
    publish_rate_per_s: float = 50_000.0
    publish_burst: int = 100_000
    publish_violations_before_close: int = 1000
    auth_failures_before_delay: int = 5
    auth_failures_before_cutoff: int = 20
    auth_failure_window_s: float = 60.0
    max_topic_length: int = DEFAULT_MAX_LENGTH
    max_topic_depth: int = DEFAULT_MAX_DEPTH
    outbound_buffer_limit: int = 4 << 20
    slow_consumer_grace_s: float = 10.0
    init_timeout_s: float = 10.0


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``take`` spends one."""

    __slots__ = ("rate", "burst", "tokens", "updated_s", "violations")

    def __init__(self, rate: float, burst: int, now_s: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated_s = now_s
        self.violations = 0

    def take(self, now_s: float) -> bool:
        """Spend a token; False (and one more violation) if there is none."""
        tokens = self.tokens + (now_s - self.updated_s) * self.rate
        self.updated_s = now_s
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            self.violations += 1
            return False
        self.tokens = tokens - 1.0
        return True


class AuthThrottle:
    """Counts failed ``init``s per key (a client address, a session name) over a sliding window.

    Up to ``free`` failures cost nothing; each further one doubles a delay (100 ms, 200 ms,
    ... capped at 5 s) applied before the next password check; at ``cutoff`` the key is
    refused outright until its oldest failures leave the window.
    """

    __slots__ = ("_free", "_cutoff", "_window_s", "_failures")

    def __init__(self, free: int, cutoff: int, window_s: float) -> None:
        self._free = free
        self._cutoff = cutoff
        self._window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now_s: float) -> list[float]:
        times = self._failures.get(key)
        if not times:
            return []
        horizon = now_s - self._window_s
        while times and times[0] <= horizon:
            times.pop(0)
        if not times:
            del self._failures[key]
        return times

    def delay_s(self, keys: tuple[str, ...], now_s: float) -> float | None:
        """Seconds to wait before checking a password for ``keys``; None if they are cut off."""
        count = max(len(self._recent(key, now_s)) for key in keys)
        if count >= self._cutoff:
            return None
        if count < self._free:
            return 0.0
        return min(0.1 * 2.0 ** (count - self._free), 5.0)

    def failed(self, keys: tuple[str, ...], now_s: float) -> None:
        """Record one failed ``init`` for each of ``keys``."""
        for key in keys:
            times = self._failures.pop(key, None) or []
            times.append(now_s)
            del times[: max(0, len(times) - self._cutoff)]
            self._failures[key] = times
        while len(self._failures) > MAX_THROTTLE_ENTRIES:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, key: str) -> None:
        """Forget the failures of ``key`` (a client address that just authenticated; never a session,
        or a legitimate login would reset an attacker's count on it)."""
        self._failures.pop(key, None)

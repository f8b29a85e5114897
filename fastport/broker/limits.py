"""Per-connection limits at run time: the publish rate, its token bucket, the authentication throttle.

Their settings are ``fastport.config.BrokerLimits``.

Every limit answers with its own error code (the connection is kept) or, for repeated
abuse, its own close code, and is counted by the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fastport.errors import CloseCode, ErrorCode, LimitExceeded

if TYPE_CHECKING:
    from fastport.broker.connection import Connection
    from fastport.broker.stats import BrokerCounters
    from fastport.config import BrokerLimits

_RATE_ABUSE: Final = LimitExceeded(
    "publish rate limit exceeded repeatedly", code=ErrorCode.RATE_LIMITED, close=CloseCode.RATE_LIMIT_ABUSE
)

#: Clients tracked by the authentication throttle, at most (oldest forgotten first).
MAX_THROTTLE_ENTRIES: Final = 100_000


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
    """Counts failed ``init``s over a sliding window, per (client address, session name) pair, per
    session name and per client address.

    The pair and the session name are the brute-force keys: up to ``free`` failures cost nothing;
    each further one doubles a delay (100 ms, 200 ms, ... capped at 5 s) applied before the next
    password check; at ``cutoff`` the key is refused outright until its oldest failures leave the
    window. The client address alone only has a ceiling, ``address_cutoff`` (much higher than
    ``cutoff``, and no delay): one tenant failing on its own session never throttles another
    session's clients behind the same address, while an address spraying many sessions is still
    stopped.
    """

    __slots__ = ("_free", "_cutoff", "_address_cutoff", "_window_s", "_failures")

    def __init__(self, free: int, cutoff: int, window_s: float, address_cutoff: int) -> None:
        self._free = free
        self._cutoff = cutoff
        self._address_cutoff = address_cutoff
        self._window_s = window_s
        self._failures: dict[tuple[str, ...], list[float]] = {}

    def _recent(self, key: tuple[str, ...], now_s: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        horizon = now_s - self._window_s
        stale = 0
        while stale < len(times) and times[stale] <= horizon:
            stale += 1
        if stale:
            del times[:stale]
        if not times:
            del self._failures[key]
        return len(times)

    @staticmethod
    def _keys(address: str, session: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return ("pair", address, session), ("session", session), ("address", address)

    def delay_s(self, address: str, session: str, now_s: float) -> float | None:
        """Seconds to wait before checking a password of ``session`` from ``address``; None: cut off."""
        pair, name, alone = self._keys(address, session)
        if self._recent(alone, now_s) >= self._address_cutoff:
            return None
        count = max(self._recent(pair, now_s), self._recent(name, now_s))
        if count >= self._cutoff:
            return None
        if count < self._free:
            return 0.0
        return min(0.1 * 2.0 ** (count - self._free), 5.0)

    def failed(self, address: str, session: str, now_s: float) -> None:
        """Record one failed ``init`` of ``session`` from ``address``."""
        pair, name, alone = self._keys(address, session)
        for key, keep in ((pair, self._cutoff), (name, self._cutoff), (alone, self._address_cutoff)):
            times = self._failures.pop(key, None) or []
            times.append(now_s)
            del times[: max(0, len(times) - keep)]
            self._failures[key] = times
        while len(self._failures) > MAX_THROTTLE_ENTRIES:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str, session: str) -> None:
        """Forget the failures of the pair that just authenticated. Never those of the session name
        (a legitimate login would reset an attacker's count on it) nor of the address alone (a
        tenant logging in to its own session would reset its count of failures on others)."""
        self._failures.pop(self._keys(address, session)[0], None)


class PublishRate:
    """The per-connection publish rate limit: a token bucket per connection, answered or closed when empty.

    Args:
        limits: the broker's limits (rate, burst, violations before close).
        counters: what is counted for ``/metrics``.
    """

    __slots__ = ("_counters", "_limits")

    def __init__(self, limits: BrokerLimits, counters: BrokerCounters) -> None:
        self._limits = limits
        self._counters = counters

    def allow(self, conn: Connection, now_s: float) -> bool:
        """Spend a publish token of ``conn``; without one, refuse the publish (error 4005) or, after
        ``publish_violations_before_close`` refusals, close the connection (4005)."""
        limits = self._limits
        bucket = conn.bucket
        if bucket is None:
            bucket = conn.bucket = TokenBucket(limits.publish_rate_per_s, limits.publish_burst, now_s)
        if bucket.take(now_s):
            return True
        self._counters.rate_limited += 1
        if bucket.violations >= limits.publish_violations_before_close:
            self._counters.rate_abuse_closes += 1
            conn.close_for(_RATE_ABUSE)
        else:
            error = LimitExceeded(
                f"publish rate limit exceeded: {limits.publish_rate_per_s:g}/s", code=ErrorCode.RATE_LIMITED
            )
            conn.reject(error, "publish_response")
        return False

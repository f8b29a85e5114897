"""A fixed-bucket latency histogram, cheap enough for the delivery hot path.

Observations are integer milliseconds (the scheduler's clock). ``observe_many_immediate``
records a batch of same-iteration deliveries with one addition.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

#: Upper bounds of the buckets, in milliseconds (Prometheus ``le``; the last bucket is +Inf).
BOUNDS_MS: Final = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000)


class LatencyHistogram:
    """Counts of observations per bucket, their sum and their number."""

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.sum_ms = 0

    def observe(self, value_ms: int) -> None:
        """Record one latency."""
        self.counts[bisect_left(BOUNDS_MS, value_ms)] += 1
        self.sum_ms += value_ms

    def observe_many_immediate(self, how_many: int) -> None:
        """Record ``how_many`` latencies of zero milliseconds (sent in the loop iteration they arrived in)."""
        self.counts[0] += how_many

    def cumulative(self) -> list[tuple[str, int]]:
        """(``le`` in seconds, cumulative count) pairs, ending with ``+Inf``."""
        buckets = []
        running = 0
        for bound, count in zip((*BOUNDS_MS, None), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound is None else f"{bound / 1000:g}", running))
        return buckets

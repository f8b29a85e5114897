"""Reconnect policy: exponential backoff with a cap and jitter, and an optional attempt limit."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How the client waits between reconnect attempts.

    Attempt ``n`` (1, 2, ...) waits ``min(max_delay_s, initial_delay_s * multiplier ** (n - 1))``
    scaled by a random factor in ``[1 - jitter, 1 + jitter]``, and never more than ``max_delay_s``.

    Attributes:
        initial_delay_s: the wait before the first reconnect attempt.
        max_delay_s: the cap on any wait.
        multiplier: the growth factor between attempts.
        jitter: the spread of the random factor, from 0 (none) to 1.
        max_attempts: attempts after a connection is lost before giving up; None tries forever,
            0 never reconnects.
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 or None")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the wait before reconnect attempt ``attempt`` (1-based)."""
        # Cap the exponent's result before it can overflow a float on long outages.
        base = self.initial_delay_s
        for _ in range(attempt - 1):
            base *= self.multiplier
            if base >= self.max_delay_s:
                base = self.max_delay_s
                break
        factor = 1.0 + self.jitter * (2.0 * (rng or random).random() - 1.0)
        return min(self.max_delay_s, base * factor)

    def gives_up_after(self, attempt: int) -> bool:
        """Return True when ``attempt`` reconnect attempts have used up the budget."""
        return self.max_attempts is not None and attempt >= self.max_attempts

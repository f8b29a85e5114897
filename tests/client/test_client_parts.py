"""The client's sans-I/O parts: reconnect backoff, topic filter matching and messageId dedup."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastport.client.backoff import ReconnectPolicy
from fastport.client.seen_ids import SeenIds
from fastport.protocol.topics import filter_matches


def test_backoff_grows_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = ReconnectPolicy(initial_delay_s=0.5, max_delay_s=4.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay_s(10_000) == 4.0  # no float overflow on a long outage


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_backoff_jitter_stays_within_bounds_and_cap(attempt: int, seed: int) -> None:
    policy = ReconnectPolicy(initial_delay_s=0.1, max_delay_s=10.0, jitter=0.3)
    base = min(10.0, 0.1 * 2.0 ** min(attempt - 1, 100))
    delay = policy.delay_s(attempt, random.Random(seed))
    assert base * 0.7 - 1e-9 <= delay <= min(10.0, base * 1.3) + 1e-9


def test_backoff_attempt_budget() -> None:
    assert not ReconnectPolicy().gives_up_after(10**6)
    assert ReconnectPolicy(max_attempts=0).gives_up_after(0)
    limited = ReconnectPolicy(max_attempts=3)
    assert not limited.gives_up_after(2) and limited.gives_up_after(3)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"initial_delay_s": -1}, "initial_delay_s"),
        ({"initial_delay_s": 5, "max_delay_s": 1}, "initial_delay_s <= max_delay_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"max_attempts": -1}, "max_attempts"),
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, float], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/+/c", "a//c", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "x/y", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("+", "a/b", False),
    ],
)
def test_topic_matches_follows_mqtt_rules(topic_filter: str, topic: str, expected: bool) -> None:
    assert filter_matches(topic_filter, topic) is expected


def test_seen_ids_evict_the_least_recently_seen() -> None:
    seen = SeenIds(capacity=3)
    for message_id in "abc":
        seen.add(message_id)
    assert seen.seen("a")  # refreshes a: b is now the oldest
    seen.add("d")
    assert len(seen) == 3
    assert not seen.seen("b") and seen.seen("a") and seen.seen("c") and seen.seen("d")
    with pytest.raises(ValueError, match="capacity"):
        SeenIds(capacity=0)

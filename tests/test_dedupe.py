"""The dedupe window: order, time and capacity bounds, and messageIds accepted again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from fastport.broker.dedupe import DEDUPE_CAPACITY, DedupeWindow
from fastport.broker.message import Message


def message(message_id: str, until_ms: int) -> Message:
    """A stand-in for a broker ``Message``, with the two attributes the window reads."""
    return cast(Message, SimpleNamespace(message_id=message_id, dedupe_until_ms=until_ms))


def test_remembers_until_the_window_ends() -> None:
    window = DedupeWindow()
    first, second = message("a", 100), message("b", 200)
    window.remember(first)
    window.remember(second)
    window.prune(99)
    assert (window.get("a"), window.get("b"), len(window)) == (first, second, 2)
    window.prune(100)
    assert (window.get("a"), window.get("b"), len(window)) == (None, second, 1)
    window.prune(10_000)
    assert len(window) == 0 and window.get("b") is None


def test_pruning_stops_at_the_first_live_entry_in_acceptance_order() -> None:
    window = DedupeWindow()
    window.remember(message("long", 1_000))
    window.remember(message("short", 10))
    window.prune(500)
    # Acceptance order, not deadline order: "short" waits behind "long" (windows share one length per session).
    assert window.get("short") is not None


def test_capacity_evicts_the_oldest() -> None:
    window = DedupeWindow(capacity=3)
    for index in range(5):
        window.prune(0)
        window.remember(message(f"m{index}", 1_000))
    assert len(window) == 3
    assert [window.get(f"m{index}") is not None for index in range(5)] == [False, False, True, True, True]


def test_an_id_accepted_again_moves_to_the_back() -> None:
    window = DedupeWindow()
    old = message("a", 10)
    window.remember(old)
    window.remember(message("b", 50))
    window.prune(20)  # "a" ended
    again = message("a", 100)
    window.remember(again)
    window.prune(60)  # "b" ended; the new "a" lives on
    assert window.get("a") is again and window.get("b") is None and len(window) == 1
    window.prune(100)
    assert len(window) == 0


def test_a_replaced_entry_is_not_evicted_by_its_stale_position() -> None:
    window = DedupeWindow(capacity=2)
    window.remember(message("a", 1_000))
    newer = message("a", 2_000)
    window.remember(newer)  # the same id again: the newer message replaces it, the old position is stale
    window.prune(0)  # as the broker does before each remember: one id, under capacity, nothing to evict
    window.remember(message("b", 1_000))
    assert window.get("a") is newer and len(window) == 2
    window.prune(0)  # at capacity: the oldest live entry (the newer "a") goes, not "b"
    assert window.get("a") is None and window.get("b") is not None


def test_clear_and_default_capacity() -> None:
    window = DedupeWindow()
    assert window.capacity == DEDUPE_CAPACITY
    window.remember(message("a", 10))
    window.clear()
    assert len(window) == 0 and window.get("a") is None

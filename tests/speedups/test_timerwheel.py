"""TimerWheel behaviour, on both twins, against the rules in ``fastport._speedups.timerwheel_py``."""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from speedups.conftest import Twin

    from fastport._speedups.timerwheel_py import TimerWheel

SETTINGS = settings(max_examples=120, deadline=None)
DAY_MS = 86_400_000


def test_max_delay_is_thirty_days(speedups: Twin) -> None:
    assert speedups.MAX_DELAY_MS == 30 * DAY_MS


def test_fires_in_deadline_then_schedule_order(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(1000)
    wheel.schedule(1030, "c")
    wheel.schedule(1010, "a")
    wheel.schedule(1030, "d")
    wheel.schedule(1010, "b")
    assert len(wheel) == 4
    assert wheel.advance(1009) == []
    assert wheel.advance(1010) == ["a", "b"]
    assert wheel.advance(2000) == ["c", "d"]
    assert len(wheel) == 0


def test_ties_keep_schedule_order_across_cascades(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(0)
    wheel.schedule(100_000, "first")  # starts in a high level
    assert wheel.advance(99_990) == []
    wheel.schedule(100_000, "second")  # lands straight in the finest level
    wheel.schedule(99_995, "earlier")
    assert wheel.advance(100_000) == ["earlier", "first", "second"]


def test_handles_are_unique_ints(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(0)
    handles = [wheel.schedule(5, i) for i in range(10)]
    wheel.advance(10)
    handles += [wheel.schedule(20, i) for i in range(10)]
    assert all(type(handle) is int for handle in handles)
    assert len(set(handles)) == 20


def test_cancel(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(0)
    keep = wheel.schedule(50, "keep")
    drop = wheel.schedule(50, "drop")
    far = wheel.schedule(10 * DAY_MS, "far")
    assert wheel.cancel(drop) is True
    assert wheel.cancel(drop) is False
    assert wheel.cancel(far) is True
    assert wheel.cancel(12345) is False
    assert len(wheel) == 1
    assert wheel.advance(20 * DAY_MS) == ["keep"]
    assert wheel.cancel(keep) is False
    assert wheel.next_deadline() is None


def test_past_deadlines_fire_at_next_advance(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(1000)
    wheel.schedule(1000, "now")
    wheel.schedule(5, "long ago")
    wheel.schedule(-(10**9), "before the epoch")
    assert wheel.next_deadline() == 1001
    assert wheel.advance(1000) == ["before the epoch", "long ago", "now"]
    wheel.schedule(999, "late")
    assert wheel.advance(500) == ["late"]


def test_backwards_time_is_no_time(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(1000)
    wheel.schedule(1500, "x")
    assert wheel.advance(1200) == []
    assert wheel.advance(0) == []
    bound = wheel.next_deadline()
    assert bound is not None and 1200 < bound <= 1500
    # The delay limit counts from the latest time seen, not from the backwards one.
    with pytest.raises(ValueError, match="delay too long"):
        wheel.schedule(1200 + speedups.MAX_DELAY_MS + 1, "y")
    assert wheel.advance(1499) == []
    assert wheel.advance(1500) == ["x"]


def test_thirty_day_delay_and_beyond(speedups: Twin) -> None:
    start = 1_700_000_000_000
    wheel = speedups.TimerWheel(start)
    limit = start + speedups.MAX_DELAY_MS
    wheel.schedule(limit, "edge")
    with pytest.raises(ValueError, match=r"^delay too long: 2592000001 ms > 2592000000 ms$"):
        wheel.schedule(limit + 1, "beyond")
    assert len(wheel) == 1
    assert wheel.advance(limit - 1) == []
    assert wheel.advance(limit) == ["edge"]


def test_long_gap_in_one_advance(speedups: Twin) -> None:
    start = 123_456_789
    wheel = speedups.TimerWheel(start)
    deadlines = [start + i * 7_919_993 for i in range(1, 300)]  # spread over about 27 days
    for deadline in deadlines:
        wheel.schedule(deadline, deadline)
    began = time.perf_counter()
    assert wheel.advance(start + 20 * DAY_MS) == [d for d in deadlines if d <= start + 20 * DAY_MS]
    assert wheel.advance(start + 30 * DAY_MS) == [d for d in deadlines if d > start + 20 * DAY_MS]
    assert time.perf_counter() - began < 1.0
    assert wheel.next_deadline() is None


def test_next_deadline(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(0)
    assert wheel.next_deadline() is None
    wheel.schedule(40, "near")
    assert wheel.next_deadline() == 40  # finest level: exact
    wheel.cancel(1)
    assert wheel.next_deadline() is None
    wheel.schedule(DAY_MS + 17, "far")
    bound = wheel.next_deadline()
    assert bound is not None and 0 < bound <= DAY_MS + 17
    steps = 0
    while (bound := wheel.next_deadline()) is not None:
        assert wheel.advance(bound) in ([], ["far"])
        steps += 1
    assert steps <= 6


def test_coarse_ticks_stay_exact(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(3, tick_ms=10)
    wheel.schedule(15, "fifteen")
    wheel.schedule(18, "eighteen")
    wheel.schedule(11, "eleven")
    assert wheel.next_deadline() == 11
    assert wheel.advance(14) == ["eleven"]
    assert wheel.next_deadline() == 15
    assert wheel.advance(15) == ["fifteen"]
    assert wheel.advance(19) == ["eighteen"]


def test_negative_times_and_zero_crossing(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(-70)
    for deadline in (-65, -1, 0, 1, 64, 5000):
        wheel.schedule(deadline, deadline)
    assert wheel.advance(-2) == [-65]
    assert wheel.advance(0) == [-1, 0]
    assert wheel.advance(10_000) == [1, 64, 5000]


def test_argument_checks(speedups: Twin) -> None:
    with pytest.raises(ValueError, match=r"^tick_ms out of range: 0 not in \[1, 2592000000\]$"):
        speedups.TimerWheel(0, 0)
    with pytest.raises(TypeError):
        speedups.TimerWheel(0, 1.0)  # type: ignore[arg-type]  # a float tick, to check the TypeError
    with pytest.raises(OverflowError, match="time out of range"):
        speedups.TimerWheel(2**62)
    wheel = speedups.TimerWheel(0)
    with pytest.raises(TypeError):
        wheel.schedule(1.5, "x")  # type: ignore[arg-type]  # a float deadline, to check the TypeError
    with pytest.raises(OverflowError, match=r"^time out of range: -4611686018427387904$"):
        wheel.schedule(-(2**62), "x")
    with pytest.raises(OverflowError, match="time out of range"):
        wheel.advance(2**64)
    assert len(wheel) == 0


def test_items_are_kept_as_given(speedups: Twin) -> None:
    wheel = speedups.TimerWheel(0)
    items = [object(), None, ("a", 1), [1]]
    for item in items:
        wheel.schedule(3, item)
    fired = wheel.advance(3)
    assert len(fired) == 4
    assert all(got is want for got, want in zip(fired, items, strict=True))


DELAYS = st.one_of(
    st.integers(-100, 100),
    st.integers(0, 5_000),
    st.integers(0, 10**8),
    st.integers(2_592_000_000 - 1000, 2_592_000_000),
)
STEPS = st.one_of(st.integers(-100, 3_000), st.integers(0, 3 * 10**9))
WHEEL_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), DELAYS),
        st.tuples(st.just("cancel"), st.integers(0, 200)),
        st.tuples(st.just("advance"), STEPS),
        st.tuples(st.just("next"), st.just(0)),
    ),
    max_size=80,
)
ORIGINS = st.one_of(st.integers(-(10**6), 10**13), st.integers(-300, 0))
TICKS = st.sampled_from([1, 1, 1, 7, 1000])


def run_wheel_ops(wheel: TimerWheel, now: int, ops: list[tuple[str, int]]) -> list[object]:
    """Apply ops to wheel, check every answer against a heapq oracle, and log the answers."""
    heap: list[tuple[int, int, int]] = []
    pending: set[int] = set()
    handles: list[int] = []
    answers: list[object] = []
    for kind, value in ops:
        if kind == "schedule":
            handle = wheel.schedule(now + value, len(handles))
            heapq.heappush(heap, (now + value, handle, len(handles)))
            pending.add(handle)
            handles.append(handle)
            answer: object = handle
        elif kind == "cancel":
            handle = handles[value % len(handles)] if handles else value
            answer = wheel.cancel(handle)
            assert answer is (handle in pending)
            pending.discard(handle)
        else:
            bound = wheel.next_deadline()
            if pending:
                earliest = min(entry[0] for entry in heap if entry[1] in pending)
                assert bound is not None
                assert bound > now
                assert bound <= earliest or earliest <= now
            else:
                assert bound is None
            target = (now if bound is None else bound) if kind == "next" else now + value
            answer = wheel.advance(target)
            now = max(now, target)
            expected = []
            while heap and heap[0][0] <= now:
                _, handle, item = heapq.heappop(heap)
                if handle in pending:
                    pending.remove(handle)
                    expected.append(item)
            assert answer == expected
        assert len(wheel) == len(pending)
        answers.append(answer)
    steps = 0
    while len(wheel):
        bound = wheel.next_deadline()
        assert bound is not None and bound > now
        wheel.advance(bound)
        now = bound
        steps += 1
        assert steps <= 7 * len(handles)
    return answers


@SETTINGS
@given(origin=ORIGINS, tick_ms=TICKS, ops=WHEEL_OPS)
def test_wheel_agrees_with_heapq(speedups: Twin, origin: int, tick_ms: int, ops: list[tuple[str, int]]) -> None:
    run_wheel_ops(speedups.TimerWheel(origin, tick_ms), origin, ops)


@pytest.mark.compiled
@SETTINGS
@given(origin=ORIGINS, tick_ms=TICKS, ops=WHEEL_OPS)
def test_twins_agree(
    twins: tuple[Twin, Twin],
    origin: int,
    tick_ms: int,
    ops: list[tuple[str, int]],
) -> None:
    compiled, python = twins
    assert run_wheel_ops(compiled.TimerWheel(origin, tick_ms), origin, ops) == run_wheel_ops(
        python.TimerWheel(origin, tick_ms), origin, ops
    )

"""``send_now``, ``track``, ``fan_out`` and ``Inflight`` on both twins, against ``fastport._speedups.fanout_py``."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from speedups.conftest import Twin

    from fastport._speedups.fanout_py import FanOutConnection

FRAME = b'{"type":"message"}'
MESSAGE_ID = "m-1"
DUE = 30_000


class Sink:
    """The broker's sink as ``fan_out`` sees it: ``send`` and ``paused``."""

    def __init__(self, paused: bool = False) -> None:
        self.paused = paused
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)


class Target:
    """A ``Subscriber`` as ``fan_out`` sees it (hashable, like the real one)."""

    def __init__(
        self,
        online: bool = True,
        paused: bool = False,
        queued: int = 0,
        held: int = 0,
        durable: bool = False,
        armed: bool = False,
    ) -> None:
        self.connection = SimpleNamespace(sink=Sink(paused)) if online else None
        self.queue = [object()] * queued or None
        self.inflight: dict[str, Any] = {f"old-{i}": None for i in range(held)}
        self.durable = durable
        self.retry_handle: int | None = 7 if armed else None


class Arm:
    """Records ``arm`` calls and hands out handles."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Target]] = []

    def __call__(self, due_ms: int, subscriber: Target) -> int:
        self.calls.append((due_ms, subscriber))
        return 100 + len(self.calls)


def message() -> SimpleNamespace:
    return SimpleNamespace(frame=FRAME, message_id=MESSAGE_ID)


def run(
    speedups: Twin,
    targets: dict[Target, int],
    publisher: FanOutConnection | None = None,
    window: int = 4,
    durable_aside: bool = False,
) -> tuple[int, list[tuple[Target, int]] | None, Arm, SimpleNamespace]:
    arm = Arm()
    msg = message()
    sent, rest = speedups.fan_out(targets, msg, publisher, DUE, window, durable_aside, arm)
    return sent, rest, arm, msg


def test_sends_one_frame_records_inflight_and_arms(speedups: Twin) -> None:
    idle, busy = Target(), Target(held=1, armed=True)
    sent, rest, arm, msg = run(speedups, {idle: 1, busy: 1})
    assert (sent, rest) == (2, None)
    for target in (idle, busy):
        assert target.connection is not None
        assert target.connection.sink.sent == [FRAME]
        entry = target.inflight[MESSAGE_ID]
        assert (entry.message, entry.attempts, entry.due_ms) == (msg, 0, DUE)
    assert list(busy.inflight) == ["old-0", MESSAGE_ID], "a new entry goes last: the next retry stays first"
    assert arm.calls == [(DUE, idle)], "only a subscriber without a retry timer is armed"
    assert (idle.retry_handle, busy.retry_handle) == (101, 7)


@pytest.mark.parametrize(
    ("target", "qos", "why"),
    [
        (Target(online=False), 1, "offline"),
        (Target(), 0, "QoS 0 subscription"),
        (Target(paused=True), 1, "paused sink"),
        (Target(queued=1), 1, "messages queued before it"),
        (Target(held=4), 1, "inflight window full"),
        (Target(durable=True), 1, "durable, with durable_aside"),
    ],
)
def test_leaves_the_rest_to_the_delivery_policy(speedups: Twin, target: Target, qos: int, why: str) -> None:
    plain = Target()
    sent, rest, arm, _ = run(speedups, {target: qos, plain: 1}, durable_aside=True)
    assert sent == 1, why
    assert rest == [(target, qos)], why
    assert MESSAGE_ID not in target.inflight, why
    if target.connection is not None:
        assert target.connection.sink.sent == [], why
    assert arm.calls == [(DUE, plain)]


def test_a_held_message_id_goes_to_the_policy(speedups: Twin) -> None:
    target = Target()
    target.inflight[MESSAGE_ID] = "earlier copy"
    sent, rest, _, _ = run(speedups, {target: 1})
    assert (sent, rest) == (0, [(target, 1)])
    assert target.inflight[MESSAGE_ID] == "earlier copy"


def test_durable_takes_the_fast_path_without_a_store(speedups: Twin) -> None:
    target = Target(durable=True)
    sent, rest, _, _ = run(speedups, {target: 1}, durable_aside=False)
    assert (sent, rest) == (1, None)


def test_skips_the_publisher_entirely(speedups: Twin) -> None:
    publisher_side, other = Target(), Target(online=False)
    publisher = publisher_side.connection
    sent, rest, arm, _ = run(speedups, {publisher_side: 1, other: 1}, publisher=publisher)
    assert sent == 0
    assert rest == [(other, 1)], "the publisher's own subscription is neither sent to nor returned"
    assert publisher_side.connection is not None
    assert publisher_side.connection.sink.sent == [] and arm.calls == []


def test_a_released_message_is_refused(speedups: Twin) -> None:
    released = SimpleNamespace(frame=None, message_id=MESSAGE_ID)
    target = Target()
    with pytest.raises(TypeError, match=r"message\.frame is None"):
        speedups.fan_out({target: 1}, released, None, DUE, 4, False, Arm())
    assert target.inflight == {}


def test_no_targets(speedups: Twin) -> None:
    assert run(speedups, {})[:2] == (0, None)


def test_accepts_any_mapping(speedups: Twin) -> None:
    class Matches(dict[Target, int]):
        """A dict subclass: the compiled twin copies non-dict mappings."""

    target = Target()
    assert run(speedups, Matches({target: 1}))[:2] == (1, None)


@pytest.mark.parametrize(
    ("target", "window", "expected"),
    [
        (Target(), 1, True),
        (Target(held=3), 4, True),
        (Target(durable=True, armed=True), 1, True),
        (Target(online=False), 4, False),
        (Target(queued=1), 4, False),
        (Target(paused=True), 4, False),
        (Target(held=4), 4, False),
        (Target(), 0, False),
    ],
)
def test_send_now(speedups: Twin, target: Target, window: int, expected: bool) -> None:
    assert speedups.send_now(target, window) is expected


def test_send_now_reads_an_empty_queue_as_nothing_queued(speedups: Twin) -> None:
    target = Target()
    target.queue = []
    assert speedups.send_now(target, 1) is True


def test_track_appends_an_entry_and_arms_an_idle_subscriber(speedups: Twin) -> None:
    target, arm, msg = Target(held=1), Arm(), message()
    entry = speedups.track(target, msg, 2, DUE, arm)
    assert isinstance(entry, speedups.Inflight)
    assert (entry.message, entry.attempts, entry.due_ms) == (msg, 2, DUE)
    assert list(target.inflight.items()) == [("old-0", None), (MESSAGE_ID, entry)], "the new entry goes last"
    assert arm.calls == [(DUE, target)]
    assert target.retry_handle == 101


def test_track_leaves_an_armed_timer_alone(speedups: Twin) -> None:
    target, arm = Target(armed=True), Arm()
    speedups.track(target, message(), 0, DUE, arm)
    assert arm.calls == []
    assert target.retry_handle == 7


def test_track_without_arm_records_only(speedups: Twin) -> None:
    target = Target(online=False)
    entry = speedups.track(target, message(), 1, DUE, None)
    assert target.inflight == {MESSAGE_ID: entry}
    assert target.retry_handle is None, "an offline subscriber is armed by its resume"


@pytest.mark.compiled
@pytest.mark.parametrize(("fan_out_twin", "outbox_twin"), [(0, 1), (1, 0)])
def test_any_fan_out_twin_drives_any_outbox_twin(twins: tuple[Twin, Twin], fan_out_twin: int, outbox_twin: int) -> None:
    """The switch may pair a compiled fan-out with a Python outbox and back: sends are ordinary calls."""
    frames = []
    for fan_out, outbox in ((twins[0], twins[0]), (twins[fan_out_twin], twins[outbox_twin])):
        written: list[bytes] = []
        ready: list[Any] = []
        flusher = outbox.Flusher(ready.append)
        targets = {}
        for _ in range(3):
            target = Target()
            target.connection = SimpleNamespace(
                sink=SimpleNamespace(paused=False, send=outbox.Outbox(written.append, flusher).text)
            )
            targets[target] = 1
        assert fan_out.fan_out(targets, message(), None, DUE, 4, False, Arm()) == (3, None)
        flusher.flush()
        frames.append(written)
    assert frames[1] == frames[0] == [bytes((0x81, len(FRAME))) + FRAME] * 3


def test_inflight_fields_are_writable(speedups: Twin) -> None:
    entry = speedups.Inflight("msg", 0, 5)
    entry.attempts += 1
    entry.due_ms = 2**40
    assert (entry.message, entry.attempts, entry.due_ms) == ("msg", 1, 2**40)


@pytest.mark.compiled
def test_compiled_inflight_stays_out_of_the_cyclic_gc(twins: tuple[Twin, Twin]) -> None:
    compiled, python = twins
    assert not gc.is_tracked(compiled.Inflight(object(), 0, 0))
    assert gc.is_tracked(python.Inflight(object(), 0, 0))


TARGET_STATES = st.lists(
    st.tuples(
        st.booleans(),  # online
        st.booleans(),  # paused
        st.integers(0, 2),  # queued
        st.integers(0, 5),  # held
        st.booleans(),  # durable
        st.booleans(),  # armed
        st.integers(0, 1),  # subscription QoS
        st.booleans(),  # already holds the message id
    ),
    max_size=12,
)


def build(states: list[tuple[Any, ...]]) -> dict[Target, int]:
    targets = {}
    for online, paused, queued, held, durable, armed, qos, holds in states:
        target = Target(online, paused, queued, held, durable, armed)
        if holds:
            target.inflight[MESSAGE_ID] = "earlier copy"
        targets[target] = qos
    return targets


def outcome(targets: dict[Target, int], result: tuple[int, Any], arm: Arm) -> tuple[Any, ...]:
    order = list(targets)
    sent, rest = result
    return (
        sent,
        None if rest is None else [(order.index(target), qos) for target, qos in rest],
        [(due, order.index(target)) for due, target in arm.calls],
        [
            (
                None if t.connection is None else t.connection.sink.sent,
                [(key, getattr(value, "attempts", value)) for key, value in t.inflight.items()],
                t.retry_handle,
            )
            for t in order
        ],
    )


@settings(max_examples=200, deadline=None)
@given(states=TARGET_STATES, window=st.integers(1, 6), durable_aside=st.booleans(), skip=st.integers(-1, 11))
def test_fan_out_sends_where_send_now_allows(
    speedups: Twin, states: list[tuple[Any, ...]], window: int, durable_aside: bool, skip: int
) -> None:
    """fan_out's per-target checks beyond ``send_now`` are QoS 0, the publisher, durable_aside and a held id."""
    targets = build(states)
    order = list(targets)
    publisher = order[skip].connection if 0 <= skip < len(order) else None
    expected = [
        target
        for target, qos in targets.items()
        if qos
        and target.connection is not publisher
        and not (durable_aside and target.durable)
        and MESSAGE_ID not in target.inflight
        and speedups.send_now(target, window)
    ]
    skipped = [target for target in order if publisher is not None and target.connection is publisher]
    sent, rest = speedups.fan_out(targets, message(), publisher, DUE, window, durable_aside, Arm())
    assert sent == len(expected)
    assert [target for target in order if target.connection is not None and target.connection.sink.sent] == expected
    assert [target for target, _ in rest or ()] == [t for t in order if t not in expected and t not in skipped]


@pytest.mark.compiled
@settings(max_examples=200, deadline=None)
@given(states=TARGET_STATES, window=st.integers(1, 6), durable_aside=st.booleans(), skip=st.integers(-1, 11))
def test_twins_agree(
    twins: tuple[Twin, Twin],
    states: list[tuple[Any, ...]],
    window: int,
    durable_aside: bool,
    skip: int,
) -> None:
    results = []
    for twin in twins:
        targets = build(states)
        order = list(targets)
        publisher = order[skip].connection if 0 <= skip < len(order) else None
        arm = Arm()
        result = twin.fan_out(targets, message(), publisher, DUE, window, durable_aside, arm)
        results.append(outcome(targets, result, arm))
    assert results[0] == results[1]

"""Outbox and Flusher behaviour, on both twins, against the rules in ``fastport._speedups.outbox_py``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from speedups.conftest import Twin

    from fastport._speedups.outbox_py import Flusher, Outbox

SETTINGS = settings(max_examples=150, deadline=None)


def parse_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    """Decode unmasked server frames (RFC 6455 §5.2) into (fin, opcode, payload); the input must end on a frame."""
    frames = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        assert first & 0x70 == 0, "reserved bits set"
        assert second & 0x80 == 0, "server frames are unmasked"
        length = second & 0x7F
        at += 2
        if length == 126:
            length = int.from_bytes(data[at : at + 2], "big")
            assert length >= 126, "16-bit length used for a short payload"
            at += 2
        elif length == 127:
            length = int.from_bytes(data[at : at + 8], "big")
            assert 0x10000 <= length < 1 << 63, "64-bit length out of range"
            at += 8
        payload = data[at : at + length]
        assert len(payload) == length, "truncated frame"
        at += length
        frames.append((bool(first & 0x80), first & 0x0F, payload))
    return frames


class Loop:
    """A stand-in for an event loop's ``call_soon``: callbacks wait until ``run_once``."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.ready.append(callback)

    def run_once(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()


@pytest.fixture
def loop() -> Loop:
    return Loop()


def make(speedups: Twin, loop: Loop, count: int = 1) -> tuple[Flusher, list[Outbox], list[list[bytes]]]:
    flusher = speedups.Flusher(loop.call_soon)
    writes: list[list[bytes]] = [[] for _ in range(count)]
    outboxes = [speedups.Outbox(written.append, flusher) for written in writes]
    return flusher, outboxes, writes


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_header_lengths(speedups: Twin, loop: Loop, size: int) -> None:
    _, [outbox], [writes] = make(speedups, loop)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    outbox.text(payload)
    assert outbox.pending() == len(payload) + (2 if size < 126 else 4 if size < 65536 else 10)
    loop.run_once()
    assert len(writes) == 1
    assert parse_frames(writes[0]) == [(True, speedups.OP_TEXT, payload)]
    assert outbox.pending() == 0


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_binary_frames(speedups: Twin, loop: Loop, size: int) -> None:
    _, [outbox], [writes] = make(speedups, loop)
    outbox.binary(b"\x00\xff" * (size // 2) + b"\x07" * (size % 2))
    outbox.text(b"after")
    loop.run_once()
    frames = parse_frames(writes[0])
    assert [(fin, op, len(payload)) for fin, op, payload in frames] == [
        (True, speedups.OP_BINARY, size),
        (True, speedups.OP_TEXT, 5),
    ]


def test_exact_header_bytes(speedups: Twin, loop: Loop) -> None:
    _, [outbox], [writes] = make(speedups, loop)
    outbox.text(b"")
    outbox.text(b"x" * 126)
    outbox.binary(b"y" * 65536)
    loop.run_once()
    data = writes[0]
    assert data[:2] == b"\x81\x00"
    assert data[2:6] == b"\x81\x7e\x00\x7e"
    at = 6 + 126
    assert data[at : at + 10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    assert len(data) == at + 10 + 65536


def test_one_write_per_connection_per_iteration(speedups: Twin, loop: Loop) -> None:
    flusher, outboxes, writes = make(speedups, loop, count=3)
    for i in range(10):
        for outbox in outboxes:
            outbox.text(b"m%d" % i)
    assert len(loop.ready) == 1, "one flush scheduled for the whole fan-out"
    assert len(flusher) == 3
    assert writes == [[], [], []], "nothing is written before the loop runs the flush"
    loop.run_once()
    assert len(flusher) == 0
    for written in writes:
        assert len(written) == 1
        assert [payload for _, _, payload in parse_frames(written[0])] == [b"m%d" % i for i in range(10)]
    # The next iteration schedules again, and writes again once.
    outboxes[1].text(b"again")
    assert len(loop.ready) == 1
    loop.run_once()
    assert [len(written) for written in writes] == [1, 2, 1]
    loop.run_once()
    assert [len(written) for written in writes] == [1, 2, 1]


def test_flush_order_follows_marking(speedups: Twin, loop: Loop) -> None:
    flusher = speedups.Flusher(loop.call_soon)
    order: list[bytes] = []
    first = speedups.Outbox(order.append, flusher)
    second = speedups.Outbox(order.append, flusher)
    second.text(b"2")
    first.text(b"1")
    second.text(b"2b")
    loop.run_once()
    assert order == [b"\x81\x012\x81\x022b", b"\x81\x011"]


def test_explicit_flush_and_empty_flush(speedups: Twin, loop: Loop) -> None:
    _, [outbox], [writes] = make(speedups, loop)
    outbox.flush()
    assert writes == []
    outbox.text(b"now")
    outbox.flush()
    assert writes == [b"\x81\x03now"]
    loop.run_once()  # the scheduled flush finds nothing left
    assert writes == [b"\x81\x03now"]


def test_discard_drops_queued_frames(speedups: Twin, loop: Loop) -> None:
    _, [gone, kept], [gone_writes, kept_writes] = make(speedups, loop, count=2)
    gone.text(b"lost")
    gone.binary(b"lost too")
    kept.text(b"kept")
    gone.discard()
    assert gone.pending() == 0
    loop.run_once()
    assert gone_writes == []
    assert kept_writes == [b"\x81\x04kept"]
    gone.text(b"later")  # a discarded outbox still works if used again
    loop.run_once()
    assert gone_writes == [b"\x81\x05later"]


def test_a_failing_write_does_not_starve_the_others(speedups: Twin, loop: Loop) -> None:
    flusher = speedups.Flusher(loop.call_soon)

    def broken(data: bytes) -> None:
        raise RuntimeError("transport closed")

    bad = speedups.Outbox(broken, flusher)
    written: list[bytes] = []
    good = speedups.Outbox(written.append, flusher)
    bad.text(b"a")
    good.text(b"b")
    with pytest.raises(RuntimeError, match="transport closed"):
        loop.run_once()
    assert written == [b"\x81\x01b"]
    assert bad.pending() == 0 and len(flusher) == 0
    bad.text(b"c")  # not stuck: marked again, scheduled again
    assert len(loop.ready) == 1


def test_a_failing_call_soon_leaves_the_outbox_empty(speedups: Twin) -> None:
    def closed_loop(callback: Callable[[], object]) -> None:
        raise RuntimeError("Event loop is closed")

    flusher = speedups.Flusher(closed_loop)
    outbox = speedups.Outbox(list[bytes]().append, flusher)
    with pytest.raises(RuntimeError, match="closed"):
        outbox.text(b"x")
    assert outbox.pending() == 0 and len(flusher) == 0


def test_payloads_must_be_bytes(speedups: Twin, loop: Loop) -> None:
    _, [outbox], _ = make(speedups, loop)
    for bad in ("text", bytearray(b"x"), memoryview(b"x"), None, 1):
        with pytest.raises(TypeError):
            outbox.text(bad)  # type: ignore[arg-type]  # not bytes, to check the TypeError
        with pytest.raises(TypeError):
            outbox.binary(bad)  # type: ignore[arg-type]  # not bytes, to check the TypeError
    with pytest.raises(TypeError):
        speedups.Outbox(list[bytes]().append, object())  # type: ignore[arg-type]  # not a Flusher: the TypeError
    assert outbox.pending() == 0 and loop.ready == []


def test_mark_accepts_any_flushable(speedups: Twin, loop: Loop) -> None:
    flusher = speedups.Flusher(loop.call_soon)
    flushed: list[str] = []
    flusher.mark(cast("Outbox", SimpleNamespace(flush=lambda: flushed.append("custom"))))  # duck-typed: only flush
    loop.run_once()
    assert flushed == ["custom"]


FRAMES = st.lists(
    st.tuples(
        st.sampled_from(["text", "binary"]),
        st.one_of(
            st.binary(max_size=300),
            st.integers(min_value=65530, max_value=65540).map(lambda n: b"z" * n),
        ),
        st.booleans(),  # end the loop iteration after this frame
    ),
    max_size=40,
)


@SETTINGS
@given(ops=FRAMES, fanout=st.integers(min_value=1, max_value=4))
def test_random_frames_decode_back_in_order(speedups: Twin, ops: list[tuple[str, bytes, bool]], fanout: int) -> None:
    loop = Loop()
    _, outboxes, writes = make(speedups, loop, count=fanout)
    expected: list[tuple[bool, int, bytes]] = []
    iterations = 0
    for kind, payload, end_iteration in ops:
        for outbox in outboxes:
            getattr(outbox, kind)(payload)
        expected.append((True, speedups.OP_TEXT if kind == "text" else speedups.OP_BINARY, payload))
        if end_iteration:
            iterations += 1
            loop.run_once()
            assert len(loop.ready) == 0
    loop.run_once()
    for written in writes:
        assert len(written) <= iterations + 1
        assert all(written), "never an empty write"
        assert parse_frames(b"".join(written)) == expected


@pytest.mark.compiled
@SETTINGS
@given(ops=FRAMES)
def test_twins_write_the_same_bytes(twins: tuple[Twin, Twin], ops: list[tuple[str, bytes, bool]]) -> None:
    outputs = []
    for twin in twins:
        loop = Loop()
        _, [outbox], [writes] = make(twin, loop)
        for kind, payload, end_iteration in ops:
            getattr(outbox, kind)(payload)
            if end_iteration:
                loop.run_once()
        loop.run_once()
        outputs.append(writes)
    assert outputs[0] == outputs[1]

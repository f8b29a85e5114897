"""What a client causes is not the broker's fault: picows's lines about refused frames are INFO, rate limited, counted.

Each case sends through a real socket one frame picows's parser refuses; before the fix picows
logged each at ERROR (``WS parser error``), so any client could write ERROR lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest

from fastport.log import CLIENT_CAUSED, ClientCausedFilter
from fastport.server.app import FastportServer

from .hostile_helpers import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, RawFactory, build_frame

CASES: dict[str, Callable[[], bytes]] = {
    "oversize": lambda: build_frame(OP_BINARY, b"", length=1 << 40, length_form=127),
    "bad_opcode": lambda: build_frame(0x3, b"x"),
    "bad_control_opcode": lambda: build_frame(0xB, b"x"),
    "unmasked": lambda: build_frame(OP_TEXT, b"{}", masked=False),
    "fragmented_control": lambda: build_frame(OP_PING, b"x", fin=False),
    "long_control": lambda: build_frame(OP_PING, b"x" * 200),
    "one_byte_close": lambda: build_frame(OP_CLOSE, b"x"),
}


@pytest.fixture(autouse=True)
def fresh_window() -> Iterator[None]:
    CLIENT_CAUSED.reset()
    yield
    CLIENT_CAUSED.reset()


async def _scrape(port: int, headers: dict[str, str]) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    writer.write((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return data.partition(b"\r\n\r\n")[2].decode()


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_frame_is_logged_at_info_and_counted(
    server: FastportServer,
    raw: RawFactory,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    before = server.counters.ws_protocol_errors
    ws = await raw()
    ws.send(CASES[case]())
    assert await ws.expect_close() in (1002, 1009)
    assert _loud(caplog) == []
    lines = [r for r in caplog.records if r.name.startswith("picows") and "WS parser error" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert server.counters.ws_protocol_errors == before + 1
    assert f"fastport_websocket_protocol_errors_total {before + 1}.0\n" in await _scrape(server.port, admin_headers)


async def test_a_flood_of_refused_frames_is_rate_limited(
    server: FastportServer, raw: RawFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    attempts = CLIENT_CAUSED.burst + 15
    for _ in range(attempts):
        ws = await raw()
        ws.send(CASES["bad_opcode"]())
        assert await ws.expect_close() == 1002
    assert _loud(caplog) == []
    lines = [r for r in caplog.records if "WS parser error" in r.getMessage()]
    assert len(lines) == CLIENT_CAUSED.burst
    assert server.counters.ws_protocol_errors == attempts  # every one is counted, logged or not


async def test_not_logged_below_info(server: FastportServer, raw: RawFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    ws = await raw()
    ws.send(CASES["unmasked"]())
    assert await ws.expect_close() == 1002
    assert caplog.records == []
    assert server.counters.ws_protocol_errors == 1


def test_the_broker_s_own_faults_stay_errors() -> None:
    now = [0.0]
    flt = ClientCausedFilter(interval_s=10, burst=2, clock=lambda: now[0])
    seen: list[int] = []
    flt.listeners.add(lambda: seen.append(1))

    def record(msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
        return logging.LogRecord("picows.server", level, __file__, 1, msg, args or None, None)

    own = record("Initiate disconnect because of exception from WSListener.on_ws_frame")
    assert flt.filter(own) and own.levelno == logging.ERROR
    failure = record("WS parser failure, initiate disconnect")
    assert flt.filter(failure) and failure.levelno == logging.ERROR
    assert seen == []
    logging.getLogger("fastport.server").setLevel(logging.INFO)
    try:
        first, second, third = (
            record("WS parser error: %s, initiate disconnect", logging.ERROR, (1002,)) for _ in "abc"
        )
        assert flt.filter(first) and first.levelname == "INFO"
        assert flt.filter(second)
        assert not flt.filter(third)  # over the burst
        now[0] = 10.0
        fourth = record("WS parser error: %s, initiate disconnect", logging.ERROR, (1009,))
        assert flt.filter(fourth) and fourth.getMessage().endswith("(1 more like it not logged)")
        assert len(seen) == 4
        pause = record("Protocol writing pause requested, crossed writing buffer high-watermark", logging.WARNING)
        assert not flt.filter(pause) and pause.levelno == logging.DEBUG
    finally:
        logging.getLogger("fastport.server").setLevel(logging.NOTSET)

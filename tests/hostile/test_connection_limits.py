"""Connection limits of the server layer: init timeout, idle pings, Origin allow-list; the bystander is unharmed."""

from __future__ import annotations

import asyncio

import pytest

from fastport.config import BrokerLimits
from fastport.errors import CloseCode
from fastport.server.app import FastportServer

from .hostile_helpers import OP_PING, Bystander, RawFactory, RawWS


@pytest.mark.parametrize("server_settings", [{"limits": BrokerLimits(init_timeout_s=0.4)}])
async def test_no_init_within_the_init_timeout_closes_4003(
    server: FastportServer, raw: RawFactory, bystander: Bystander
) -> None:
    silent = await raw()
    failing = await raw()
    failing.text({"type": "init", "sessionName": "victim", "password": "wrong"})
    assert (await failing.recv())["success"] is False
    assert await silent.expect_close(2.0) == CloseCode.INIT_TIMEOUT
    assert await failing.expect_close(2.0) == CloseCode.INIT_TIMEOUT
    assert server.broker.counters.init_timeouts == 2
    await asyncio.sleep(0.5)
    await bystander.check()  # initialised long ago: never closed by the timer


@pytest.mark.parametrize("server_settings", [{"idle_timeout_s": 0.3, "ping_timeout_s": 0.2}])
async def test_idle_peer_is_pinged_and_a_dead_one_is_reaped(
    server: FastportServer, raw: RawFactory, bystander: Bystander
) -> None:
    dead = await raw()
    dead.text({"type": "init", "sessionName": "victim", "password": "victim-password"})
    assert (await dead.recv())["success"] is True
    fin, opcode, _ = await dead.read_frame(2.0)
    assert (fin, opcode) == (True, OP_PING)
    # No pong: the server closes with 1001 and drops the socket.
    assert await dead.expect_close(2.0) == CloseCode.GOING_AWAY
    await bystander.check()  # picows clients answer pings: still connected


@pytest.mark.parametrize("server_settings", [{"allowed_origins": ("https://app.example.com",)}])
async def test_origin_allow_list(server: FastportServer, bystander: Bystander) -> None:
    evil = await RawWS.open(server.port, headers={"Origin": "https://evil.example.com"}, expect=403)
    assert await asyncio.wait_for(evil.reader.read(), 2.0) == b"origin not allowed"
    await evil.close()
    for origin in ("https://app.example.com", "HTTPS://APP.EXAMPLE.COM/"):
        good = await RawWS.open(server.port, headers={"Origin": origin})
        await good.close()
    no_origin = await RawWS.open(server.port)  # not a browser
    await no_origin.close()
    assert server.counters.ws_origin_rejected == 1
    await bystander.check()

"""Fixtures of the hostile suite: a bystander tenant running alongside each attack, raw sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, ClientFactory, SessionFactory

from fastport.config import ServerConfig
from fastport.server.app import FastportServer

from .hostile_helpers import Bystander, RawFactory, RawWS


@pytest.fixture
async def bystander(make_session: SessionFactory, connect: ClientFactory) -> AsyncIterator[Bystander]:
    """Tenant ``victim`` exchanging acked messages from before the attack until ``check()``."""
    session = await make_session("victim", password="victim-password")
    publisher, subscriber = await connect(session), await connect(session)
    exchange = Bystander(session, publisher, subscriber)
    await exchange.start()
    try:
        yield exchange
    finally:
        await exchange.stop()


@pytest.fixture
async def attacker(make_session: SessionFactory) -> dict[str, Any]:
    """The attacker's own, legitimate session."""
    return await make_session("attacker", password="attacker-password")


@pytest.fixture
async def raw(server: FastportServer) -> AsyncIterator[RawFactory]:
    """Open hand-made WebSocket connections to the server (closed at teardown)."""
    opened: list[RawWS] = []

    async def open_raw(**options: Any) -> RawWS:
        ws = await RawWS.open(server.port, **options)
        opened.append(ws)
        return ws

    yield open_raw
    for ws in opened:
        await ws.close()


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """ServerConfig overrides of one test: ``@pytest.mark.parametrize("server_settings", [{...}])``."""
    return {}


@pytest.fixture
async def server(tmp_path: Path, server_settings: dict[str, Any]) -> AsyncIterator[FastportServer]:
    """The server under attack (the bystander and the attacker share it)."""
    config = ServerConfig(port=0, data_dir=tmp_path, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS, **server_settings)
    srv = await FastportServer.start(config)
    try:
        yield srv
    finally:
        await srv.close()

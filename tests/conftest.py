"""Shared fixtures: a real fastport server on 127.0.0.1 with port 0, on uvloop, and session helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, ClientFactory, SessionFactory, WSClient, http

from fastport.config import ServerConfig
from fastport.server.app import FastportServer


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Broker tests run on uvloop, as production does; modules marked ``both_loops`` also on asyncio."""
    if item.get_closest_marker("both_loops"):
        return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FastportServer]:
    config = ServerConfig(port=0, data_dir=tmp_path, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS)
    srv = await FastportServer.start(config)
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture
def admin_headers(server: FastportServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


@pytest.fixture
def make_session(server: FastportServer, admin_headers: dict[str, str]) -> SessionFactory:
    """Create a session through the REST API; returns the createSession response body."""
    counter = iter(range(1, 1_000_000))

    async def create(name: str | None = None, password: str = "pw", **settings: Any) -> dict[str, Any]:
        body = {"sessionName": name or f"s{next(counter)}", "password": password, **settings}
        status, _, response = await http(server.port, "POST", "/api/createSession", body, headers=admin_headers)
        assert status == 200 and isinstance(response, dict), response
        return response

    return create


@pytest.fixture
async def connect(server: FastportServer) -> AsyncIterator[ClientFactory]:
    """Open WebSocket clients to the server (closed at teardown); optionally init them."""
    clients: list[WSClient] = []

    async def open_client(session: dict[str, Any] | None = None) -> WSClient:
        client = await WSClient.connect(server.port)
        clients.append(client)
        if session is not None:
            response = await client.init(session["sessionName"], session["password"])
            assert response["success"] is True, response
        return client

    yield open_client
    for client in clients:
        await client.close()

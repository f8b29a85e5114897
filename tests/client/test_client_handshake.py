"""A connection lost during the handshake is retried at once, with the reconnect backoff, not after a timeout.

A front on 127.0.0.1 stands between the client and the broker. Its first connections are cut at a chosen point
of the handshake (right after accept; or right after the broker's ``101`` reached the client, when picows hands the
client a transport that is already disconnected); later ones are relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from clienttools import make_client
from fastport_client_helpers import SessionFactory

from fastport.client import ConnectionClosed, ConnectionState, ReconnectPolicy
from fastport.server.app import FastportServer

Cut = Literal["at_accept", "after_upgrade"]


class FlakyFront:
    """Relays TCP to ``upstream_port``, cutting the first ``cuts`` connections at ``where``."""

    def __init__(self, upstream_port: int, cuts: int, where: Cut) -> None:
        self.upstream_port = upstream_port
        self.cuts = cuts
        self.where = where
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        cut = self.accepted <= self.cuts
        try:
            if cut and self.where == "at_accept":
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                if cut:
                    # Relay the upgrade request, then the broker's 101, then cut both sides.
                    up_writer.write(await reader.readuntil(b"\r\n\r\n"))
                    writer.write(await up_reader.readuntil(b"\r\n\r\n"))
                    await writer.drain()
                    return
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def front_factory(server: FastportServer) -> AsyncIterator[Any]:
    fronts: list[FlakyFront] = []

    async def make(cuts: int, where: Cut) -> FlakyFront:
        front = FlakyFront(server.port, cuts, where)
        await front.start()
        fronts.append(front)
        return front

    yield make
    for front in fronts:
        await front.close()


@pytest.mark.parametrize("where", ["at_accept", "after_upgrade"])
async def test_init_retries_a_handshake_cut_at_once(
    where: Cut, front_factory: Any, make_session: SessionFactory
) -> None:
    session = await make_session()
    front: FlakyFront = await front_factory(2, where)
    started = time.monotonic()
    async with make_client(front.port, session, request_timeout_s=10.0) as client:
        elapsed = time.monotonic() - started
        assert client.state is ConnectionState.CONNECTED
        assert front.accepted == 3
        # Two backoff waits of the tests' reconnect policy (<= 0.2 s each), not one 10 s init timeout.
        assert elapsed < 2.0, elapsed
        assert (await client.emit("t", "after the cuts")).delivered_to == 0  # answered: the session is usable


async def test_reconnect_after_a_handshake_cut_is_prompt(front_factory: Any, make_session: SessionFactory) -> None:
    session = await make_session()
    front: FlakyFront = await front_factory(0, "after_upgrade")
    async with make_client(front.port, session, request_timeout_s=10.0) as client:
        front.cuts = front.accepted + 2  # the next two connections are cut after the upgrade
        for task in list(front._tasks):
            task.cancel()  # drop the live connection: the client reconnects through two cut handshakes
        started = time.monotonic()
        while client.state is not ConnectionState.CONNECTED or front.accepted < front.cuts + 1:
            assert time.monotonic() - started < 3.0, (client.state, front.accepted)
            await asyncio.sleep(0.02)
        assert client.stats.reconnects == 1


async def test_init_gives_up_when_every_handshake_is_cut(front_factory: Any, make_session: SessionFactory) -> None:
    session = await make_session()
    front: FlakyFront = await front_factory(1_000, "at_accept")
    client = make_client(
        front.port, session, request_timeout_s=1.0, reconnect=ReconnectPolicy(initial_delay_s=0.05, max_delay_s=0.1)
    )
    started = time.monotonic()
    with pytest.raises((ConnectionClosed, OSError)):
        await client.init()
    elapsed = time.monotonic() - started
    assert 0.8 < elapsed < 2.5, elapsed
    assert front.accepted > 3  # retried with the backoff while request_timeout_s lasted
    assert client.state is ConnectionState.CLOSED


async def test_init_without_reconnects_fails_on_the_first_cut(front_factory: Any, make_session: SessionFactory) -> None:
    session = await make_session()
    front: FlakyFront = await front_factory(1_000, "after_upgrade")
    client = make_client(front.port, session, reconnect=ReconnectPolicy(max_attempts=0))
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await client.init()
    assert time.monotonic() - started < 1.0 and front.accepted == 1

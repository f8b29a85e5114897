"""A small asyncio TCP proxy on 127.0.0.1 that a test puts between clients and a broker, and breaks on demand.

* ``cut()`` closes every live pair at once, both sides, abruptly (RST, nothing buffered is flushed).
* ``stall()`` / ``resume()`` stop and restart forwarding without closing anything: the pumps stop reading,
  so bytes wait in the kernel's buffers (at most one chunk per direction waits in the proxy).
* ``cut_during_handshake(n_bytes, connections)`` arms the next ``connections`` new connections: each is cut
  right after it forwarded the first ``n_bytes`` from the server (the start of the HTTP 101 response).
* ``target`` may be changed at any time (a restarted broker on another port); new connections use it.
* A connection that cannot reach the target is closed at once (as a load balancer with no backend does).

Everything is bounded: connecting upstream, and ``close()``, which cancels and awaits every task it started,
so no background task outlives the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Self

CONNECT_TIMEOUT_S = 2.0
CHUNK = 65536


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a socket abruptly: SO_LINGER 0 makes the kernel send RST and drop what is unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter, cut_after: int | None) -> None:
        self.client = client
        self.upstream = upstream
        #: Cut the pair once this many bytes went from the server to the client (None: never).
        self.cut_after = cut_after
        self.to_client = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        _abort(self.client)
        _abort(self.upstream)
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class TcpProxy:
    """Forwards TCP connections from ``127.0.0.1:port`` to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target: tuple[str, int] = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._handshake_cuts: list[int] = []
        self._closing = False
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        self.handshake_cuts = 0
        self.refused = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running_tasks(self) -> int:
        """Tasks of the proxy not finished yet (0 after ``close``)."""
        return sum(not task.done() for task in self._tasks)

    @property
    def live(self) -> int:
        """Live pairs (connections forwarded now)."""
        return len(self._pairs)

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ faults

    def cut(self) -> int:
        """Close every live pair at once, both sides, abruptly; return how many were cut."""
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        self._pairs.clear()
        self.cuts += 1
        return len(pairs)

    def stall(self) -> None:
        """Stop forwarding bytes (in both directions, on every pair, new ones included); close nothing."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again what waited during a stall, and everything after it."""
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def cut_during_handshake(self, n_bytes: int, connections: int = 1) -> None:
        """Cut each of the next ``connections`` new connections after ``n_bytes`` went from the server to it."""
        if n_bytes < 0 or connections < 0:
            raise ValueError("need n_bytes >= 0 and connections >= 0")
        self._handshake_cuts.extend([n_bytes] * connections)

    def disarm(self) -> None:
        """Forget the handshake cuts not yet used."""
        self._handshake_cuts.clear()

    # ----------------------------------------------------------------- plumbing

    async def close(self) -> None:
        """Stop listening, cut every pair and wait (bounded) for every task of the proxy to end."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        self.resume()
        self.cut()
        # Pumps are cancelled by the cut; a connection still reaching the target ends within CONNECT_TIMEOUT_S
        # and is cut then (cancelling it would make asyncio's stream callback log the CancelledError).
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT_S + 1)
            assert not stuck, f"{len(stuck)} proxy task(s) did not end"
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CONNECT_TIMEOUT_S)
            self._server = None

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._track(task)
        self.accepted += 1
        cut_after = self._handshake_cuts.pop(0) if self._handshake_cuts else None
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.refused += 1
            _abort(client_writer)
            return
        pair = _Pair(client_writer, upstream_writer, cut_after)
        if self._closing:
            pair.abort()
            return
        if cut_after == 0:
            self.handshake_cuts += 1
            pair.abort()
            return
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(pair, client_reader, upstream_writer, to_client=False)),
            asyncio.create_task(self._pump(pair, upstream_reader, client_writer, to_client=True)),
        ]
        for pump in pair.tasks:
            self._track(pump)
        await asyncio.wait(pair.tasks)
        self._pairs.discard(pair)
        pair.abort()

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_client: bool
    ) -> None:
        try:
            while not pair.closed:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break  # EOF: pass it on, as half-close
                await self._flowing.wait()  # a stall that began during the read holds this chunk
                if pair.closed:
                    return
                if to_client and pair.cut_after is not None:
                    room = pair.cut_after - pair.to_client
                    if len(data) >= room:
                        writer.write(data[:room])
                        with contextlib.suppress(OSError):
                            await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT_S)
                        self.handshake_cuts += 1
                        self._pairs.discard(pair)
                        pair.abort()
                        return
                    pair.to_client += len(data)
                writer.write(data)
                await writer.drain()
            if not pair.closed and writer.can_write_eof():
                writer.write_eof()
                # The other direction may still flow; the pair ends when both pumps end.
        except (OSError, asyncio.IncompleteReadError):
            pair.abort()

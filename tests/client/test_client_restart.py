"""The client across a broker restart: it reconnects, resumes its durable state, and loses nothing confirmed."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path

from fastport_client_helpers import http

from fastport.client import Client, ReconnectPolicy
from fastport.config import ServerConfig
from fastport.server.app import FastportServer

TOKEN = "t" * 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_durable_subscriber_loses_nothing_confirmed_across_a_broker_restart(tmp_path: Path) -> None:
    port = _free_port()
    config = ServerConfig(port=port, data_dir=tmp_path, admin_token=TOKEN, store=f"sqlite:{tmp_path / 'state.db'}")
    server = await FastportServer.start(config)
    status, _, _ = await http(
        port,
        "POST",
        "/api/createSession",
        {"sessionName": "s", "password": "pw"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200
    key = base64.b64encode(os.urandom(32)).decode()
    url = f"ws://127.0.0.1:{port}"
    fast = ReconnectPolicy(initial_delay_s=0.05, max_delay_s=0.2)
    received: list[str] = []
    got_all = asyncio.Event()

    def on_message(payload: str | bytes, timestamp: int | float) -> None:
        received.append(str(payload))
        if len(set(received)) == 10:
            got_all.set()

    subscriber = Client(url, "s", "pw", key, client_id="keeper", durable=True, reconnect=fast)
    publisher = Client(url, "s", "pw", key, reconnect=fast)
    await subscriber.init()
    await subscriber.get("data/#", on_message)
    await publisher.init()
    try:
        for index in range(5):
            await publisher.emit("data/x", f"before-{index}")
        await asyncio.sleep(0.2)
        await server.close()  # the broker goes away; both clients start reconnecting
        server = await FastportServer.start(config)
        for index in range(5):  # confirmed by the restarted broker while the subscriber may still be away
            await publisher.emit("data/x", f"after-{index}")
        await asyncio.wait_for(got_all.wait(), 20)
        assert subscriber.resumed is True
        assert set(received) == {f"before-{i}" for i in range(5)} | {f"after-{i}" for i in range(5)}
    finally:
        await publisher.close()
        await subscriber.close()
        await server.close()

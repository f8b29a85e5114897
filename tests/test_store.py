"""The SQLite store: state survives a restart and a kill -9; a confirmed publish is never lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastport_client_helpers import WSClient, http

from fastport.config import ServerConfig
from fastport.engines.sqlite import SqliteStore
from fastport.errors import ConfigError
from fastport.server.app import FastportServer


async def _start(tmp_path: Path) -> FastportServer:
    return await FastportServer.start(
        ServerConfig(port=0, data_dir=tmp_path, store=f"sqlite:{tmp_path / 'state.db'}", admin_token="t" * 32)
    )


async def _create(server: FastportServer, **settings: Any) -> dict[str, Any]:
    status, _, body = await http(
        server.port,
        "POST",
        "/api/createSession",
        {"sessionName": "keep", "password": "pw", **settings},
        headers={"Authorization": "Bearer " + "t" * 32},
    )
    assert status == 200 and isinstance(body, dict), body
    return body


async def _durable(port: int, client_id: str = "dev") -> tuple[WSClient, dict[str, Any]]:
    client = await WSClient.connect(port)
    client.send({"type": "init", "sessionName": "keep", "password": "pw", "clientId": client_id, "durable": True})
    return client, await client.recv_type("init_response")


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    server = await _start(tmp_path)
    session = await _create(server, retryInterval=60000)
    device, _ = await _durable(server.port)
    await device.subscribe("r/#")
    await device.close()
    publisher = await WSClient.connect(server.port)
    await publisher.init("keep", "pw")
    ids = [publisher.publish(f"r/{index}", data=f"m{index}") for index in range(5)]
    for _ in ids:
        assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    publisher.publish("r/status", data="on", retain=True, message_id="retained-1")
    await publisher.recv_type("publish_response")
    await publisher.close()
    await server.close()

    server = await _start(tmp_path)
    try:
        device, response = await _durable(server.port)
        assert response["resumed"] is True and response["subscriptions"] == ["r/#"]
        received = [await device.recv_type("message") for _ in range(6)]
        assert [frame["messageId"] for frame in received] == [*ids, "retained-1"]
        assert [frame["data"] for frame in received[:5]] == [f"m{index}" for index in range(5)]
        publisher = await WSClient.connect(server.port)
        await publisher.init("keep", "pw")
        publisher.publish("r/0", message_id=ids[0])  # the dedupe window survived too
        assert (await publisher.recv_type("publish_response"))["duplicate"] is True
        late = await WSClient.connect(server.port)
        await late.init("keep", "pw")
        await late.subscribe("r/status")
        assert (await late.recv_type("message"))["retained"] is True
        for client in (device, publisher, late):
            await client.close()
        status, _, body = await http(
            server.port,
            "POST",
            "/api/dropSession",
            {"sessionName": "keep", "password": "pw", "secretKey": session["secretKey"]},
        )
        assert (status, body) == (200, {"success": True})
    finally:
        await server.close()
    server = await _start(tmp_path)
    try:
        assert server.broker.stats()["sessions"] == 0
    finally:
        await server.close()


async def test_retry_counts_and_expiry_resume_where_they_were(tmp_path: Path) -> None:
    server = await _start(tmp_path)
    await _create(server, retryInterval=200, messageExpiryTime=60000)
    device, _ = await _durable(server.port)
    await device.subscribe("t")
    publisher = await WSClient.connect(server.port)
    await publisher.init("keep", "pw")
    kept = publisher.publish("t")
    await device.recv_type("message")
    assert (await device.recv_type("message"))["retry"] == 1  # sent, then redelivered once, never acked
    await device.close()
    await publisher.close()
    await server.close()

    server = await _start(tmp_path)
    try:
        device, _ = await _durable(server.port)
        again = await device.recv_type("message")
        assert again["messageId"] == kept and again["retry"] == 2
        device.send({"type": "ack", "topic": "t", "messageId": kept})
        await device.expect_silence(0.5)
        await device.close()
    finally:
        await server.close()


async def test_expired_messages_are_not_delivered_after_a_restart(tmp_path: Path) -> None:
    server = await _start(tmp_path)
    await _create(server, messageExpiryTime=500)
    device, _ = await _durable(server.port)
    await device.subscribe("t")
    await device.close()
    publisher = await WSClient.connect(server.port)
    await publisher.init("keep", "pw")
    publisher.publish("t")
    await publisher.recv_type("publish_response")
    await publisher.close()
    await server.close()
    await asyncio.sleep(0.7)
    server = await _start(tmp_path)
    try:
        device, response = await _durable(server.port)
        assert response["resumed"] is True
        await device.expect_silence(0.4)
        assert server.broker.delivery.counters.expired == 1
        await device.close()
    finally:
        await server.close()


def test_corrupt_database_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(ConfigError, match="corrupt or not a fastport database"):
        SqliteStore.open(f"sqlite:{bad}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastport",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--store",
            f"sqlite:{bad}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "corrupt or not a fastport database" in result.stderr.strip().splitlines()[-1]
    with pytest.raises(ConfigError, match="store must be sqlite:PATH"):
        SqliteStore.open("postgres://nope")
    with pytest.raises(ConfigError, match="unknown store option"):
        SqliteStore.open(f"sqlite:{tmp_path / 'x.db'}?sync=sometimes")


def test_missing_store_directory_stops_startup(tmp_path: Path) -> None:
    missing = f"sqlite:{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastport",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--store",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastport: error: "), result.stderr
    assert "does not exist" in lines[0]
    assert not (tmp_path / "nonexistent").exists()


async def test_database_and_wal_files_are_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        server = await _start(tmp_path)
        try:
            assert os.umask(0o022) == 0o022  # the umask is restored after the open
            await _create(server)  # a committed write: the -wal and -shm files exist while the store is open
            names = ("state.db", "state.db-wal", "state.db-shm")
            modes = {name: oct((tmp_path / name).stat().st_mode & 0o777) for name in names}
        finally:
            await server.close()
    finally:
        os.umask(previous)
    assert modes == dict.fromkeys(names, "0o600"), modes


class BrokerProcess:
    """A ``fastport serve --store`` process on a fixed port."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.tmp_path = tmp_path
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastport",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.tmp_path),
                # A long group commit: a broker that confirmed before committing would lose up to 300 ms.
                "--store",
                f"sqlite:{self.tmp_path / 'crash.db'}?group_commit_ms=300",
                "--log-level",
                "warning",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "FASTPORT_ADMIN_TOKEN": "t" * 32},
        )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                status, _, _ = await http(self.port, "GET", "/health")
                if status == 200:
                    return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError("broker did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_kill_9_loses_no_confirmed_message(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path, _free_port())
    broker.start()
    try:
        await broker.wait_ready()
        status, _, _ = await http(
            broker.port,
            "POST",
            "/api/createSession",
            {"sessionName": "keep", "password": "pw", "retryInterval": 60000},
            headers={"Authorization": "Bearer " + "t" * 32},
        )
        assert status == 200
        device, _ = await _durable(broker.port)
        await device.subscribe("stream")
        await device.close()
        publisher = await WSClient.connect(broker.port)
        await publisher.init("keep", "pw")
        published: list[str] = []
        confirmed: set[str] = set()
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:  # a publish stream, killed in the middle
            for _ in range(20):
                published.append(publisher.publish("stream", data=f"n{len(published)}"))
            while True:
                try:
                    frame = await publisher.recv(0.01)
                except TimeoutError:
                    break
                if frame.get("type") == "publish_response" and frame["success"]:
                    confirmed.add(frame["messageId"])
        broker.kill()
        assert confirmed, "nothing was confirmed before the kill"
        publisher.transport.disconnect(graceful=False)

        broker.start()
        await broker.wait_ready()
        device, response = await _durable(broker.port)
        assert response["resumed"] is True
        received: dict[str, int] = {}
        while True:
            try:
                frame = await device.recv(1.0)
            except TimeoutError:
                break
            if frame.get("type") == "message":
                received[frame["messageId"]] = received.get(frame["messageId"], 0) + 1
                device.send({"type": "ack", "topic": "stream", "messageId": frame["messageId"]})
        lost = confirmed - set(received)
        unexpected = set(received) - set(published)
        assert not lost, f"{len(lost)} confirmed message(s) lost of {len(confirmed)}"
        assert not unexpected
        # In publish order, each at least once (at-least-once allows a duplicate, never a gap).
        order = [message_id for message_id in published if message_id in received]
        assert order == sorted(order, key=published.index)
        await device.close()
    finally:
        if broker.process is not None and broker.process.poll() is None:
            broker.kill()

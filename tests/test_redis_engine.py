"""Scale-out through a real Redis: two broker nodes share sessions, messages, acks and control events."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastport_client_helpers import WSClient, http
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from fastport.config import ServerConfig
from fastport.engines.redis import RedisEngine
from fastport.errors import CloseCode
from fastport.server.app import FastportServer

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "t" * 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (OSError, RedisError):
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    if not await _redis_answers(REDIS_URL):
        pytest.fail("Redis on 127.0.0.1:6379 does not answer (.ci/run starts one)")
    value = f"fastport-test-{uuid.uuid4().hex[:12]}:"
    yield value
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=value + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


NodeFactory = Callable[..., Awaitable[FastportServer]]


@pytest.fixture
async def node(tmp_path: Path, prefix: str) -> AsyncIterator[NodeFactory]:
    started: list[FastportServer] = []

    async def start(url: str = REDIS_URL) -> FastportServer:
        server = await FastportServer.start(
            ServerConfig(port=0, data_dir=tmp_path, admin_token=TOKEN, engine=url, engine_prefix=prefix)
        )
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


async def _create(server: FastportServer, name: str = "shared") -> dict[str, Any]:
    status, _, body = await http(
        server.port,
        "POST",
        "/api/createSession",
        {"sessionName": name, "password": "pw", "retryInterval": 60000},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return {"status": status, **body}


async def _client(server: FastportServer, name: str = "shared") -> WSClient:
    client = await WSClient.connect(server.port)
    assert (await client.init(name, "pw"))["success"] is True
    return client


async def test_sessions_made_on_one_node_are_valid_on_every_node(node: NodeFactory) -> None:
    a, b = await node(), await node()
    assert (await _create(a))["status"] == 200
    again = await _create(b)
    assert again["status"] == 400 and again["error"] == "Session already exists"
    client = await _client(b)
    wrong = await WSClient.connect(b.port)
    assert (await wrong.init("shared", "nope"))["error"] == "Invalid password"
    for each in (client, wrong):
        await each.close()


async def test_publish_on_one_node_reaches_the_other_and_acks_come_back(node: NodeFactory) -> None:
    a, b = await node(), await node()
    await _create(a)
    publisher, local_sub, remote_sub = await _client(a), await _client(a), await _client(b)
    await local_sub.subscribe("x/#")
    await remote_sub.subscribe("x/+")
    message_id = publisher.publish("x/1", data="hello")
    assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1  # this node's subscribers
    assert (await local_sub.recv_type("message"))["messageId"] == message_id
    remote = await remote_sub.recv_type("message")
    assert remote["messageId"] == message_id and remote["data"] == "hello"
    remote_sub.send({"type": "ack", "topic": "x/1", "messageId": message_id})
    assert (await publisher.recv_type("ack_received"))["messageId"] == message_id
    local_sub.send({"type": "ack", "topic": "x/1", "messageId": message_id})
    await publisher.expect_silence(0.3)  # ack_received once
    await remote_sub.expect_silence(0.2)  # not redelivered: acked on its own node
    for each in (publisher, local_sub, remote_sub):
        await each.close()


async def test_drop_and_suspend_reach_every_node(node: NodeFactory) -> None:
    a, b = await node(), await node()
    created = await _create(a)
    on_a, on_b = await _client(a), await _client(b)
    status, _, _ = await http(
        b.port,
        "POST",
        "/api/suspendSession",
        {"sessionName": "shared", "password": "pw", "secretKey": created["secretKey"], "suspend": True},
    )
    assert status == 200
    await asyncio.sleep(0.3)
    on_a.publish("t")
    assert (await on_a.recv_type("publish_response"))["error"] == "Session suspended or invalid"
    status, _, _ = await http(
        a.port,
        "POST",
        "/api/dropSession",
        {"sessionName": "shared", "password": "pw", "secretKey": created["secretKey"]},
    )
    assert status == 200
    assert await on_b.wait_closed() == CloseCode.SESSION_DROPPED
    late = await WSClient.connect(b.port)
    assert (await late.init("shared", "pw"))["error"] == "Session not found"
    await late.close()


async def test_tenants_stay_apart_across_nodes(node: NodeFactory) -> None:
    a, b = await node(), await node()
    await _create(a, "one")
    await _create(a, "two")
    publisher, stranger = await _client(a, "one"), await _client(b, "two")
    await stranger.subscribe("#")
    publisher.publish("secret/topic", message_id="same-id")
    await publisher.recv_type("publish_response")
    await stranger.expect_silence(0.4)
    await publisher.close()
    await stranger.close()


class OwnRedis:
    """A redis-server of the test's own on a free port; each call starts it (again)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def __call__(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """Starts (and restarts) a redis-server of the test's own on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    redis = OwnRedis(binary, tmp_path)
    yield redis
    for process in redis.processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def _wait_redis(url: str) -> None:
    for _ in range(100):
        if await _redis_answers(url):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("redis-server did not start")


async def test_redis_outage_keeps_local_traffic_and_cross_node_delivery_resumes(
    node: NodeFactory, own_redis: OwnRedis
) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    redis_process = own_redis()
    await _wait_redis(url)
    a, b = await node(url), await node(url)
    await _create(a)
    publisher, local_sub, remote_sub = await _client(a), await _client(a), await _client(b)
    await local_sub.subscribe("t")
    await remote_sub.subscribe("t")
    await asyncio.sleep(0.2)
    redis_process.kill()
    redis_process.wait(timeout=10)
    # Redis is gone: nothing crashes, local publish/deliver/ack go on.
    during = publisher.publish("t", data="during")
    assert (await publisher.recv_type("publish_response"))["deliveredTo"] == 1
    assert (await local_sub.recv_type("message"))["messageId"] == during
    local_sub.send({"type": "ack", "topic": "t", "messageId": during})
    assert (await publisher.recv_type("ack_received"))["messageId"] == during
    status, _, _ = await http(a.port, "GET", "/health")
    assert status == 200
    engine = a.broker.cluster
    assert isinstance(engine, RedisEngine)
    for _ in range(50):
        if engine.outages:
            break
        await asyncio.sleep(0.1)
    assert engine.outages >= 1 and not engine.connected
    # Redis is back: the node reconnects and forwards what it held, in order.
    own_redis()
    await _wait_redis(url)
    got = await remote_sub.recv_type("message", timeout=15)
    assert got["messageId"] == during
    after = publisher.publish("t", data="after")
    assert (await remote_sub.recv_type("message", timeout=10))["messageId"] == after
    for each in (publisher, local_sub, remote_sub):
        await each.close()


def test_workers_need_an_engine_and_a_fixed_port(tmp_path: Path) -> None:
    for args, message in (
        (["--workers", "2", "--port", "3999"], "needs a shared engine"),
        (["--workers", "2", "--engine", REDIS_URL, "--port", "0"], "needs a fixed --port"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "fastport", "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr


async def test_workers_share_the_port_through_the_engine(tmp_path: Path, prefix: str) -> None:
    port = _free_port()
    # The parent runs on its own: Popen returns at once, and nothing here reads its pipes.
    parent = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "fastport",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--workers",
            "2",
            "--engine",
            REDIS_URL,
            "--engine-prefix",
            prefix,
            "--log-level",
            "warning",
        ],
        env={**os.environ, "FASTPORT_ADMIN_TOKEN": TOKEN},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, _ = await http(port, "GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "workers did not start"
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let both workers listen
        status, _, _ = await http(
            port,
            "POST",
            "/api/createSession",
            {"sessionName": "shared", "password": "pw"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert status == 200
        clients = []
        for _ in range(12):  # spread over both workers by the kernel
            client = await WSClient.connect(port)
            assert (await client.init("shared", "pw"))["success"] is True
            await client.subscribe("all")
            clients.append(client)
        publisher = clients[0]
        message_id = publisher.publish("all")
        await publisher.recv_type("publish_response")
        for client in clients[1:]:
            assert (await client.recv_type("message"))["messageId"] == message_id
        for client in clients:
            await client.close()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


async def _durable(server: FastportServer, client_id: str = "roamer") -> tuple[WSClient, dict[str, Any]]:
    client = await WSClient.connect(server.port)
    client.send({"type": "init", "sessionName": "shared", "password": "pw", "clientId": client_id, "durable": True})
    return client, await client.recv_type("init_response")


async def test_durable_client_resumes_on_another_node_with_its_held_messages(node: NodeFactory) -> None:
    a, b = await node(), await node()
    await _create(a)
    roamer, response = await _durable(a)
    assert response["resumed"] is False
    await roamer.subscribe("held/#")
    publisher = await _client(a)
    unacked = publisher.publish("held/0", data="sent")
    await roamer.recv_type("message")
    await roamer.close()
    queued = [publisher.publish(f"held/{index}", data=f"queued{index}") for index in range(1, 4)]
    for _ in range(4):
        await publisher.recv_type("publish_response")
    await asyncio.sleep(0.2)  # let A record that it owns the client
    moved, response = await _durable(b)
    assert response["resumed"] is True and response["subscriptions"] == ["held/#"]
    frames = [await moved.recv_type("message") for _ in range(4)]
    assert [frame["messageId"] for frame in frames] == [unacked, *queued]
    assert frames[0]["retry"] == 1
    for frame in frames:
        moved.send({"type": "ack", "topic": frame["topic"], "messageId": frame["messageId"]})
    acked = {(await publisher.recv_type("ack_received"))["messageId"] for _ in range(4)}
    assert acked == {unacked, *queued}
    # A no longer holds it; new messages from A reach it on B.
    shared = a.broker.sessions.get("shared")
    assert shared is not None and "roamer" not in shared.clients
    fresh = publisher.publish("held/new")
    assert (await moved.recv_type("message"))["messageId"] == fresh
    await moved.close()
    await publisher.close()


async def test_connecting_on_another_node_takes_the_durable_client_over(node: NodeFactory) -> None:
    a, b = await node(), await node()
    await _create(a)
    first, _ = await _durable(a)
    await first.subscribe("t")
    await asyncio.sleep(0.2)
    second, response = await _durable(b)
    assert response["resumed"] is True
    assert await first.wait_closed() == CloseCode.CLIENT_TAKEN_OVER
    await second.close()

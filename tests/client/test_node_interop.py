"""Interop with the original clients' format: a Node.js peer (ws + built-in crypto, v1 envelope) and
fastport.Client(envelope="v1") exchange messages both ways through a live broker, with acks.

Needs ``node`` and ``npm``; ``ws@8`` is installed once into the system temp dir and reused.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from clienttools import KEY, make_client
from fastport_client_helpers import SessionFactory

from fastport.server.app import FastportServer

WS_VERSION = "8"
SCRIPT = Path(__file__).parent / "node" / "interop.js"
NODE = shutil.which("node")
NPM = shutil.which("npm")
STEP_TIMEOUT_S = 10.0

pytestmark = pytest.mark.skipif(NODE is None or NPM is None, reason="node and npm are needed for the interop test")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``node_modules`` holding ``ws@8``, cached in the temp dir across runs."""
    cache = Path(tempfile.gettempdir()) / f"fastport-node-ws{WS_VERSION}"
    modules = cache / "node_modules"
    if (modules / "ws" / "package.json").exists():
        return modules
    staging = Path(tempfile.mkdtemp(prefix="fastport-node-ws-", dir=tempfile.gettempdir()))
    assert NPM is not None
    subprocess.run(
        [NPM, "install", "--no-audit", "--no-fund", "--prefix", str(staging), f"ws@{WS_VERSION}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        staging.rename(cache)  # atomic: a concurrent run that won the race keeps its copy
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return modules


async def read_event(process: asyncio.subprocess.Process, event: str) -> dict[str, Any]:
    """Read the Node peer's JSON lines until ``event`` (fail on its end or after the timeout)."""
    assert process.stdout is not None
    async with asyncio.timeout(STEP_TIMEOUT_S):
        while True:
            line = await process.stdout.readline()
            if not line:
                assert process.stderr is not None
                stderr = (await process.stderr.read()).decode("utf-8", "replace")
                raise AssertionError(f"node peer ended before {event!r}: {stderr[-2000:]}")
            record: dict[str, Any] = json.loads(line)
            if record["event"] == event:
                return record


async def test_node_v1_client_and_python_client_exchange_acked_messages(
    server: FastportServer, make_session: SessionFactory, node_modules: Path
) -> None:
    session = await make_session()
    assert NODE is not None
    async with make_client(server.port, session, envelope="v1") as client:
        from_node = client.subscribe("node/to/python")
        await from_node.ready()
        env = {
            **os.environ,
            "NODE_PATH": str(node_modules),
            "FP_URL": f"ws://127.0.0.1:{server.port}",
            "FP_SESSION": session["sessionName"],
            "FP_PASSWORD": session["password"],
            "FP_KEY": KEY,
            "FP_IN_TOPIC": "python/to/node",
            "FP_OUT_TOPIC": "node/to/python",
        }
        process = await asyncio.create_subprocess_exec(
            NODE, str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            await read_event(process, "ready")
            # Python -> Node: the Node peer checks the hash, decrypts and acks.
            result = await asyncio.wait_for(
                client.emit("python/to/node", "héllo from python ✓", wait_ack=True), STEP_TIMEOUT_S
            )
            assert result.acked is True and result.delivered_to == 1
            received = await read_event(process, "received")
            assert received["plaintext"] == "héllo from python ✓"
            assert received["messageId"] == result.message_id
            # Node -> Python: the client decrypts the v1 envelope and acks; Node gets ack_received.
            published = await read_event(process, "published")
            message = await asyncio.wait_for(from_node.__anext__(), STEP_TIMEOUT_S)
            assert message.payload == "node got: héllo from python ✓"
            assert message.message_id == published["messageId"]
            acked = await read_event(process, "ack_received")
            assert acked == {"event": "ack_received", "messageId": published["messageId"], "topic": "node/to/python"}
            assert await asyncio.wait_for(process.wait(), STEP_TIMEOUT_S) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert client.stats.rejected == 0 and client.stats.acks_sent == 1

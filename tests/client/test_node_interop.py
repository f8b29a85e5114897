"""Interop with the original clients' format: a Node.js peer (ws + built-in crypto, v1 envelope) and
fastport.Client(envelope="v1") exchange messages both ways through a live broker, with acks.

Needs ``node`` and the Node peer's dependency (``ws``, pinned in ``tests/client/node/package-lock.json``), which
``.ci/run`` installs before the suite with ``npm ci --prefix tests/client/node``; nothing is downloaded while the
tests run. Without them the test is skipped and says how to install them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from clienttools import KEY, make_client
from fastport_client_helpers import SessionFactory

from fastport.server.app import FastportServer

SCRIPT = Path(__file__).parent / "node" / "interop.js"
NODE = shutil.which("node")
NODE_MODULES = SCRIPT.parent / "node_modules"
STEP_TIMEOUT_S = 10.0

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is needed for the interop test"),
    pytest.mark.skipif(
        not (NODE_MODULES / "ws" / "package.json").exists(),
        reason="the Node peer's dependencies are missing: npm ci --prefix tests/client/node (.ci/run does it)",
    ),
]


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
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    assert NODE is not None
    async with make_client(server.port, session, envelope="v1") as client:
        from_node = client.subscribe("node/to/python")
        await from_node.ready()
        env = {
            **os.environ,
            "NODE_PATH": str(NODE_MODULES),
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

"""Shared helpers of the client tests: a Client factory against the live ``server`` fixture."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from fastport.client import Client, ReconnectPolicy

KEY = base64.b64encode(b"fastport-client-test-key-32bytes").decode()
WAIT_S = 5.0
FAST_RECONNECT = ReconnectPolicy(initial_delay_s=0.05, max_delay_s=0.2, jitter=0.1, max_attempts=50)


def make_client(port: int, session: dict[str, Any], **options: Any) -> Client:
    options.setdefault("reconnect", FAST_RECONNECT)
    options.setdefault("request_timeout_s", WAIT_S)
    return Client(
        f"ws://127.0.0.1:{port}", session["sessionName"], session["password"], options.pop("key", KEY), **options
    )


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` until it holds, or fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110  # a predicate of any state has no event to wait on
            await asyncio.sleep(0.01)

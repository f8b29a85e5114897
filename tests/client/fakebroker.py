"""A scripted WebSocket peer (picows server on 127.0.0.1, port 0) that records what the client sends.

It answers like the fastport broker by default (``init_response`` success, ``subscribe_response``,
``publish_response`` with ``deliveredTo`` 0); a test swaps ``answer`` to change that, and can
close or abort the current connection. Used for frame-level checks of fields the real broker
does not honour yet (qos, retain, clientId, durable) and for answers it cannot be made to skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

Answer = Callable[[dict[str, Any]], list[dict[str, Any]]]


def broker_like(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The fastport broker's answers to a well-formed frame."""
    kind = frame.get("type")
    if kind == "init":
        return [{"type": "init_response", "success": True, "sessionName": frame["sessionName"]}]
    if kind in ("subscribe", "unsubscribe"):
        return [{"type": f"{kind}_response", "success": True, "topic": frame["topic"]}]
    if kind == "publish":
        return [{"type": "publish_response", "success": True, "messageId": frame["messageId"], "deliveredTo": 0}]
    return []


class FakeBroker:
    """Records every JSON frame received, across connections, as (connection number, frame)."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.answer: Answer = broker_like
        self.connections = 0
        self.transport: WSTransport | None = None
        self.port = 0

    def _listener(self, request: WSUpgradeRequest) -> WSListener:
        broker = self

        class Peer(WSListener):
            def on_ws_connected(self, transport: WSTransport) -> None:
                broker.connections += 1
                self.number = broker.connections
                broker.transport = transport

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()
                    return
                if frame.msg_type != WSMsgType.TEXT:
                    return
                obj = orjson.loads(frame.get_payload_as_bytes())
                broker.frames.put_nowait((self.number, obj))
                for reply in broker.answer(obj):
                    transport.send(WSMsgType.TEXT, orjson.dumps(reply))

        return Peer()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(obj))

    def close(self, code: int) -> None:
        assert self.transport is not None
        # picows sends any int code; its stub only names the RFC 6455 ones.
        self.transport.send_close(WSCloseCode(code) if code < 3000 else cast(WSCloseCode, code), b"bye")
        self.transport.disconnect()

    def abort(self) -> None:
        assert self.transport is not None
        self.transport.underlying_transport.abort()

    async def next_frame(self, kind: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """Return the next recorded frame of ``type`` ``kind`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                number, frame = await self.frames.get()
                if frame.get("type") == kind:
                    return number, frame

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@asynccontextmanager
async def fake_broker() -> AsyncIterator[FakeBroker]:
    broker = FakeBroker()
    server = await ws_create_server(broker._listener, "127.0.0.1", 0)
    broker.port = server.sockets[0].getsockname()[1]
    try:
        yield broker
    finally:
        server.close()
        if broker.transport is not None and not broker.transport.is_disconnected:
            broker.transport.disconnect(graceful=False)
        await server.wait_closed()

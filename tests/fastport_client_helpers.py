"""Test helpers: a raw WebSocket client (picows) and a raw HTTP/1.1 client over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TIMEOUT_S = 5.0
ADMIN_USER = "admin"
ADMIN_PASS = "admin-secret"


class WSCollector(WSListener):
    def __init__(self) -> None:
        super().__init__()
        self.frames: asyncio.Queue[tuple[WSMsgType, bytes]] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""
        self.disconnected = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            code = frame.get_close_code()
            self.close_code = code.value if isinstance(code, WSCloseCode) else int(code)
            self.close_reason = frame.get_close_message().decode("utf-8", "replace")
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        self.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()


class WSClient:
    """A minimal fastPort-speaking test client: JSON frames in and out, no helpers hiding errors."""

    def __init__(self, transport: WSTransport, listener: WSCollector) -> None:
        self.transport = transport
        self.listener = listener

    @classmethod
    async def connect(cls, port: int, path: str = "/") -> WSClient:
        transport, listener = await ws_connect(WSCollector, f"ws://127.0.0.1:{port}{path}", max_frame_size=64 << 20)
        assert isinstance(listener, WSCollector)  # ws_connect is typed to return the base class
        return cls(transport, listener)

    def send(self, obj: Any) -> None:
        self.transport.send(WSMsgType.TEXT, orjson.dumps(obj))

    def send_raw(self, payload: bytes, msg_type: WSMsgType = WSMsgType.TEXT, fin: bool = True) -> None:
        self.transport.send(msg_type, payload, fin=fin)

    async def recv_raw(self, timeout: float = TIMEOUT_S) -> tuple[WSMsgType, bytes]:
        return await asyncio.wait_for(self.listener.frames.get(), timeout)

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        msg_type, payload = await self.recv_raw(timeout)
        assert msg_type == WSMsgType.TEXT, msg_type
        obj = json.loads(payload)
        assert isinstance(obj, dict)
        return obj

    async def recv_type(self, frame_type: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Receive frames until one of ``frame_type`` arrives; frames of other types are discarded."""
        while True:
            frame = await self.recv(timeout)
            if frame.get("type") == frame_type:
                return frame

    async def expect_silence(self, seconds: float = 0.3) -> None:
        try:
            frame = await asyncio.wait_for(self.listener.frames.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {frame!r}")

    async def init(self, session: str, password: str) -> dict[str, Any]:
        self.send({"type": "init", "sessionName": session, "password": password})
        return await self.recv_type("init_response")

    async def subscribe(self, topic: str) -> dict[str, Any]:
        self.send({"type": "subscribe", "topic": topic})
        return await self.recv_type("subscribe_response")

    def publish(self, topic: str, data: str = "payload", message_id: str | None = None, **extra: Any) -> str:
        message_id = message_id or str(uuid.uuid4())
        frame = {
            "type": "publish",
            "topic": topic,
            "data": data,
            "hash": "h",
            "timestamp": 1700000000000,
            "messageId": message_id,
            **extra,
        }
        self.send(frame)
        return message_id

    async def wait_closed(self, timeout: float = TIMEOUT_S) -> int | None:
        await asyncio.wait_for(self.listener.disconnected.wait(), timeout)
        return self.listener.close_code

    async def close(self) -> None:
        if not self.transport.is_disconnected:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()
            try:
                await asyncio.wait_for(self.transport.wait_disconnected(), TIMEOUT_S)
            except TimeoutError:
                self.transport.disconnect(graceful=False)


async def http(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 request on a fresh connection; returns (status, headers, decoded JSON body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        head += [f"{k}: {v}" for k, v in all_headers.items()]
        if payload or method == "POST":
            head.append(f"Content-Length: {len(payload)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT_S)
    finally:
        writer.close()
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    response_headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    length = int(response_headers.get("content-length", len(rest)))
    body = json.loads(rest[:length]) if length else None
    return status, response_headers, body


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


#: ``make_session(name=None, password="pw", **settings)`` -> the createSession response body.
SessionFactory = Callable[..., Awaitable[dict[str, Any]]]
#: ``connect(session=None)`` -> a WSClient, initialised when a session is given.
ClientFactory = Callable[..., Awaitable[WSClient]]

"""Tools of the hostile suite: a hand-made WebSocket client on a raw socket, and a bystander tenant.

``RawWS`` does the upgrade by hand and writes frames byte by byte as the test builds
them (any opcode, reserved bits, masking, lengths), then reads the server's frames
and its close code straight off the socket. ``Bystander`` is another tenant's
publisher and subscriber exchanging acked messages while an attack runs; ``check``
proves that it lost nothing and saw nothing foreign.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastport_client_helpers import TIMEOUT_S, WSClient

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    length_form: int | None = None,
) -> bytes:
    """One client frame, exactly as asked: ``length`` overrides the declared payload length,
    ``length_form`` (126 or 127) forces the 16- or 64-bit length encoding."""
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    form = (
        length_form if length_form is not None else (declared if declared < 126 else 126 if declared < 1 << 16 else 127)
    )
    if form < 126:
        header = bytes((first, mask_bit | declared))
    elif form == 126:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", declared)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", declared)
    if not masked:
        return header + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else _mask(payload, key)
    return header + key + body


def _mask(payload: bytes, key: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def upgrade_request(port: int, path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawWS:
    """A WebSocket client with no rules: the test writes the bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.head = head

    @classmethod
    async def open(cls, port: int, *, headers: dict[str, str] | None = None, expect: int = 101) -> RawWS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port, headers=headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
        status = int(head.split(b" ", 2)[1])
        assert status == expect, head
        return cls(reader, writer, status, head)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def frame(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        self.writer.write(build_frame(opcode, payload, **options))

    def text(self, obj: Any) -> None:
        self.frame(OP_TEXT, obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    async def read_frame(self, timeout: float = TIMEOUT_S) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame; asserts server frames are unmasked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return bool(first & 0x80), first & 0x0F, payload

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The next text frame as JSON (pongs skipped)."""
        while True:
            fin, opcode, payload = await self.read_frame(timeout)
            if opcode == OP_PONG:
                continue
            assert (fin, opcode) == (True, OP_TEXT), (fin, opcode, payload[:200])
            obj = json.loads(payload)
            assert isinstance(obj, dict)
            return obj

    async def expect_close(self, timeout: float = TIMEOUT_S) -> int | None:
        """Read until the server's close frame; returns its code (None: no code), then expects EOF."""
        while True:
            _, opcode, payload = await self.read_frame(timeout)
            if opcode == OP_CLOSE:
                break
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        if len(payload) > 2:
            payload[2:].decode("utf-8")  # the server's own reason is valid UTF-8
        await self.expect_eof(timeout)
        return code

    async def expect_eof(self, timeout: float = TIMEOUT_S) -> None:
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            return
        assert rest == b"", rest[:200]

    async def expect_silence(self, seconds: float = 0.3) -> None:
        try:
            frame = await asyncio.wait_for(self.read_frame(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {frame!r}")

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


RawFactory = Callable[..., Awaitable[RawWS]]
"""The ``raw`` fixture: opens a ``RawWS`` with ``RawWS.open``'s keyword options."""


class Bystander:
    """Another tenant's publisher and subscriber exchanging acked messages during an attack.

    The publisher sends one message at a time and waits for its ``publish_response``
    (delivered to 1) and its ``ack_received``; the subscriber acks every message. Any
    other frame either of them gets is recorded as unexpected.
    """

    TOPIC = "victim/readings"

    def __init__(self, session: dict[str, Any], publisher: WSClient, subscriber: WSClient) -> None:
        self.session = session
        self.publisher = publisher
        self.subscriber = subscriber
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.received: list[str] = []
        self.unexpected: list[Any] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        response = await self.subscriber.subscribe("victim/#")
        assert response["success"] is True, response
        self._tasks = [
            asyncio.get_running_loop().create_task(self._publish_loop()),
            asyncio.get_running_loop().create_task(self._subscribe_loop()),
        ]

    def data_of(self, message_id: str) -> str:
        return f"secret-of-{self.session['sessionName']}-{message_id}"

    async def _publish_loop(self) -> None:
        while not self._stop.is_set():
            message_id = str(uuid.uuid4())
            self.sent.append(message_id)
            self.publisher.publish(self.TOPIC, data=self.data_of(message_id), message_id=message_id)
            got_response = got_ack = False
            while not (got_response and got_ack):
                frame = await self.publisher.recv(timeout=TIMEOUT_S)
                if frame == {"type": "publish_response", "success": True, "messageId": message_id, "deliveredTo": 1}:
                    got_response = True
                elif frame == {"type": "ack_received", "messageId": message_id, "topic": self.TOPIC}:
                    got_ack = True
                    self.acked.append(message_id)
                else:
                    self.unexpected.append(("publisher", frame))
            await asyncio.sleep(0.005)

    async def _subscribe_loop(self) -> None:
        while True:
            frame = await self.subscriber.recv(timeout=3600)
            message_id = frame.get("messageId")
            if (
                frame.get("type") == "message"
                and frame.get("topic") == self.TOPIC
                and isinstance(message_id, str)
                and frame.get("data") == self.data_of(message_id)
                and "retry" not in frame
            ):
                self.received.append(message_id)
                self.subscriber.send({"type": "ack", "topic": self.TOPIC, "messageId": message_id})
            else:
                self.unexpected.append(("subscriber", frame))

    async def check(self, min_messages: int = 3) -> None:
        """Stop the exchange and assert that it lost nothing, repeated nothing and saw nothing foreign."""
        publish_task, subscribe_task = self._tasks
        deadline = asyncio.get_running_loop().time() + TIMEOUT_S
        while len(self.acked) < min_messages and not publish_task.done():
            assert asyncio.get_running_loop().time() < deadline, "the bystander's traffic stalled"
            await asyncio.sleep(0.01)
        self._stop.set()
        await asyncio.wait_for(publish_task, TIMEOUT_S)  # re-raises a timeout of the exchange
        await asyncio.sleep(0.05)
        subscribe_task.cancel()
        assert self.unexpected == []
        assert self.acked == self.sent
        assert self.received == self.sent
        assert self.publisher.transport.is_disconnected is False
        assert self.subscriber.transport.is_disconnected is False

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

"""The shared port: HTTP parsing, keep-alive and pipelining, limits, and the handover to picows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastport_client_helpers import ClientFactory, SessionFactory, WSClient, parse_response
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # real class, missing from picows's stub
from picows.version import __version__ as picows_version

from fastport.config import ServerConfig
from fastport.errors import ErrorCode
from fastport.server.app import FastportServer

pytestmark = pytest.mark.both_loops


async def _exchange(port: int, data: bytes, *, until_eof: bool = True, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if until_eof:
            return await asyncio.wait_for(reader.read(), timeout)
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


def _split_responses(data: bytes) -> list[tuple[int, dict[str, str], Any]]:
    responses = []
    while data:
        status, headers, body = parse_response(data)
        head_end = data.index(b"\r\n\r\n") + 4
        data = data[head_end + int(headers.get("content-length", "0")) :]
        responses.append((status, headers, body))
    return responses


async def test_websocket_upgrade_is_handed_to_picows_on_any_path(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    client = await WSClient.connect(server.port, "/any/path?x=1")
    try:
        assert (await client.init(session["sessionName"], "pw"))["success"] is True
        # After the handover the socket belongs to picows alone: no fastport code per frame.
        (listener,) = server._listeners
        assert listener._transport is not None
        assert isinstance(listener._transport.underlying_transport.get_protocol(), WSProtocol)
    finally:
        await client.close()


def test_picows_version_is_the_tested_one() -> None:
    major, minor = (int(part) for part in picows_version.split(".")[:2])
    assert (major, minor) == (2, 3), "make_ws_protocol builds WSProtocol by its private constructor: re-verify it"


async def test_keep_alive_serves_several_requests_on_one_connection(server: FastportServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(3):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: keep-alive" in head
            length = int(
                next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length")).split(b":")[1]
            )
            await reader.readexactly(length)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(server: FastportServer, admin_headers: dict[str, str]) -> None:
    body = b'{"sessionName": "piped", "password": "pw"}'
    auth = admin_headers["Authorization"].encode()
    data = (
        b"POST /api/createSession HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    responses = _split_responses(await _exchange(server.port, data))
    assert [status for status, _, _ in responses] == [200, 200, 404]
    assert responses[1][2]["sessions"] == 1


async def test_chunked_request_body(server: FastportServer, admin_headers: dict[str, str]) -> None:
    body = b'{"sessionName": "chunky", "password": "pw"}'
    auth = admin_headers["Authorization"].encode()
    data = (
        b"POST /api/createSession HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{10:x}".encode()
        + b"\r\n"
        + body[:10]
        + b"\r\n"
        + f"{len(body) - 10:x}".encode()
        + b"\r\n"
        + body[10:]
        + b"\r\n0\r\n\r\n"
    )
    ((status, headers, response),) = _split_responses(await _exchange(server.port, data))
    assert status == 200 and response["sessionName"] == "chunky"
    assert headers["connection"] == "close"


async def test_head_too_large_is_431(server: FastportServer) -> None:
    data = b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000
    ((status, _, body),) = _split_responses(await _exchange(server.port, data))
    assert status == 431 and body["code"] == ErrorCode.MALFORMED_REQUEST


async def test_malformed_request_line_is_400(server: FastportServer) -> None:
    ((status, _, _),) = _split_responses(await _exchange(server.port, b"\x16\x03\x01garbage\r\n\r\n"))
    assert status == 400


async def test_declared_body_over_limit_is_413_before_reading_it(server: FastportServer) -> None:
    data = b"POST /api/createSession HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
    ((status, _, body),) = _split_responses(await _exchange(server.port, data))
    assert status == 413 and body["code"] == ErrorCode.BODY_TOO_LARGE


async def test_expect_100_continue(server: FastportServer) -> None:
    data = b"POST /api/dropSession HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 400")
    finally:
        writer.close()


async def test_slow_request_head_times_out_with_408(tmp_path: Path) -> None:
    srv = await FastportServer.start(ServerConfig(port=0, data_dir=tmp_path, http_head_timeout_s=0.3))
    try:
        data = await _exchange(srv.port, b"GET /health HTTP/1.1\r\nHost:", timeout=3)
        status, _, _ = parse_response(data)
        assert status == 408
        idle = await _exchange(srv.port, b"", timeout=3)
        assert idle == b""
    finally:
        await srv.close()


async def test_websocket_after_http_on_the_same_server(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    client = await connect(session)
    assert (await client.subscribe("t"))["success"] is True

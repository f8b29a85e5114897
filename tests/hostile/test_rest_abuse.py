"""REST abuse: malformed and huge bodies, wrong methods, garbage auth, smuggling and injection attempts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
from typing import Any

import pytest
from fastport_client_helpers import http, parse_response

from fastport.errors import ErrorCode
from fastport.server.app import FastportServer

from .hostile_helpers import Bystander


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


def _request(method: str, path: str, headers: list[str], body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    ).encode("latin-1") + body


def _status(data: bytes) -> tuple[int, Any]:
    status, _, body = parse_response(data)
    return status, body


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"\xff\xfe", "request body is not valid JSON"),
        (b"[1,2]", "request body must be a JSON object"),
        (b'"text"', "request body must be a JSON object"),
        (b"[" * 5000 + b"]" * 5000, "request body is not valid JSON"),
    ],
)
async def test_malformed_bodies_get_400(server: FastportServer, bystander: Bystander, body: bytes, error: str) -> None:
    status, _, answer = await http(server.port, "POST", "/api/dropSession", raw_body=body)
    assert (status, answer) == (400, {"success": False, "error": error, "code": ErrorCode.MALFORMED_REQUEST})
    await bystander.check()


async def test_huge_body_gets_413_before_it_is_read(server: FastportServer, bystander: Bystander) -> None:
    size = server.config.max_body_size + 1
    data = await _raw(server.port, _request("POST", "/api/createSession", [f"Content-Length: {size}"]))
    status, answer = _status(data)
    assert status == 413 and answer["code"] == ErrorCode.BODY_TOO_LARGE
    assert server.counters.http_body_too_large == 1
    await bystander.check()


async def test_huge_chunked_body_gets_413(server: FastportServer, bystander: Bystander) -> None:
    chunk = b"a" * 8192
    body = b"".join(b"2000\r\n" + chunk + b"\r\n" for _ in range(server.config.max_body_size // 8192 + 2))
    data = await _raw(server.port, _request("POST", "/api/createSession", ["Transfer-Encoding: chunked"], body))
    assert _status(data)[0] == 413
    await bystander.check()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/createSession", "POST"),
        ("PUT", "/api/dropSession", "POST"),
        ("DELETE", "/api/suspendSession", "POST"),
        ("POST", "/health", "GET"),
        ("POST", "/metrics", "GET"),
    ],
)
async def test_wrong_methods_get_405(
    server: FastportServer, bystander: Bystander, method: str, path: str, allow: str
) -> None:
    status, headers, answer = await http(server.port, method, path)
    assert status == 405 and headers["allow"] == allow and answer["code"] == ErrorCode.METHOD_NOT_ALLOWED
    await bystander.check()


async def test_unknown_method_gets_400(server: FastportServer, bystander: Bystander) -> None:
    data = await _raw(server.port, _request("FROB", "/health", []))
    assert _status(data) == (
        400,
        {"success": False, "error": "malformed HTTP request", "code": ErrorCode.MALFORMED_REQUEST},
    )
    await bystander.check()


ADMIN_FAILURES = [
    (None, 3007),
    ("", 3007),
    ("Bearer", 3008),
    ("Bearer ", 3008),
    ("Bearer wrong-token-wrong-token", 3008),
    ("Basic !!!not-base64!!!", 3008),
    ("Basic " + base64.b64encode(b"admin:wrong").decode(), 3008),
    ("Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(), 3008),
    ("Digest username=admin", 3008),
    ("x" * 8000, 3008),
]


@pytest.mark.parametrize(("authorization", "code"), ADMIN_FAILURES)
async def test_bad_admin_credentials_get_401(
    server: FastportServer, bystander: Bystander, authorization: str | None, code: int
) -> None:
    headers = ["Content-Type: application/json", "Content-Length: 35"]
    if authorization is not None:
        headers.append(f"Authorization: {authorization}")
    data = await _raw(
        server.port,
        _request("POST", "/api/createSession", headers, b'{"sessionName":"x","password":"y"}'[:35].ljust(35)),
    )
    status, answer = _status(data)
    assert status == 401 and answer["code"] == code, answer
    await bystander.check()


@pytest.mark.parametrize("value", [b"Bearer \xe9\xe8\xff", "Bearer тайна".encode(), b"Basic \xc3\x28"])
async def test_non_ascii_authorization_gets_401(server: FastportServer, bystander: Bystander, value: bytes) -> None:
    head = (
        b"POST /api/createSession HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\nAuthorization: "
        + value
        + b"\r\n\r\n{}"
    )
    status, answer = _status(await _raw(server.port, head))
    assert status == 401 and answer["code"] == ErrorCode.ADMIN_AUTH_INVALID
    await bystander.check()


async def test_session_owner_credentials_of_another_tenant_are_refused(
    server: FastportServer, bystander: Bystander, attacker: dict[str, Any]
) -> None:
    # The attacker's own secret key with the victim's name and password guesses.
    for body in (
        {"sessionName": "victim", "password": "guess", "secretKey": attacker["secretKey"]},
        {"sessionName": "victim", "password": "victim-password", "secretKey": attacker["secretKey"]},
    ):
        status, _, answer = await http(server.port, "POST", "/api/dropSession", body)
        assert (status, answer["error"]) == (400, "Invalid credentials"), answer
    assert server.counters.owner_auth_failures == 2
    await bystander.check()


async def test_header_injection_in_a_session_name_is_refused(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander
) -> None:
    body = {"sessionName": "evil\r\nSet-Cookie: pwned=1", "password": "p"}
    status, headers, answer = await http(server.port, "POST", "/api/createSession", body, headers=admin_headers)
    assert status == 400 and answer["field"] == "sessionName" and "set-cookie" not in headers
    await bystander.check()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health%0d%0aSet-Cookie:%20x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Evil: a\rSet-Cookie: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\nX-Evil: a\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n",
        b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ],
    ids=["encoded-crlf-in-path", "bare-cr-in-header", "bare-lf", "obs-fold", "nul-in-path"],
)
async def test_injection_attempts_never_reach_the_response_head(
    server: FastportServer, bystander: Bystander, request_bytes: bytes
) -> None:
    data = await _raw(server.port, request_bytes)
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert b"set-cookie" not in head and b"x-evil" not in head
    assert _status(data)[0] in (400, 404)
    await bystander.check()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (["Content-Length: 99999999999999999999999999"], 400),
        (["Content-Length: 9223372036854775807"], 413),
        (["Content-Length: -1"], 400),
        (["Content-Length: 1e3"], 400),
        (["Content-Length: 5", "Content-Length: 6"], 400),
        (["Content-Length: 2", "Transfer-Encoding: chunked"], 400),
        (["Transfer-Encoding: chunked", "Content-Length: 2"], 400),
        (["Transfer-Encoding: gzip, chunked, identity"], 400),
    ],
    ids=["absurd", "int64-max", "negative", "float", "two-lengths", "cl-then-te", "te-then-cl", "te-not-last"],
)
async def test_bad_framing_headers(
    server: FastportServer, bystander: Bystander, headers: list[str], status: int
) -> None:
    data = await _raw(server.port, _request("POST", "/api/dropSession", headers, b"{}"))
    assert _status(data)[0] == status, data[:200]
    await bystander.check()


async def test_pipelined_smuggling_attempt_is_answered_once(server: FastportServer, bystander: Bystander) -> None:
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    data = await _raw(
        server.port,
        _request(
            "POST", "/api/dropSession", ["Content-Length: 2", "Transfer-Encoding: chunked"], b"0\r\n\r\n" + smuggled
        ),
    )
    assert data.count(b"HTTP/1.1 ") == 1 and _status(data)[0] == 400
    await bystander.check()


async def test_head_over_16k_gets_431(server: FastportServer, bystander: Bystander) -> None:
    data = await _raw(server.port, _request("GET", "/health", [f"X-Pad: {'a' * 17000}"]))
    assert _status(data)[0] == 431
    await bystander.check()


CSRF_CONTENT_TYPES = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/jsonp",
    "application/json, text/plain",
]


@pytest.mark.parametrize("content_type", CSRF_CONTENT_TYPES)
async def test_cross_site_content_types_cannot_create_a_session(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander, content_type: str
) -> None:
    # A browser sends these cross-site without a CORS preflight, with cached credentials.
    body = {"sessionName": "csrf", "password": "pw"}
    headers = {**admin_headers, "Content-Type": content_type}
    status, _, answer = await http(server.port, "POST", "/api/createSession", body, headers=headers)
    assert (status, answer) == (
        415,
        {"success": False, "error": "Content-Type must be application/json", "code": ErrorCode.UNSUPPORTED_MEDIA_TYPE},
    )
    assert server.broker.sessions.get("csrf") is None
    assert server.counters.admin_auth_failures == 0
    await bystander.check()


@pytest.mark.parametrize("path", ["/api/dropSession", "/api/suspendSession"])
async def test_cross_site_content_types_cannot_drop_or_suspend(
    server: FastportServer, bystander: Bystander, path: str
) -> None:
    session = bystander.session
    body = {"sessionName": session["sessionName"], "password": "victim-password", "secretKey": session["secretKey"]}
    status, _, answer = await http(
        server.port, "POST", path, {**body, "suspend": True}, headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and answer["code"] == ErrorCode.UNSUPPORTED_MEDIA_TYPE
    victim = server.broker.sessions.get(session["sessionName"])
    assert victim is not None and not victim.suspended
    await bystander.check()


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"]
)
async def test_json_content_types_are_accepted(
    server: FastportServer, admin_headers: dict[str, str], content_type: str
) -> None:
    headers = {**admin_headers, "Content-Type": content_type}
    status, _, answer = await http(
        server.port, "POST", "/api/createSession", {"sessionName": "ok", "password": "pw"}, headers=headers
    )
    assert status == 200, answer


@pytest.mark.parametrize("path", ["/api/createSession", "/api/dropSession", "/api/suspendSession", "/health"])
async def test_options_preflight_stays_closed(server: FastportServer, bystander: Bystander, path: str) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    status, headers, answer = await http(server.port, "OPTIONS", path, headers=preflight)
    assert status == 405 and answer["code"] == ErrorCode.METHOD_NOT_ALLOWED
    assert not [name for name in headers if name.startswith("access-control-")]
    await bystander.check()


async def test_105_parallel_unauthenticated_create_sessions_meet_429(
    server: FastportServer, bystander: Bystander
) -> None:
    # The original fastPort's tests/test_security.js: 105 parallel calls, at least one 429.
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}
    body = {"sessionName": "brute", "password": "pw"}
    answers = await asyncio.gather(
        *(http(server.port, "POST", "/api/createSession", body, headers=wrong if i % 2 else None) for i in range(105))
    )
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {401, 429} and statuses.count(401) == 20, statuses
    throttled = [(headers, answer) for status, headers, answer in answers if status == 429]
    assert all(int(headers["retry-after"]) >= 1 for headers, _ in throttled)
    assert all(answer["code"] == ErrorCode.AUTH_THROTTLED for _, answer in throttled)
    assert server.counters.rest_auth_throttled == 85 and server.counters.rest_auth_delayed == 15
    assert server.broker.sessions.get("brute") is None
    assert (await http(server.port, "GET", "/health"))[0] == 200  # the broker survives
    await bystander.check()


async def test_a_throttled_address_is_refused_even_with_the_right_credential(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander
) -> None:
    wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
    body = {"sessionName": "late", "password": "pw"}
    await asyncio.gather(*(http(server.port, "POST", "/api/createSession", body, headers=wrong) for _ in range(20)))
    status, headers, answer = await http(server.port, "POST", "/api/createSession", body, headers=admin_headers)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60, answer
    assert server.broker.sessions.get("late") is None
    status, _, _ = await http(server.port, "GET", "/metrics", headers=admin_headers)
    assert status == 429  # /metrics checks the admin credential too
    await bystander.check()


async def test_session_owner_guesses_are_throttled(
    server: FastportServer, bystander: Bystander, attacker: dict[str, Any]
) -> None:
    guess = {"sessionName": "victim", "password": "guess", "secretKey": attacker["secretKey"]}
    answers = await asyncio.gather(*(http(server.port, "POST", "/api/dropSession", guess) for _ in range(30)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(400) == 20 and statuses.count(429) == 10, statuses
    assert server.counters.owner_auth_failures == 20
    assert server.broker.sessions.get("victim") is not None
    await bystander.check()


async def test_refused_credentials_are_logged_without_the_credential(
    server: FastportServer, bystander: Bystander, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Sup3rS3cretGuess"
    wrong = {"Authorization": "Basic " + base64.b64encode(f"admin:{secret}".encode()).decode()}
    with caplog.at_level(logging.WARNING, logger="fastport.http"):
        await asyncio.gather(
            *(
                http(server.port, "POST", "/api/createSession", {"sessionName": "x", "password": "y"}, headers=wrong)
                for _ in range(15)
            )
        )
    lines = [r.getMessage() for r in caplog.records if "refused admin credential" in r.getMessage()]
    assert len(lines) == 10 and "127.0.0.1" in lines[0]  # one line per failure, at most 10 per 10 s
    assert not [r for r in caplog.records if secret in r.getMessage() or wrong["Authorization"] in r.getMessage()]
    await bystander.check()


def _post_huge_body(port: int, size: int) -> bytes:
    """Write a ``size``-byte body from a thread while this one reads the answer (blocking sockets)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = _request("POST", "/api/createSession", ["Content-Type: application/json", f"Content-Length: {size}"])

    def write() -> None:
        with contextlib.suppress(OSError):  # the server may stop reading once it has drained enough
            sock.sendall(head + b"a" * size)

    writer = threading.Thread(target=write)
    writer.start()
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        writer.join()
        sock.close()
    return bytes(received)


async def test_a_16_mib_body_reads_its_413(server: FastportServer, bystander: Bystander) -> None:
    data = await asyncio.to_thread(_post_huge_body, server.port, 16 << 20)
    status, answer = _status(data)
    assert status == 413 and answer["code"] == ErrorCode.BODY_TOO_LARGE, data[:300]
    assert answer["success"] is False and "too large" in answer["error"]
    await bystander.check()


async def _write_until_reset(writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            writer.write(b"x" * 4096)
            await writer.drain()
            await asyncio.sleep(0.05)
    except ConnectionError:
        return


async def test_the_lingering_close_is_bounded_in_time(server: FastportServer, bystander: Bystander) -> None:
    # A client that declares a huge body and trickles it: answered, drained for 2 s, then closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    try:
        writer.write(_request("POST", "/api/createSession", ["Content-Length: 99999999"], b"a" * 1000))
        started = loop.time()
        data = await asyncio.wait_for(reader.read(), 5.0)
        assert _status(data)[0] == 413  # the answer, then EOF: the write side is shut at once
        await asyncio.wait_for(_write_until_reset(writer), 5.0)
        assert 1.5 <= loop.time() - started < 5.0
    finally:
        writer.close()
    await bystander.check()

"""docs/protocol.md §2 over real HTTP: every row of the REST session API, plus /health and the error statuses."""

from __future__ import annotations

from typing import Any

import pytest
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, ClientFactory, SessionFactory, basic, http

from fastport.errors import CloseCode, ErrorCode
from fastport.server.admin import AdminAuth, AuthThrottle
from fastport.server.app import FastportServer
from fastport.server.http import Request, RestApi


async def test_create_session_with_basic_auth(server: FastportServer) -> None:
    status, headers, body = await http(
        server.port,
        "POST",
        "/api/createSession",
        {"sessionName": "alpha", "password": "pw"},
        headers=basic(ADMIN_USER, ADMIN_PASS),
    )
    assert status == 200 and headers["content-type"] == "application/json"
    assert body["success"] is True and body["sessionName"] == "alpha" and body["password"] == "pw"
    assert len(body["secretKey"]) == 64 and int(body["secretKey"], 16) >= 0
    assert body["retryInterval"] == 5000 and body["maxRetryLimit"] == 100
    assert body["messageExpiryTime"] is None and body["sessionExpiry"] is None


async def test_create_session_with_bearer_token(server: FastportServer, admin_headers: dict[str, str]) -> None:
    status, _, body = await http(
        server.port,
        "POST",
        "/api/createSession",
        {
            "sessionName": "beta",
            "password": "pw",
            "retryInterval": 1000,
            "maxRetryLimit": 3,
            "messageExpiryTime": 60000,
        },
        headers=admin_headers,
    )
    assert status == 200, body
    assert (body["retryInterval"], body["maxRetryLimit"], body["messageExpiryTime"]) == (1000, 3, 60000)


async def test_secret_keys_differ_between_sessions(make_session: SessionFactory) -> None:
    first, second = await make_session(), await make_session()
    assert first["secretKey"] != second["secretKey"]


@pytest.mark.parametrize(
    ("headers", "error", "code"),
    [
        ({}, "Missing Authorization Header", ErrorCode.ADMIN_AUTH_MISSING),
        (basic(ADMIN_USER, "wrong"), "Unauthorized: Invalid Admin Credentials", ErrorCode.ADMIN_AUTH_INVALID),
        (
            {"Authorization": "Bearer wrong-token"},
            "Unauthorized: Invalid Admin Credentials",
            ErrorCode.ADMIN_AUTH_INVALID,
        ),
        ({"Authorization": "Digest abc"}, "Unauthorized: Invalid Admin Credentials", ErrorCode.ADMIN_AUTH_INVALID),
        (
            {"Authorization": "Basic !!!not-base64"},
            "Unauthorized: Invalid Admin Credentials",
            ErrorCode.ADMIN_AUTH_INVALID,
        ),
    ],
)
async def test_create_session_admin_auth_failures(
    server: FastportServer, headers: dict[str, str], error: str, code: ErrorCode
) -> None:
    status, _, body = await http(
        server.port, "POST", "/api/createSession", {"sessionName": "x", "password": "y"}, headers=headers
    )
    assert status == 401
    assert body["error"] == error and body["code"] == code


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"password": "p"}, "sessionName", "sessionName and password are required"),
        ({"sessionName": "n"}, "password", "sessionName and password are required"),
        ({"sessionName": "", "password": "p"}, "sessionName", "sessionName and password are required"),
        ({"sessionName": 5, "password": "p"}, "sessionName", "sessionName must be a string"),
        ({"sessionName": "n", "password": ["p"]}, "password", "password must be a string"),
        ({"sessionName": "n", "password": "p", "retryInterval": "fast"}, "retryInterval", None),
        ({"sessionName": "n", "password": "p", "retryInterval": 1}, "retryInterval", None),
        ({"sessionName": "n", "password": "p", "retryInterval": True}, "retryInterval", None),
        ({"sessionName": "n", "password": "p", "maxRetryLimit": -1}, "maxRetryLimit", None),
        ({"sessionName": "n", "password": "p", "maxRetryLimit": 10**9}, "maxRetryLimit", None),
        ({"sessionName": "n", "password": "p", "messageExpiryTime": 1.5}, "messageExpiryTime", None),
        ({"sessionName": "n", "password": "p", "sessionExpiry": "yesterday"}, "sessionExpiry", None),
        ({"sessionName": "n", "password": "p", "sessionExpiry": 1000}, "sessionExpiry", None),
        ({"sessionName": "n\x01", "password": "p"}, "sessionName", None),
    ],
)
async def test_create_session_validation(
    server: FastportServer, admin_headers: dict[str, str], body: dict[str, Any], field: str, error: str | None
) -> None:
    status, _, response = await http(server.port, "POST", "/api/createSession", body, headers=admin_headers)
    assert status == 400, response
    assert response["success"] is False and response["field"] == field
    if error is not None:
        assert response["error"] == error


async def test_create_existing_session(
    make_session: SessionFactory, server: FastportServer, admin_headers: dict[str, str]
) -> None:
    await make_session("dup")
    status, _, body = await http(
        server.port, "POST", "/api/createSession", {"sessionName": "dup", "password": "other"}, headers=admin_headers
    )
    assert status == 400 and body == {
        "success": False,
        "error": "Session already exists",
        "code": ErrorCode.SESSION_EXISTS,
    }


async def test_malformed_json_and_non_object_bodies(server: FastportServer, admin_headers: dict[str, str]) -> None:
    for raw in (b"{oops", b"[1,2]", b'"text"', b"\xff\xfe"):
        status, _, body = await http(server.port, "POST", "/api/createSession", raw_body=raw, headers=admin_headers)
        assert status == 400 and body["code"] == ErrorCode.MALFORMED_REQUEST, raw


async def test_drop_session_closes_every_socket_and_forgets_everything(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer
) -> None:
    session = await make_session()
    subscribed, idle = await connect(session), await connect(session)
    await subscribed.subscribe("t")
    status, _, body = await http(
        server.port,
        "POST",
        "/api/dropSession",
        {"sessionName": session["sessionName"], "password": "pw", "secretKey": session["secretKey"]},
    )
    assert (status, body) == (200, {"success": True})
    assert await subscribed.wait_closed() == CloseCode.SESSION_DROPPED
    assert await idle.wait_closed() == CloseCode.SESSION_DROPPED
    late = await connect()
    assert (await late.init(session["sessionName"], "pw"))["error"] == "Session not found"
    assert server.broker.stats()["sessions"] == 0


@pytest.mark.parametrize("path", ["/api/dropSession", "/api/suspendSession"])
async def test_owner_operations_refuse_bad_credentials(
    make_session: SessionFactory, server: FastportServer, path: str
) -> None:
    session = await make_session()
    base = {"sessionName": session["sessionName"], "password": "pw", "secretKey": session["secretKey"], "suspend": True}
    cases = [
        ({**base, "sessionName": "missing"}, "Session not found", ErrorCode.SESSION_NOT_FOUND),
        ({**base, "password": "wrong"}, "Invalid credentials", ErrorCode.INVALID_CREDENTIALS),
        ({**base, "secretKey": "0" * 64}, "Invalid credentials", ErrorCode.INVALID_CREDENTIALS),
    ]
    for body, error, code in cases:
        status, _, response = await http(server.port, "POST", path, body)
        assert status == 400 and response["error"] == error and response["code"] == code, body
    for missing in ("sessionName", "password", "secretKey"):
        body = {k: v for k, v in base.items() if k != missing}
        status, _, response = await http(server.port, "POST", path, body)
        assert status == 400 and response["field"] == missing


async def test_the_admin_credential_alone_drops_and_suspends(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer, admin_headers: dict[str, str]
) -> None:
    session = await make_session()
    name = session["sessionName"]
    # The admin credential and no session credential: allowed (a tenant whose secretKey is lost can be removed).
    status, _, body = await http(
        server.port, "POST", "/api/suspendSession", {"sessionName": name, "suspend": True}, headers=admin_headers
    )
    assert (status, body) == (200, {"success": True, "suspended": True})
    assert (await (await connect()).init(name, "pw"))["error"] == "Session is suspended"
    # Session credentials, when given, are checked, admin header or not: wrong ones are refused.
    wrong = {"sessionName": name, "password": "wrong", "secretKey": session["secretKey"]}
    status, _, body = await http(server.port, "POST", "/api/dropSession", wrong, headers=admin_headers)
    assert status == 400 and body["code"] == ErrorCode.INVALID_CREDENTIALS
    # A wrong admin credential and no session credential: 401, nothing dropped.
    status, _, body = await http(
        server.port, "POST", "/api/dropSession", {"sessionName": name}, headers=basic("x", "y")
    )
    assert status == 401 and server.broker.stats()["sessions"] == 1
    # Neither credential: the owner's fields are required, as before.
    status, _, body = await http(server.port, "POST", "/api/dropSession", {"sessionName": name})
    assert status == 400 and body["field"] == "password"
    # The admin credential alone drops it; an unknown name is "Session not found".
    status, _, body = await http(server.port, "POST", "/api/dropSession", {"sessionName": name}, headers=admin_headers)
    assert (status, body) == (200, {"success": True})
    assert server.broker.stats()["sessions"] == 0
    status, _, body = await http(server.port, "POST", "/api/dropSession", {"sessionName": name}, headers=admin_headers)
    assert status == 400 and body["code"] == ErrorCode.SESSION_NOT_FOUND


async def test_suspend_and_resume(make_session: SessionFactory, connect: ClientFactory, server: FastportServer) -> None:
    session = await make_session()
    connected = await connect(session)
    owner = {"sessionName": session["sessionName"], "password": "pw", "secretKey": session["secretKey"]}
    status, _, body = await http(server.port, "POST", "/api/suspendSession", {**owner, "suspend": True})
    assert (status, body) == (200, {"success": True, "suspended": True})
    newcomer = await connect()
    assert (await newcomer.init(session["sessionName"], "pw"))["error"] == "Session is suspended"
    connected.publish("t")
    refused = await connected.recv()
    assert refused["type"] == "publish_response" and refused["error"] == "Session suspended or invalid"
    assert refused["code"] == ErrorCode.SESSION_INVALID
    status, _, body = await http(server.port, "POST", "/api/suspendSession", {**owner, "suspend": False})
    assert (status, body) == (200, {"success": True, "suspended": False})
    connected.publish("t")
    assert (await connected.recv())["success"] is True
    assert (await newcomer.init(session["sessionName"], "pw"))["success"] is True
    status, _, body = await http(server.port, "POST", "/api/suspendSession", {**owner, "suspend": "yes"})
    assert status == 400 and body["field"] == "suspend"


async def test_health(server: FastportServer, make_session: SessionFactory, connect: ClientFactory) -> None:
    await connect(await make_session())
    status, _, body = await http(server.port, "GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["sessions"] == 1 and body["connections"] == 1
    assert body["uptimeSeconds"] >= 0 and body["implementation"] in ("compiled", "python")


async def test_unknown_path_and_wrong_method(server: FastportServer) -> None:
    status, _, body = await http(server.port, "GET", "/api/nothing")
    assert status == 404 and body["code"] == ErrorCode.ROUTE_NOT_FOUND
    status, headers, body = await http(server.port, "GET", "/api/createSession")
    assert status == 405 and headers["allow"] == "POST" and body["code"] == ErrorCode.METHOD_NOT_ALLOWED
    status, headers, _ = await http(server.port, "POST", "/health")
    assert status == 405 and headers["allow"] == "GET"


async def test_body_over_the_limit_is_413(server: FastportServer, admin_headers: dict[str, str]) -> None:
    big = b'{"sessionName": "' + b"x" * (server.config.max_body_size + 10) + b'"}'
    status, _, body = await http(server.port, "POST", "/api/createSession", raw_body=big, headers=admin_headers)
    assert status == 413 and body["code"] == ErrorCode.BODY_TOO_LARGE


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_auth_throttle_frees_then_delays_doubling_then_refuses_until_the_window_passes() -> None:
    clock = _Clock()
    throttle = AuthThrottle(free=3, limit=8, window_s=60.0, base_delay_s=0.1, max_delay_s=0.4, clock=clock)
    delays = [throttle.failure("10.0.0.1", "admin") for _ in range(8)]
    assert delays == [0.0, 0.0, 0.0, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert throttle.retry_after("10.0.0.1") == 60 and throttle.retry_after("10.0.0.2") is None
    clock.now += 59.2
    assert throttle.retry_after("10.0.0.1") == 1
    clock.now += 0.8
    assert throttle.retry_after("10.0.0.1") is None
    assert throttle.failure("10.0.0.1", "admin") == 0.0  # a new window


def test_auth_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = AuthThrottle(limit=1, max_addresses=3, clock=_Clock())
    for address in ("a", "b", "c", "d"):
        throttle.failure(address, "admin")
    assert throttle.retry_after("a") is None and throttle.retry_after("d") == 60


async def test_a_throttled_address_is_served_again_once_its_window_passes(
    server: FastportServer, admin_headers: dict[str, str]
) -> None:
    clock = _Clock()
    throttle = AuthThrottle(free=1, limit=2, base_delay_s=0.01, clock=clock)
    api = RestApi(server.broker, AdminAuth(server.admin_token), throttle=throttle)

    def create(authorization: str, peer: str) -> Request:
        body = b'{"sessionName": "' + peer.encode() + b'", "password": "pw"}'
        return Request("POST", "/api/createSession", {"authorization": authorization}, body, peer=peer)

    assert [(await api.handle(create("Bearer nope", "10.0.0.1"))).status for _ in range(3)] == [401, 401, 429]
    refused = await api.handle(create(admin_headers["Authorization"], "10.0.0.1"))
    assert refused.status == 429 and ("Retry-After", "60") in refused.headers
    # Another address with the right credential is not disturbed.
    assert (await api.handle(create(admin_headers["Authorization"], "10.0.0.2"))).status == 200
    clock.now += 60
    assert (await api.handle(create(admin_headers["Authorization"], "10.0.0.1"))).status == 200

"""The REST API (``docs/protocol.md`` §2), ``GET /health`` and ``GET /metrics``.

Routes are plain async functions from a parsed ``Request`` to a ``Response``; the
front protocol (``front.py``) does the HTTP/1.1 parsing and the I/O. Bodies are JSON
objects; every failure is a JSON body ``{"success": false, "error", "code"[, "field"]}``
with the status the original broker used (400 for bad input and for a session
owner's wrong credentials, 401 for admin authentication).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from fastport import _speedups
from fastport.broker.core import Broker
from fastport.config import SessionSettings
from fastport.errors import AuthError, ErrorCode, FastportError, LimitExceeded, ProtocolError, SessionError
from fastport.metrics import CONTENT_TYPE, Metrics, ServerCounters
from fastport.server.admin import AdminAuth, AuthThrottle

logger = logging.getLogger("fastport.http")

JSON_HEADERS: Final = (("Content-Type", "application/json"),)


@dataclass(slots=True)
class Request:
    """One parsed HTTP request; ``peer`` is the client's address (no port), for the auth throttle."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    peer: str = ""


@dataclass(slots=True)
class Response:
    """One HTTP response: a JSON body, or raw bytes whose ``Content-Type`` is in ``headers``."""

    status: int
    body: dict[str, Any] | bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, keep_alive: bool) -> bytes:
        """The response as bytes on the wire."""
        if isinstance(self.body, bytes):
            payload, headers = self.body, self.headers
        else:
            payload, headers = orjson.dumps(self.body), [*JSON_HEADERS, *self.headers]
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}"]
        for name, value in headers:
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(payload)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def error_response(exc: FastportError, status: int | None = None) -> Response:
    """The JSON error response for ``exc``."""
    body: dict[str, Any] = {"success": False, "error": exc.error, "code": int(exc.error_code)}
    if exc.field is not None:
        body["field"] = exc.field
    return Response(exc.http_status if status is None else status, body)


#: The ``Content-Type`` values a request body may have (lower case, spaces removed).
JSON_MEDIA_TYPES: Final = frozenset({"application/json", "application/json;charset=utf-8"})


def _declares_json(request: Request) -> bool:
    """False for a body declared as anything but JSON (a cross-site form or ``text/plain`` post).

    A browser posts ``text/plain``, ``application/x-www-form-urlencoded`` and ``multipart/form-data``
    cross-site without a CORS preflight; only ``application/json``, optionally with
    ``; charset=utf-8``, is accepted. A request without ``Content-Type`` is still accepted (see
    ``docs/protocol.md`` §2).
    """
    content_type = request.headers.get("content-type")
    return content_type is None or "".join(content_type.split()).lower() in JSON_MEDIA_TYPES


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body) if request.body else {}
    except orjson.JSONDecodeError:
        raise ProtocolError("request body is not valid JSON", code=ErrorCode.MALFORMED_REQUEST) from None
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object", code=ErrorCode.MALFORMED_REQUEST)
    return body


def _string_fields(body: dict[str, Any], names: tuple[str, ...], missing_error: str) -> list[str]:
    values = []
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            raise ProtocolError(missing_error, code=ErrorCode.MISSING_FIELD, field=name)
        if not isinstance(value, str):
            raise ProtocolError(f"{name} must be a string", code=ErrorCode.INVALID_FIELD, field=name)
        values.append(value)
    return values


def _suspend_flag(body: dict[str, Any]) -> bool:
    suspend = body.get("suspend")
    if not isinstance(suspend, bool):
        raise ProtocolError("suspend must be true or false", code=ErrorCode.INVALID_FIELD, field="suspend")
    return suspend


_OWNER_FIELDS: Final = ("sessionName", "password", "secretKey")
_OWNER_MISSING: Final = "sessionName, password and secretKey are required"
_ADMIN_CODES: Final = frozenset({ErrorCode.ADMIN_AUTH_MISSING, ErrorCode.ADMIN_AUTH_INVALID})


class _Turn:
    """The credential checks of one client address, one at a time."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class RestApi:
    """The routes of the REST API, bound to one broker.

    Args:
        broker: the broker whose sessions the API manages.
        admin: the admin credential check (createSession, and ``/metrics`` unless open).
        counters: the server layer's counters (authentication failures are counted here).
        metrics_open: serve ``/metrics`` without the admin credential.
        throttle: the per-address throttle of refused credentials (a default ``AuthThrottle``).
    """

    def __init__(
        self,
        broker: Broker,
        admin: AdminAuth,
        counters: ServerCounters | None = None,
        *,
        metrics_open: bool = False,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self._broker = broker
        self._admin = admin
        self._throttle = AuthThrottle() if throttle is None else throttle
        self._counters = ServerCounters() if counters is None else counters
        self._metrics = Metrics(broker, self._counters)
        self._metrics_open = metrics_open
        self._routes: dict[str, tuple[str, Callable[[Request], Awaitable[Response]]]] = {
            "/api/createSession": ("POST", self.create_session),
            "/api/dropSession": ("POST", self.drop_session),
            "/api/suspendSession": ("POST", self.suspend_session),
            "/health": ("GET", self.health),
            "/metrics": ("GET", self.metrics),
        }
        self._turns: dict[str, _Turn] = {}
        #: Routes that check a credential, so the auth throttle applies to them.
        self._credentialed = {"/api/createSession", "/api/dropSession", "/api/suspendSession"}
        if not metrics_open:
            self._credentialed.add("/metrics")

    async def handle(self, request: Request) -> Response:
        """Route ``request`` and turn every error into its JSON response."""
        path = request.path.split("?", 1)[0]
        route = self._routes.get(path.rstrip("/") or "/")
        if route is None:
            return error_response(ProtocolError("Not found", code=ErrorCode.ROUTE_NOT_FOUND), 404)
        method, handler = route
        if request.method != method:
            response = error_response(
                ProtocolError(f"method {request.method} not allowed", code=ErrorCode.METHOD_NOT_ALLOWED), 405
            )
            response.headers.append(("Allow", method))
            return response
        if method == "POST" and not _declares_json(request):
            return error_response(
                ProtocolError("Content-Type must be application/json", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE), 415
            )
        route_path = path.rstrip("/") or "/"
        if route_path not in self._credentialed:
            return (await self._run(handler, request, route_path))[0]
        # One credential check at a time per address, so a burst of parallel guesses meets the limit too.
        turn = self._turns.get(request.peer)
        if turn is None:
            turn = self._turns[request.peer] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                retry_after = self._throttle.retry_after(request.peer)
                if retry_after is not None:
                    self._counters.rest_auth_throttled += 1
                    response = error_response(
                        LimitExceeded(
                            "Too many authentication failures, try again later", code=ErrorCode.AUTH_THROTTLED
                        ),
                        429,
                    )
                    response.headers.append(("Retry-After", str(retry_after)))
                    return response
                response, delay_s = await self._run(handler, request, route_path)
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[request.peer]
        if delay_s > 0:
            self._counters.rest_auth_delayed += 1
            await asyncio.sleep(delay_s)
        return response

    async def _run(
        self, handler: Callable[[Request], Awaitable[Response]], request: Request, route_path: str
    ) -> tuple[Response, float]:
        """The handler's response, every error turned into its JSON response; and the delay owed to the answer."""
        try:
            return await handler(request), 0.0
        except AuthError as exc:
            return self._refused(request, route_path, exc)
        except FastportError as exc:
            return error_response(exc), 0.0
        except Exception:
            logger.exception("internal error on %s %s", request.method, route_path)
            return error_response(FastportError("Internal server error", code=ErrorCode.INTERNAL), 500), 0.0

    async def create_session(self, request: Request) -> Response:
        """``POST /api/createSession`` (admin only)."""
        self._admin.check(request.headers.get("authorization"))
        body = _json_object(request)
        name, password = _string_fields(body, ("sessionName", "password"), "sessionName and password are required")
        settings = SessionSettings.from_request(body, int(time.time() * 1000))
        _, secret_key = await self._broker.admin.create(name, password, settings)
        return Response(
            200,
            {
                "success": True,
                "sessionName": name,
                "password": password,
                "secretKey": secret_key,
                **settings.to_response(),
            },
        )

    def _as_admin(self, request: Request, body: dict[str, Any]) -> bool:
        """Whether a drop/suspend is the admin's: no session credential in ``body``, and an admin credential
        (checked here: a wrong one raises ``AuthError``). Session credentials, when given, are always checked."""
        if "password" in body or "secretKey" in body:
            return False
        authorization = request.headers.get("authorization")
        if authorization is None:
            return False
        self._admin.check(authorization)
        return True

    async def drop_session(self, request: Request) -> Response:
        """``POST /api/dropSession``: the session's own password and secret key, or the admin credential alone."""
        body = _json_object(request)
        try:
            if self._as_admin(request, body):
                (name,) = _string_fields(body, ("sessionName",), "sessionName is required")
                await self._broker.admin.drop_as_admin(name)
            else:
                name, password, secret_key = _string_fields(body, _OWNER_FIELDS, _OWNER_MISSING)
                await self._broker.admin.drop(name, password, secret_key)
        except SessionError as exc:
            return error_response(exc, 400)
        return Response(200, {"success": True})

    async def suspend_session(self, request: Request) -> Response:
        """``POST /api/suspendSession`` with ``suspend`` true or false (credentials as ``dropSession``)."""
        body = _json_object(request)
        try:
            if self._as_admin(request, body):
                (name,) = _string_fields(body, ("sessionName",), "sessionName is required")
                suspend = _suspend_flag(body)
                await self._broker.admin.suspend_as_admin(name, suspend)
            else:
                name, password, secret_key = _string_fields(body, _OWNER_FIELDS, _OWNER_MISSING)
                suspend = _suspend_flag(body)
                await self._broker.admin.suspend(name, password, secret_key, suspend)
        except SessionError as exc:
            return error_response(exc, 400)
        return Response(200, {"success": True, "suspended": suspend})

    def _refused(self, request: Request, route_path: str, exc: AuthError) -> tuple[Response, float]:
        """Count and throttle a refused credential: admin (401), or a session owner's (400)."""
        if exc.error_code not in _ADMIN_CODES:
            kind, status = "session owner", 400
            self._counters.owner_auth_failures += 1
        elif route_path == "/metrics":
            kind, status = "metrics admin", 401
            self._counters.metrics_auth_failures += 1
        else:
            kind, status = "admin", 401
            self._counters.admin_auth_failures += 1
        return error_response(exc, status), self._throttle.failure(request.peer, kind)

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text format (admin only unless ``--metrics-open``)."""
        if not self._metrics_open:
            self._admin.check(request.headers.get("authorization"))
        return Response(200, self._metrics.render(), [("Content-Type", CONTENT_TYPE)])

    async def health(self, request: Request) -> Response:
        """``GET /health``: liveness and counts."""
        return Response(200, {"status": "ok", "implementation": _speedups.IMPLEMENTATION, **self._broker.stats()})

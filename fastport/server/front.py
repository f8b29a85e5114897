"""The front of the port: HTTP requests are answered here, WebSocket upgrades go to picows.

picows accepts only body-less GET upgrades, so every connection starts with
``FrontProtocol``. It reads the request head; an ``Upgrade: websocket`` request is
handed, with the bytes read so far, to a picows ``WSProtocol`` built exactly as
``picows.ws_create_server`` builds it (``make_ws_protocol``), after which the
connection is pure picows with no per-frame cost here. Any other request is parsed
with httptools (the head, then exactly ``Content-Length`` body bytes, so pipelined
requests stay intact) and answered by ``RestApi``; keep-alive is honoured.

A request refused before it is read (413, 431, 400, 408) gets a lingering close: the answer is
sent, the write side shut down, and whatever the client still sends is read and discarded for
at most ``LINGER_TIMEOUT_S`` and ``LINGER_MAX_BYTES`` (or until its EOF) before the socket is
closed, so the client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import httptools
from picows import WSAutoPingStrategy, WSListener, WSUpgradeRequest, WSUpgradeResponseWithListener
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # real class, missing from picows's stub

from fastport.errors import ErrorCode, FrameTooLarge, ProtocolError
from fastport.metrics import ServerCounters
from fastport.server.client_address import Network, client_address
from fastport.server.http import Request, RestApi, error_response

logger = logging.getLogger("fastport.http")
picows_logger = logging.getLogger("picows.server")
#: One adapter for every connection: given a plain Logger, picows makes a child logger per connection.
_PICOWS_LOGGER: Final = logging.LoggerAdapter(picows_logger, {})

MAX_HEAD_SIZE: Final = 16 * 1024
KEEP_ALIVE_TIMEOUT_S: Final = 30.0
HEAD_END: Final = b"\r\n\r\n"
#: Bounds of the lingering close after a refused request.
LINGER_TIMEOUT_S: Final = 2.0
LINGER_MAX_BYTES: Final = 16 << 20


def make_ws_protocol(
    listener_factory: Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None],
    *,
    max_frame_size: int,
    handshake_timeout_s: float,
) -> WSProtocol:
    """Build a picows server-side ``WSProtocol`` with the arguments ``ws_create_server`` passes.

    picows's own pinging is off (it costs a task per connection): ``idle.IdleSweeper`` pings
    idle peers for the whole server. The logger is an adapter, so picows does not make a child
    logger per connection.

    ``WSProtocol``'s constructor is not public API; picows is pinned in pyproject.toml
    and ``tests/test_front.py`` fails loudly if an upgrade changes it.
    """
    return WSProtocol(
        None,  # host and port: client side only
        None,  # ws path: client side only
        False,  # is_client_side
        listener_factory,
        _PICOWS_LOGGER,
        True,  # disconnect_on_exception
        handshake_timeout_s,
        False,  # enable_auto_ping: see idle.IdleSweeper
        20.0,  # auto_ping_idle_timeout (unused)
        20.0,  # auto_ping_reply_timeout (unused)
        WSAutoPingStrategy.PING_WHEN_IDLE,
        False,  # enable_auto_pong: BrokerListener answers pings after checking the reserved bits
        max_frame_size,
        None,  # extra_headers
        2048,  # read_buffer_init_size: picows's floor; it grows on demand
    )


def _head_header(head: bytes, name: bytes) -> str | None:
    """Every ``name`` header of a raw request head, joined with commas; None if it has none."""
    values = [
        value.strip().decode("latin-1")
        for key, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        if key.strip().lower() == name
    ]
    return ", ".join(values) if values else None


def _is_websocket_upgrade(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class FrontProtocol(asyncio.Protocol):
    """Serves one accepted connection until it becomes a WebSocket or closes."""

    def __init__(
        self,
        api: RestApi,
        ws_factory: Callable[[str], WSProtocol],
        *,
        max_body_size: int,
        head_timeout_s: float,
        counters: ServerCounters | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self._api = api
        self._trusted_proxies = trusted_proxies
        self._counters = ServerCounters() if counters is None else counters
        self._ws_factory = ws_factory
        self._max_body_size = max_body_size
        self._head_timeout_s = head_timeout_s
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._parser: Any = None
        self._request: Request | None = None
        self._header_name = b""
        self._body_remaining = 0
        self._chunked = False
        self._keep_alive = False
        self._complete = False
        self._busy = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._too_large: FrameTooLarge | None = None
        self._peer = ""
        self._draining = False
        self._drained = 0

    # ---------------------------------------------------------------- transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._counters.connections_accepted += 1
        self._arm_timer(self._head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()

    def data_received(self, data: bytes) -> None:
        if self._draining:
            self._drained += len(data)
            if self._drained >= LINGER_MAX_BYTES:
                self._end_linger()
            return
        self._buffer += data
        if not self._busy:
            self._process()
        elif len(self._buffer) > MAX_HEAD_SIZE + self._max_body_size and self._transport is not None:
            self._transport.pause_reading()

    # ---------------------------------------------------------------- requests

    def _process(self) -> None:
        while not self._busy and not self._closed:
            if self._parser is None and not self._start_request():
                return
            if not self._feed_body():
                return
            self._busy = True
            request, self._request = self._request, None
            keep_alive = self._keep_alive and not self._chunked
            self._parser = None
            assert request is not None
            asyncio.get_running_loop().create_task(self._respond(request, keep_alive))

    def _start_request(self) -> bool:
        """Take a complete request head off the buffer; False if more bytes are needed."""
        end = self._buffer.find(HEAD_END, 0, MAX_HEAD_SIZE + len(HEAD_END))
        if end < 0:
            # Also a complete head that arrived in one read: only its first 16 KiB are searched.
            if len(self._buffer) > MAX_HEAD_SIZE:
                self._counters.http_head_too_large += 1
                self._fail(431, ProtocolError("request head too large", code=ErrorCode.MALFORMED_REQUEST))
            return False
        head = bytes(self._buffer[: end + len(HEAD_END)])
        if _is_websocket_upgrade(head):
            self._upgrade(head)
            return False
        del self._buffer[: end + len(HEAD_END)]
        self._request = Request(method="", path="", headers={}, peer=self._peer)
        self._body_remaining = 0
        self._chunked = False
        self._complete = False
        self._parser = httptools.HttpRequestParser(self)
        return self._feed(head)

    def _feed(self, data: bytes) -> bool:
        """Feed the parser; on a parse error or an oversized body answer it, close, and return False."""
        self._too_large = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            # httptools wraps exceptions raised in callbacks; the 413 is remembered apart.
            if self._too_large is not None:
                self._counters.http_body_too_large += 1
                self._fail(413, self._too_large)
            else:
                self._counters.http_malformed += 1
                self._fail(400, ProtocolError("malformed HTTP request", code=ErrorCode.MALFORMED_REQUEST))
            return False
        return True

    def _feed_body(self) -> bool:
        """Feed body bytes to the parser; True once the request is complete."""
        if not self._complete and self._buffer:
            take = len(self._buffer) if self._chunked else min(self._body_remaining, len(self._buffer))
            chunk = bytes(self._buffer[:take])
            del self._buffer[:take]
            self._body_remaining -= take
            if not self._feed(chunk):
                return False
        return self._complete

    async def _respond(self, request: Request, keep_alive: bool) -> None:
        response = await self._api.handle(request)
        if self._closed or self._transport is None:
            return
        self._counters.http_responses[response.status] += 1
        self._transport.write(response.encode(keep_alive))
        if not keep_alive:
            self._close()
            return
        self._busy = False
        self._arm_timer(KEEP_ALIVE_TIMEOUT_S)
        self._transport.resume_reading()
        self._process()

    def eof_received(self) -> bool | None:
        if self._draining:
            self._end_linger()
        return None  # the transport closes itself

    def _fail(self, status: int, exc: ProtocolError) -> None:
        if self._transport is not None and not self._closed:
            self._counters.http_responses[status] += 1
            self._transport.write(error_response(exc, status).encode(keep_alive=False))
            self._linger()
            return
        self._close()

    def _linger(self) -> None:
        """Half-close after the answer, then read and discard the rest of the request, bounded."""
        transport = self._transport
        assert transport is not None
        self._closed = True
        self._draining = True
        self._drained = len(self._buffer)
        self._buffer.clear()
        self._cancel_timer()
        if transport.can_write_eof():  # not over TLS: there the timeout and size bound end it
            transport.write_eof()
        transport.resume_reading()
        self._timer = asyncio.get_running_loop().call_later(LINGER_TIMEOUT_S, self._end_linger)
        if self._drained >= LINGER_MAX_BYTES:
            self._end_linger()

    def _end_linger(self) -> None:
        self._draining = False
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    # ---------------------------------------------------------- httptools callbacks

    def on_url(self, url: bytes) -> None:
        assert self._request is not None
        self._request.path += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._request is not None
        key = name.decode("latin-1").lower()
        headers = self._request.headers
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None
        request.method = self._parser.get_method().decode("latin-1")
        if self._trusted_proxies:
            headers = request.headers
            request.peer = client_address(
                self._peer, headers.get("x-forwarded-for"), headers.get("forwarded"), self._trusted_proxies
            )
        # Asked here: llhttp resets its keep-alive flag once the message is complete.
        self._keep_alive = bool(self._parser.should_keep_alive())
        length = request.headers.get("content-length")
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif length is not None:
            try:
                self._body_remaining = int(length)
            except ValueError:
                self._body_remaining = 0
        if self._body_remaining > self._max_body_size:
            self._too_large = FrameTooLarge(
                f"request body too large: {self._body_remaining} > {self._max_body_size}",
                code=ErrorCode.BODY_TOO_LARGE,
            )
            raise self._too_large
        if request.headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self._request
        assert request is not None
        request.body += body
        if len(request.body) > self._max_body_size:
            self._too_large = FrameTooLarge(
                f"request body too large: > {self._max_body_size}", code=ErrorCode.BODY_TOO_LARGE
            )
            raise self._too_large

    def on_message_complete(self) -> None:
        self._complete = True

    # ---------------------------------------------------------------- upgrade

    def _upgrade(self, head: bytes) -> None:
        """Hand the connection, and every byte read so far, to a picows WSProtocol.

        The broker is given the client's address (behind a trusted proxy: the forwarded one) and the TCP
        peer's port.
        """
        self._cancel_timer()
        self._counters.ws_upgrades += 1
        transport = self._transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        remote = ""
        if isinstance(peer, tuple):
            address = str(peer[0])
            if self._trusted_proxies:
                address = client_address(
                    address,
                    _head_header(head, b"x-forwarded-for"),
                    _head_header(head, b"forwarded"),
                    self._trusted_proxies,
                )
            remote = f"{address}:{peer[1]}"
        ws = self._ws_factory(remote)
        transport.set_protocol(ws)
        ws.connection_made(transport)
        data = memoryview(bytes(self._buffer))
        self._buffer.clear()
        self._closed = True
        while data:
            target = ws.get_buffer(len(data))
            count = min(len(target), len(data))
            target[:count] = data[:count]
            ws.buffer_updated(count)
            data = data[count:]

    # ---------------------------------------------------------------- timeouts

    def _arm_timer(self, delay_s: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._busy or self._closed:
            return
        if self._buffer or self._parser is not None:
            self._counters.http_head_timeouts += 1
            self._fail(408, ProtocolError("request timeout", code=ErrorCode.MALFORMED_REQUEST))
        else:
            self._close()

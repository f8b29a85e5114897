"""``--trusted-proxies``: forwarded client addresses are believed from trusted peers only, never crash."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastport_client_helpers import http
from hypothesis import given
from hypothesis import strategies as st

from fastport.config import BrokerLimits
from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer
from fastport.server.client_address import client_address, parse_networks

from .hostile_helpers import Bystander, RawFactory

TRUSTED = parse_networks(["127.0.0.1/32", "10.0.0.0/8", "2001:db8:ffff::/48"])
BEHIND_LOCALHOST = {"trusted_proxies": ("127.0.0.1/32",)}
# No delays, so 30 failed inits are quick; an address is cut off after 30, whatever the session.
SPRAY_LIMITS = BrokerLimits(auth_failures_before_delay=20, auth_address_failures_before_cutoff=30)
WRONG_ADMIN = "Bearer wrong-token-wrong-token"


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "forwarded", "client"),
    [
        # An untrusted peer: the headers are ignored, whatever they say.
        ("192.0.2.1", "203.0.113.9", None, "192.0.2.1"),
        ("192.0.2.1", None, "for=203.0.113.9", "192.0.2.1"),
        # A trusted peer with no header is the client.
        ("127.0.0.1", None, None, "127.0.0.1"),
        ("127.0.0.1", "", "", "127.0.0.1"),
        # The rightmost untrusted hop; whatever the client itself wrote on the left is not believed.
        ("127.0.0.1", "203.0.113.9", None, "203.0.113.9"),
        ("127.0.0.1", "198.51.100.66, 203.0.113.9, 10.1.2.3, 10.0.0.1", None, "203.0.113.9"),
        ("127.0.0.1", "198.51.100.66, 203.0.113.9", None, "203.0.113.9"),
        # Every hop trusted: the leftmost.
        ("127.0.0.1", "10.9.9.9, 10.0.0.1", None, "10.9.9.9"),
        # Ports and brackets, as some proxies write them; IPv6 normalised.
        ("127.0.0.1", "203.0.113.9:4711, 10.0.0.1", None, "203.0.113.9"),
        ("127.0.0.1", "2001:DB8:0:0::17", None, "2001:db8::17"),
        ("127.0.0.1", "[2001:db8::17]:443", None, "2001:db8::17"),
        # RFC 7239: quoted, IPv6 in brackets, ports, other parameters; preferred over X-Forwarded-For.
        ("127.0.0.1", "198.51.100.1", 'for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("127.0.0.1", None, 'for=192.0.2.60;proto=http;by=203.0.113.43, For="10.0.0.3:80"', "192.0.2.60"),
        ("127.0.0.1", None, 'for="[2001:db8:cafe::17]";host="a,b", for="[2001:db8:ffff::1]:8443"', "2001:db8:cafe::17"),
        ("127.0.0.1", None, "proto=https;for=198.51.100.7", "198.51.100.7"),
        # Malformed, unknown or obfuscated hops stop the walk at the last good one.
        ("127.0.0.1", "203.0.113.9, garbage, 10.0.0.1", None, "10.0.0.1"),
        ("127.0.0.1", "garbage", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9, ", None, "127.0.0.1"),
        ("127.0.0.1", "1.2.3.4:port", None, "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::17", None, "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::17]x", None, "127.0.0.1"),
        ("127.0.0.1", "999.1.1.1", None, "127.0.0.1"),
        ("127.0.0.1", None, "for=unknown", "127.0.0.1"),
        ("127.0.0.1", None, "for=_hidden, for=10.0.0.1", "10.0.0.1"),
        ("127.0.0.1", None, "by=10.0.0.1", "127.0.0.1"),
        ("127.0.0.1", None, 'for="unterminated', "127.0.0.1"),
        ("127.0.0.1", "\x00\xff\r", ";;;,,,===", "127.0.0.1"),
    ],
)
def test_the_client_address_rule(peer: str, forwarded_for: str | None, forwarded: str | None, client: str) -> None:
    assert client_address(peer, forwarded_for, forwarded, TRUSTED) == client


def test_no_trusted_proxies_trusts_no_one() -> None:
    assert client_address("127.0.0.1", "203.0.113.9", 'for="203.0.113.9"', ()) == "127.0.0.1"


def test_an_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    assert client_address("::ffff:127.0.0.1", "203.0.113.9", None, TRUSTED) == "203.0.113.9"


@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=200)))
def test_any_header_text_gives_an_address_and_never_raises(forwarded_for: str, forwarded: str | None) -> None:
    assert client_address("127.0.0.1", forwarded_for, forwarded, TRUSTED)


async def _fail_admin_20_times(port: int, forwarded_for: str) -> None:
    headers = {"Authorization": WRONG_ADMIN, "X-Forwarded-For": forwarded_for}
    body = {"sessionName": "brute", "password": "pw"}
    answers = await asyncio.gather(
        *(http(port, "POST", "/api/createSession", body, headers=headers) for _ in range(20))
    )
    assert [status for status, _, _ in answers] == [401] * 20


async def _create(port: int, admin_headers: dict[str, str], name: str, forwarded_for: str) -> int:
    headers = {**admin_headers, "X-Forwarded-For": forwarded_for}
    status, _, _ = await http(
        port, "POST", "/api/createSession", {"sessionName": name, "password": "pw"}, headers=headers
    )
    return status


async def test_an_untrusted_peer_cannot_dodge_the_rest_throttle_with_x_forwarded_for(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander
) -> None:
    await _fail_admin_20_times(server.port, "203.0.113.1")
    # The throttle keyed on 127.0.0.1: another forwarded address changes nothing.
    assert await _create(server.port, admin_headers, "dodge", "203.0.113.2") == 429
    assert server.broker.sessions.get("dodge") is None
    await bystander.check()


@pytest.mark.parametrize("server_settings", [BEHIND_LOCALHOST])
async def test_behind_a_trusted_proxy_the_rest_throttle_keys_on_the_forwarded_address(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander
) -> None:
    await _fail_admin_20_times(server.port, "198.51.100.9, 203.0.113.1")
    assert await _create(server.port, admin_headers, "guesser", "203.0.113.1") == 429
    # Another client behind the same proxy is not throttled by the first one's failures.
    assert await _create(server.port, admin_headers, "neighbour", "203.0.113.2") == 200
    # Nor is the proxy's own address.
    assert (
        await http(
            server.port, "POST", "/api/createSession", {"sessionName": "own", "password": "pw"}, headers=admin_headers
        )
    )[0] == 200
    await bystander.check()


@pytest.mark.parametrize("server_settings", [BEHIND_LOCALHOST])
async def test_a_garbage_forwarded_header_falls_back_to_the_proxy_address(
    server: FastportServer, admin_headers: dict[str, str], bystander: Bystander
) -> None:
    for header in ("X-Forwarded-For: [[[::", 'Forwarded: for="\\"', "X-Forwarded-For: \xff\xfe, ,", "Forwarded: ;"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}\r\n\r\n".encode("latin-1"))
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
    await _fail_admin_20_times(server.port, "garbage")
    # The failures counted against the proxy (the last good hop) ...
    assert (await http(server.port, "GET", "/metrics", headers=admin_headers))[0] == 429
    # ... not against a client it forwards.
    assert await _create(server.port, admin_headers, "forwarded", "203.0.113.5") == 200
    await bystander.check()


async def _ws_init(raw: RawFactory, forwarded: dict[str, str], session: str, password: str) -> Any:
    ws = await raw(headers=forwarded)
    ws.text({"type": "init", "sessionName": session, "password": password})
    answer = await ws.recv()
    if answer.get("code") == ErrorCode.AUTH_THROTTLED:
        assert await ws.expect_close() == CloseCode.AUTH_CUT_OFF
    return answer["code"] if not answer["success"] else "ok"


async def _cut_off_address(raw: RawFactory, forwarded: dict[str, str]) -> None:
    """30 failed inits spread over 3 unknown sessions: the address's own ceiling, no session's."""
    ws = await raw(headers=forwarded)
    codes = []
    for i in range(30):
        ws.text({"type": "init", "sessionName": f"guess-{i % 3}", "password": "wrong"})
        codes.append((await ws.recv())["code"])
    assert codes == [ErrorCode.SESSION_NOT_FOUND] * 30


@pytest.mark.parametrize("server_settings", [{"limits": SPRAY_LIMITS}])
async def test_an_untrusted_peer_cannot_dodge_the_init_throttle_with_x_forwarded_for(
    raw: RawFactory, bystander: Bystander
) -> None:
    name, password = bystander.session["sessionName"], bystander.session["password"]
    await _cut_off_address(raw, {"X-Forwarded-For": "203.0.113.1"})
    assert await _ws_init(raw, {"X-Forwarded-For": "203.0.113.2"}, name, password) == ErrorCode.AUTH_THROTTLED
    await bystander.check()


@pytest.mark.parametrize("server_settings", [{**BEHIND_LOCALHOST, "limits": SPRAY_LIMITS}])
async def test_behind_a_trusted_proxy_the_init_throttle_keys_on_the_forwarded_address(
    server: FastportServer, raw: RawFactory, bystander: Bystander
) -> None:
    name, password = bystander.session["sessionName"], bystander.session["password"]
    await _cut_off_address(raw, {"Forwarded": 'for="[2001:db8::66]:51000";proto=http, for=127.0.0.1'})
    # The same IPv6 client, written another way, is still cut off ...
    assert await _ws_init(raw, {"X-Forwarded-For": "[2001:DB8:0::66]:1"}, name, password) == ErrorCode.AUTH_THROTTLED
    # ... but another client behind the same proxy, and the proxy itself, get in.
    assert await _ws_init(raw, {"X-Forwarded-For": "203.0.113.2"}, name, password) == "ok"
    assert await _ws_init(raw, {}, name, password) == "ok"
    # The broker sees the client's address (with the TCP peer's port).
    remotes = {listener.target.remote.rpartition(":")[0] for listener in server._listeners if listener.target}
    assert {"203.0.113.2", "127.0.0.1"} <= remotes
    await bystander.check()

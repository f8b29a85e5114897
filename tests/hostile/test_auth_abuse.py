"""Password guessing by one tenant: it throttles the guessed (address, session) pair, never its neighbours."""

from __future__ import annotations

from typing import Any

import pytest
from fastport_client_helpers import ClientFactory, SessionFactory, WSClient

from fastport.config import BrokerLimits
from fastport.errors import CloseCode, ErrorCode
from fastport.server.app import FastportServer

from .hostile_helpers import Bystander

# No delays (they would make 25 guesses take a minute); the default cut-offs: 20 per pair, 200 per address.
NO_DELAY = {"limits": BrokerLimits(auth_failures_before_delay=20)}


async def _guess(connect: ClientFactory, client: WSClient | None, session: str, password: str) -> tuple[Any, WSClient]:
    """One ``init`` from 127.0.0.1, on a new connection if the last one was cut off."""
    if client is None or client.transport.is_disconnected:
        client = await connect()
    answer = await client.init(session, password)
    if answer.get("code") == ErrorCode.AUTH_THROTTLED:
        assert await client.wait_closed() == CloseCode.AUTH_CUT_OFF
    return answer["code"] if not answer["success"] else "ok", client


@pytest.mark.parametrize("server_settings", [NO_DELAY])
async def test_guessing_one_session_does_not_lock_out_other_sessions_behind_the_address(
    make_session: SessionFactory, connect: ClientFactory, server: FastportServer, bystander: Bystander
) -> None:
    target = await make_session("target", password="right")
    client: WSClient | None = None
    codes = []
    for _ in range(25):
        code, client = await _guess(connect, client, target["sessionName"], "wrong")
        codes.append(code)
    assert codes == [ErrorCode.INVALID_PASSWORD] * 20 + [ErrorCode.AUTH_THROTTLED] * 5
    # The guessed pair stays cut off, even with the right password ...
    assert (await _guess(connect, None, target["sessionName"], "right"))[0] == ErrorCode.AUTH_THROTTLED
    # ... but another tenant behind the same address gets in with its own credential.
    neighbour = await connect()
    answer = await neighbour.init(bystander.session["sessionName"], bystander.session["password"])
    assert answer["success"] is True, answer
    assert server.broker.counters.auth_failures == 20
    await bystander.check()


@pytest.mark.parametrize(
    "server_settings", [{"limits": BrokerLimits(auth_failures_before_delay=20, auth_address_failures_before_cutoff=30)}]
)
async def test_an_address_spraying_many_sessions_hits_its_own_ceiling(
    connect: ClientFactory, bystander: Bystander
) -> None:
    client: WSClient | None = None
    codes = []
    for i in range(30):
        code, client = await _guess(connect, client, f"guess-{i % 3}", "wrong")
        codes.append(code)
    assert codes == [ErrorCode.SESSION_NOT_FOUND] * 30
    code, client = await _guess(connect, client, bystander.session["sessionName"], bystander.session["password"])
    assert code == ErrorCode.AUTH_THROTTLED
    await bystander.check()

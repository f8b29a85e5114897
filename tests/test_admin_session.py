"""``--admin-session``: the original fastPort's ``admin_session`` tenant (password ``ADMIN_PASS``), opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, WSClient

from fastport.config import ServerConfig
from fastport.errors import ConfigError
from fastport.server.app import ADMIN_SESSION, FastportServer


async def _init_admin_session(config: ServerConfig) -> dict[str, object]:
    server = await FastportServer.start(config)
    try:
        client = await WSClient.connect(server.port)
        try:
            return await client.init(ADMIN_SESSION, ADMIN_PASS)
        finally:
            await client.close()
    finally:
        await server.close()


async def test_admin_session_is_created_on_request_and_kept_across_restarts(tmp_path: Path) -> None:
    config = ServerConfig(
        port=0,
        data_dir=tmp_path,
        admin_user=ADMIN_USER,
        admin_pass=ADMIN_PASS,
        admin_session=True,
        store=f"sqlite:{tmp_path / 'state.db'}",
    )
    assert (await _init_admin_session(config))["success"] is True
    # Restored from the store on the next start: kept, not created again (which would fail as a duplicate).
    assert (await _init_admin_session(config))["success"] is True


async def test_there_is_no_admin_session_by_default(tmp_path: Path) -> None:
    config = ServerConfig(port=0, data_dir=tmp_path, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS)
    answer = await _init_admin_session(config)
    assert answer["success"] is False and answer["error"] == "Session not found"


def test_admin_session_needs_the_admin_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="admin-session needs ADMIN_USER and ADMIN_PASS"):
        ServerConfig(port=0, data_dir=tmp_path, admin_session=True)

"""Logging: JSON lines with context ids, and no secret or payload in any log line at DEBUG."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, WSClient, basic, http

from fastport.config import BrokerLimits, ServerConfig
from fastport.errors import CloseCode
from fastport.log import ConnectionLogger, configure, reopen_log_files
from fastport.server.app import FastportServer


def test_json_lines_carry_context_ids() -> None:
    stream = io.StringIO()
    handler = configure(logging.DEBUG, "json", stream)
    try:
        ConnectionLogger(logging.getLogger("fastport.server"), 7, "tenant").info("hello %s", "world")
        logging.getLogger("fastport.http").warning("plain")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world" and first["level"] == "INFO" and first["logger"] == "fastport.server"
    assert first["connection"] == 7 and first["session"] == "tenant" and first["ts"].endswith("+00:00")
    assert "connection" not in second and second["level"] == "WARNING"


async def test_no_secret_or_payload_is_logged_at_debug(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = configure(1, "json", stream)  # below DEBUG: picows's own debug level too
    token = "admin-token-that-must-not-leak-0123456789"
    srv = await FastportServer.start(
        ServerConfig(port=0, data_dir=tmp_path, admin_token=token, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS)
    )
    password, data = "password-that-must-not-leak", "payload-that-must-not-leak"
    try:
        status, _, created = await http(
            srv.port,
            "POST",
            "/api/createSession",
            {"sessionName": "logs", "password": password},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 200
        secret = created["secretKey"]
        await http(
            srv.port,
            "POST",
            "/api/createSession",
            {"sessionName": "x", "password": "y"},
            headers=basic(ADMIN_USER, "wrong-admin-pass"),
        )
        pub, sub = await WSClient.connect(srv.port), await WSClient.connect(srv.port)
        assert (await pub.init("logs", "wrong-" + password))["success"] is False
        for client in (pub, sub):
            assert (await client.init("logs", password))["success"] is True
        await sub.subscribe("t")
        message_id = pub.publish("t", data=data)
        await sub.recv_type("message")
        sub.send({"type": "ack", "topic": "t", "messageId": message_id})
        await pub.recv_type("ack_received")
        status, _, _ = await http(
            srv.port, "POST", "/api/dropSession", {"sessionName": "logs", "password": password, "secretKey": secret}
        )
        assert status == 200
        await pub.wait_closed()
        await sub.wait_closed()
    finally:
        await srv.close()
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("picows").setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert text, "nothing was logged"
    for value in (password, secret, token, ADMIN_PASS, "wrong-admin-pass", data):
        assert value not in text, value


def test_reopen_log_files_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "fastport.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    root.addHandler(handler)
    log = logging.getLogger("fastport.server")
    try:
        log.warning("before")
        path.rename(tmp_path / "fastport.log.1")  # what logrotate does before sending SIGHUP
        assert reopen_log_files() >= 1
        log.warning("after")
    finally:
        root.removeHandler(handler)
        handler.close()
    assert (tmp_path / "fastport.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"


async def test_every_json_line_about_a_connection_carries_its_connection_and_session(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = configure(logging.DEBUG, "json", stream)
    token = "admin-token-for-the-context-test-0123456789"
    srv = await FastportServer.start(
        ServerConfig(port=0, data_dir=tmp_path, admin_token=token, limits=BrokerLimits(init_timeout_s=1.0))
    )
    admin = {"Authorization": f"Bearer {token}"}
    try:
        status, _, _ = await http(
            srv.port, "POST", "/api/createSession", {"sessionName": "ctx", "password": "pw"}, headers=admin
        )
        assert status == 200
        idle = await WSClient.connect(srv.port)  # never inits: closed at the init timeout
        early = await WSClient.connect(srv.port)
        early.send({"type": "subscribe", "topic": "t"})  # rejected before init (DEBUG)
        assert (await early.recv_type("error"))["code"]
        assert (await early.init("ctx", "wrong"))["success"] is False  # init refused
        assert (await early.init("ctx", "pw"))["success"] is True
        early.send({"type": "nonsense"})  # rejected after init (DEBUG)
        await early.recv_type("error")
        first, second = await WSClient.connect(srv.port), await WSClient.connect(srv.port)
        for client in (first, second):
            client.send({"type": "init", "sessionName": "ctx", "password": "pw", "clientId": "same"})
            assert (await client.recv_type("init_response"))["success"] is True
        assert await first.wait_closed() == CloseCode.CLIENT_TAKEN_OVER
        assert await idle.wait_closed() == CloseCode.INIT_TIMEOUT
        status, _, _ = await http(srv.port, "POST", "/api/dropSession", {"sessionName": "ctx"}, headers=admin)
        assert status == 200
        for client in (early, second):
            assert await client.wait_closed() == CloseCode.SESSION_DROPPED
    finally:
        await srv.close()
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("picows").setLevel(logging.NOTSET)
    about_connections = []
    for line in stream.getvalue().splitlines():
        entry = json.loads(line)
        mentioned = re.findall(r"connection #(\d+)", entry["message"])
        if not mentioned:
            continue
        about_connections.append(entry)
        # The line is tagged with the connection it is about (a takeover's: the new one, named last).
        assert entry["connection"] == int(mentioned[-1]), entry
        assert "session" in entry, entry

    def lines_of(pattern: str) -> list[tuple[int, str | None]]:
        return [(e["connection"], e["session"]) for e in about_connections if re.search(pattern, e["message"])]

    (refused,) = lines_of(r"init of session 'ctx' refused")
    assert refused[1] is None
    early_id = refused[0]
    assert (early_id, None) in lines_of(r"connection #\d+: Not initialized")
    assert any(conn == early_id and session == "ctx" for conn, session in lines_of(r"^connection #\d+: "))
    (timeout,) = lines_of(r"no init within")
    assert timeout[1] is None and timeout[0] != early_id
    (takeover,) = lines_of(r"taken over by connection")
    assert takeover[1] == "ctx"
    (closed_over,) = lines_of(rf"closing connection #\d+: {CloseCode.CLIENT_TAKEN_OVER} ")
    assert closed_over[1] == "ctx" and closed_over[0] != takeover[0]
    dropped = lines_of(rf"closing connection #\d+: {CloseCode.SESSION_DROPPED} ")
    assert sorted(dropped) == sorted([(early_id, "ctx"), (takeover[0], "ctx")])

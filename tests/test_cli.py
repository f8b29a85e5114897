"""The ``fastport`` command as a user runs it: real processes, real signals, real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastport.cli import main

FASTPORT = [sys.executable, "-m", "fastport"]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FASTPORT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve", "--port", "abc"], {}, "port must be a number"),
        (["serve", "--port", "70000"], {}, "port must be 0-65535"),
        (["serve", "--max-frame-size", "10"], {}, "max-frame-size must be"),
        (["serve", "--max-frame-size", "lots"], {}, "max-frame-size must be a size"),
        (["serve"], {"FASTPORT_LOG_LEVEL": "loud"}, "log-level must be one of"),
        (["serve"], {"ADMIN_USER": "only-user"}, "ADMIN_USER and ADMIN_PASS must be set together"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = _run(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.startswith("fastport ")


def test_unknown_command_exits_2() -> None:
    assert _run("fly").returncode == 2


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [*FASTPORT, "serve", "--port", "0", "--data-dir", str(data_dir)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FASTPORT_LOG_LEVEL": "info"},
    )
    try:
        deadline = time.monotonic() + 20
        port = None
        assert process.stderr is not None
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
        assert port is not None, "broker did not report its address"
        yield process, port, data_dir
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def test_serve_and_session_commands_end_to_end(broker_process: tuple[subprocess.Popen[str], int, Path]) -> None:
    _, port, data_dir = broker_process
    token_file = data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    url = f"http://127.0.0.1:{port}"
    created = _run(
        "session",
        "create",
        "cli-demo",
        "--password",
        "pw",
        "--retry-interval",
        "1000",
        "--url",
        url,
        "--data-dir",
        str(data_dir),
    )
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["success"] is True and body["retryInterval"] == 1000
    secret = body["secretKey"]
    again = _run("session", "create", "cli-demo", "--password", "pw", "--url", url, "--data-dir", str(data_dir))
    assert again.returncode == 1 and again.stderr == "fastport: error: Session already exists (code 3005)\n"
    for action, expected in (
        ("suspend", {"success": True, "suspended": True}),
        ("resume", {"success": True, "suspended": False}),
        ("drop", {"success": True}),
    ):
        result = _run("session", action, "cli-demo", "--password", "pw", "--secret-key", secret, "--url", url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected
    missing_key = _run("session", "drop", "cli-demo", "--password", "pw", "--url", url, env=_without_fastport())
    assert missing_key.returncode == 2 and "--secret-key" in missing_key.stderr


def _without_fastport(**variables: str) -> dict[str, str]:
    """An environment without the caller's FASTPORT_* settings (FASTPORT_NO_EXTENSIONS kept), plus ``variables``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FASTPORT_") or name == "FASTPORT_NO_EXTENSIONS"
    }
    return {**kept, **variables}


def _run_clean(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``fastport args`` with only ``variables`` of the FASTPORT_* settings."""
    return subprocess.run(
        [*FASTPORT, *args], capture_output=True, text=True, timeout=30, env=_without_fastport(**variables), check=False
    )


def test_session_takes_url_password_and_secret_key_from_the_environment(
    broker_process: tuple[subprocess.Popen[str], int, Path],
) -> None:
    _, port, data_dir = broker_process
    # A ws:// URL (as pub and sub use) means http:// on the same host and port.
    env = {"FASTPORT_URL": f"ws://127.0.0.1:{port}", "FASTPORT_PASSWORD": "env-pw"}
    create = ("session", "create", "env-demo", "--data-dir", str(data_dir))
    created = _run_clean(*create, **env)
    assert created.returncode == 0 and created.stderr == "", created.stderr
    body = json.loads(created.stdout)
    assert body["password"] == "env-pw"
    env["FASTPORT_SECRET_KEY"] = body["secretKey"]
    for action, expected in (
        ("suspend", {"success": True, "suspended": True}),
        ("resume", {"success": True, "suspended": False}),
        ("drop", {"success": True}),
    ):
        argv = ("session", action, "env-demo")
        assert "env-pw" not in argv and body["secretKey"] not in argv  # nothing secret where ps shows it
        result = _run_clean(*argv, **env)
        assert result.returncode == 0 and json.loads(result.stdout) == expected, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["session", "create", "x"], {}, "missing password: pass --password or set FASTPORT_PASSWORD"),
        (
            ["session", "drop", "x"],
            {"FASTPORT_PASSWORD": "pw"},
            "missing secret key (session drop): pass --secret-key or set FASTPORT_SECRET_KEY",
        ),
        (["session", "create", "x", "--url", "ftp://h"], {"FASTPORT_PASSWORD": "pw"}, "session --url must be"),
        (["session", "create", "x"], {"FASTPORT_PASSWORD": "pw", "FASTPORT_URL": "127.0.0.1:3000"}, "--url must be"),
        (["session", "create", "x", "--cacert", "ca.pem"], {"FASTPORT_PASSWORD": "pw"}, "--cacert needs a wss://"),
        (["session", "create", "x", "--insecure"], {"FASTPORT_PASSWORD": "pw"}, "--insecure needs a wss://"),
        (["session", "fly", "x"], {}, "argument action: invalid choice: 'fly'"),
        (["session", "drop", "x", "--retry-interval", "soon"], {}, "argument --retry-interval: invalid int value"),
    ],
)
def test_bad_session_settings_exit_2_with_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = _run_clean(*args, **env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("fastport: error: ") and message in lines[0], lines


def test_failed_session_requests_exit_1_with_one_line(broker_process: tuple[subprocess.Popen[str], int, Path]) -> None:
    _, port, data_dir = broker_process
    base = {"FASTPORT_PASSWORD": "pw", "FASTPORT_SECRET_KEY": "0" * 64}
    cases = [
        # The broker's JSON error body, as one line: its error and code.
        (["session", "drop", "nope"], {"FASTPORT_URL": f"http://127.0.0.1:{port}"}, "Session not found (code 3001)"),
        # The path prefix of the URL is kept (this broker has none: it answers 404).
        (
            ["session", "create", "x", "--data-dir", str(data_dir)],
            {"FASTPORT_URL": f"ws://127.0.0.1:{port}/prefix/"},
            "Not found (code 1008)",
        ),
        (["session", "drop", "x"], {"FASTPORT_URL": "http://127.0.0.1:1"}, "cannot reach http://127.0.0.1:1: "),
    ]
    for args, env, message in cases:
        result = _run_clean(*args, **base, **env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and result.stdout == "" and len(lines) == 1, result.stderr
        assert lines[0].startswith("fastport: error: ") and message in lines[0], lines


def test_sigterm_shuts_down_cleanly(broker_process: tuple[subprocess.Popen[str], int, Path]) -> None:
    process, _, _ = broker_process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_port_in_use_exits_2(broker_process: tuple[subprocess.Popen[str], int, Path], tmp_path: Path) -> None:
    _, port, _ = broker_process
    result = _run("serve", "--port", str(port), "--data-dir", str(tmp_path / "other"))
    assert result.returncode == 2 and "address already in use" in result.stderr.lower()


def test_main_returns_2_on_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", ""]) == 2
    assert "host must not be empty" in capsys.readouterr().err

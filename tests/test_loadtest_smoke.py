"""Smoke test of loadtest/: a real broker process with TLS, locust headless for 10 s, zero failures.

Locust monkey-patches the process with gevent and emits its own warnings, so it runs in a subprocess
and this module never imports it (pytest runs with ``filterwarnings = error``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
ADMIN_TOKEN = "smoke-test-admin-token-0123456789"
LISTENING_RE = re.compile(r"fastport listening on 127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 15.0


def _load_make_cert() -> ModuleType:
    """loadtest/ is not a package: load its certificate helper by path, without touching sys.path."""
    spec = importlib.util.spec_from_file_location("fastport_loadtest_make_cert", REPO / "loadtest" / "make_cert.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_certificate = _load_make_cert().make_certificate

pytestmark = pytest.mark.timeout(120)


def _wait_for_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = LISTENING_RE.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"broker did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A ``fastport serve`` process with a self-signed certificate on a free port; killed by PID at the end."""
    cert, key = make_certificate(tmp_path / "tls")
    log = tmp_path / "broker.log"
    env = {**os.environ, "FASTPORT_ADMIN_TOKEN": ADMIN_TOKEN}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastport",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        yield _wait_for_port(log, process), cert
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def _create_session(port: int, cert: Path) -> None:
    context = ssl.create_default_context(cafile=str(cert))
    body = json.dumps({"sessionName": "smoke", "password": "smoke-pw", "retryInterval": 30000}).encode()
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/api/createSession",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert json.loads(response.read())["success"] is True


def test_locust_against_tls_broker(tls_broker: tuple[int, Path], tmp_path: Path) -> None:
    port, cert = tls_broker
    _create_session(port, cert)
    prefix = tmp_path / "locust"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "10s",
            "--stop-timeout",
            "2",
            "--only-summary",
            "--csv",
            str(prefix),
            "-H",
            f"wss://127.0.0.1:{port}/",
            "--fastport-session",
            "smoke",
            "--fastport-password",
            "smoke-pw",
            "--fastport-ca",
            str(cert),
            "--fastport-rate",
            "20",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, output
    assert int(total["Request Count"]) > 0, output
    # Each kind of user did its job: deliveries arrived and publishers got their acknowledgements.
    for name in ("connect", "init", "subscribe", "publish", "deliver", "ack_received"):
        assert int(rows[name]["Request Count"]) > 0, (name, output)

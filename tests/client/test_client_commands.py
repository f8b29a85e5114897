"""``fastport keygen``, ``pub`` and ``sub`` as a user runs them, against a live broker."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys

from fastport_client_helpers import SessionFactory

from fastport.server.app import FastportServer


async def _fastport(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastport",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def test_keygen_prints_a_32_byte_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastport", "keygen"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and len(base64.b64decode(result.stdout.strip())) == 32


async def test_pub_to_sub_round_trip(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    key = base64.b64encode(os.urandom(32)).decode()
    env = {
        "FASTPORT_URL": f"ws://127.0.0.1:{server.port}",
        "FASTPORT_SESSION": session["sessionName"],
        "FASTPORT_PASSWORD": "pw",
        "FASTPORT_KEY": key,
    }
    sub = await _fastport("sub", "cli/#", "--count", "2", env=env)
    try:
        assert sub.stderr is not None
        line = await asyncio.wait_for(sub.stderr.readline(), 20)
        assert b"subscribed to cli/#" in line
        for envelope, text in (("v2", "hello"), ("v1", "wörld")):
            pub = await _fastport("pub", "cli/a", text, "--envelope", envelope, "--wait-ack", env=env)
            out, err = await asyncio.wait_for(pub.communicate(), 20)
            assert pub.returncode == 0, err
            assert out.decode().strip().endswith("delivered to 1 acked")
        out, _ = await asyncio.wait_for(sub.communicate(), 20)
        assert sub.returncode == 0
        assert out.decode().splitlines() == ["cli/a hello", "cli/a wörld"]
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()


async def test_errors_are_one_line_and_non_zero(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    base = {
        "FASTPORT_URL": f"ws://127.0.0.1:{server.port}",
        "FASTPORT_SESSION": session["sessionName"],
        "FASTPORT_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    cases = [
        ({**base, "FASTPORT_PASSWORD": "wrong"}, 1, "Invalid password"),
        (base, 2, "missing password"),
        ({**base, "FASTPORT_PASSWORD": "pw", "FASTPORT_KEY": "not-a-key"}, 2, "key"),
    ]
    for env, status, message in cases:
        clean = {name: value for name, value in os.environ.items() if not name.startswith("FASTPORT_")}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fastport",
            "pub",
            "t",
            "x",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**clean, **env},
        )
        _, err = await asyncio.wait_for(process.communicate(), 20)
        lines = err.decode().strip().splitlines()
        assert process.returncode == status and len(lines) == 1 and message in lines[0], err

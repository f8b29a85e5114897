"""``fastport keygen``, ``pub`` and ``sub`` as a user runs them, against a live broker."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, ClientFactory, SessionFactory

from fastport.config import ServerConfig
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
            argv = ("pub", "cli/a", text, "--envelope", envelope, "--wait-ack", "--timeout", "10")
            assert "pw" not in argv and key not in argv  # the secrets come from the environment only
            pub = await _fastport(*argv, env=env)
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


# ----------------------------------------------------------------------------- helpers


def _clean_env(**variables: str) -> dict[str, str]:
    """The environment without the caller's FASTPORT_* settings (FASTPORT_NO_EXTENSIONS kept), plus ``variables``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FASTPORT_") or name == "FASTPORT_NO_EXTENSIONS"
    }
    return {**kept, **variables}


async def _start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastport",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _finish(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, list[str]]:
    """Wait for ``process``; returns its status, stdout and stderr lines."""
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode().strip().splitlines()


async def _call(*args: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str, list[str]]:
    return await _finish(await _start(*args, env=env), timeout)


async def _subscribed(process: asyncio.subprocess.Process) -> str:
    """Wait for a ``fastport sub`` to report its subscription; returns that stderr line."""
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert line, "fastport sub ended before it subscribed"
        if line.startswith("subscribed to "):
            return line.strip()


def _client_env(port: int, session: str, key: str, scheme: str = "ws") -> dict[str, str]:
    return _clean_env(
        FASTPORT_URL=f"{scheme}://127.0.0.1:{port}",
        FASTPORT_SESSION=session,
        FASTPORT_PASSWORD="pw",
        FASTPORT_KEY=key,
    )


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# ------------------------------------------------------------------- pub and sub flags


async def test_qos_0_is_delivered(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    env = _client_env(server.port, session["sessionName"], _key())
    sub = await _start("sub", "q0/#", "--qos", "0", "--count", "1", env=env)
    try:
        await _subscribed(sub)
        status, out, err = await _call("pub", "q0/a", "at most once", "--qos", "0", env=env)
        assert status == 0 and out.strip().endswith("delivered to 1"), err
    finally:
        status, out, err = await _finish(sub)
    assert status == 0 and out.splitlines() == ["q0/a at most once"], err


async def test_retained_message_reaches_a_later_subscriber(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    env = _client_env(server.port, session["sessionName"], _key())
    status, out, err = await _call("pub", "room/temp", "21.5", "--retain", env=env)
    assert status == 0 and out.strip().endswith("delivered to 0"), err
    status, out, err = await _call("sub", "room/#", "--count", "1", env=env)
    assert status == 0 and out.splitlines() == ["room/temp 21.5"], err


async def test_wait_ack_times_out_with_one_line(
    server: FastportServer, make_session: SessionFactory, connect: ClientFactory
) -> None:
    session = await make_session()
    silent = await connect(session)  # subscribed, and never acks
    assert (await silent.subscribe("slow/#"))["success"] is True
    env = _client_env(server.port, session["sessionName"], _key())
    started = time.monotonic()
    status, out, err = await _call("pub", "slow/a", "x", "--wait-ack", "--timeout", "1", env=env, timeout=20)
    elapsed = time.monotonic() - started
    assert status == 1 and out == "" and len(err) == 1, err
    assert re.fullmatch(r"fastport: error: no ack for message [0-9a-f-]{36} within 1 s", err[0]), err
    assert 1 <= elapsed < 8, elapsed  # the timeout, plus starting Python


async def test_durable_sub_resumes_after_a_restart(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    env = _client_env(server.port, session["sessionName"], _key())
    durable = ("sub", "orders/#", "--durable", "--client-id", "till-1", "--count", "1")
    first = await _start(*durable, env=env)
    try:
        assert await _subscribed(first) == "subscribed to orders/#"
        status, out, err = await _call("pub", "orders/1", "first", "--wait-ack", env=env)
        assert status == 0 and out.strip().endswith("delivered to 1 acked"), err
    finally:
        status, out, err = await _finish(first)
    assert status == 0 and out.splitlines() == ["orders/1 first"], err
    # The subscriber is away: the broker holds the message for it.
    status, out, err = await _call("pub", "orders/2", "while away", env=env)
    assert status == 0 and out.strip().endswith("delivered to 1"), err
    status, out, err = await _call(*durable, env=env)
    assert status == 0 and out.splitlines() == ["orders/2 while away"], err
    assert err == ["subscribed to orders/# (resumed)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sub", "t", "--durable"], "--durable needs --client-id"),
        (["sub", "t", "--client-id", "has space"], "--client-id must be"),
        (["sub", "t", "--qos", "2"], "argument --qos: invalid choice"),
        (["sub", "t", "--count", "0"], "--count must be at least 1"),
        (["pub", "t", "x", "--wait-ack", "--qos", "0"], "--wait-ack needs --qos 1"),
        (["pub", "t", "x", "--timeout", "0"], "--timeout must be"),
        (["pub", "t", "x", "--timeout", "soon"], "argument --timeout: invalid float value"),
        (["pub", "t", "x", "--cacert", "ca.pem"], "--cacert needs a wss:// or https:// URL"),
        (["pub", "t", "x", "--url", "wss://h:1", "--insecure", "--cacert", "ca.pem"], "not both"),
        (["pub", "t", "x", "--url", "wss://h:1", "--cacert", "/nonexistent/ca.pem"], "cannot load --cacert"),
        (["pub", "t", "x", "--url", "http://h:1"], "url must start with ws:// or wss://"),
        (["pub", "t/#", "x"], "wildcards (+, #) are not allowed in a publish topic"),
        (["sub", "a/#/b"], "bad topic filter 'a/#/b': '#' must be a whole level"),
        (["pub"], "the following arguments are required"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args: list[str], message: str) -> None:
    env = _clean_env(FASTPORT_SESSION="s", FASTPORT_PASSWORD="pw", FASTPORT_KEY=base64.b64encode(bytes(32)).decode())
    result = subprocess.run(
        [sys.executable, "-m", "fastport", *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("fastport: error: ") and message in lines[0], lines


async def test_unreachable_broker_is_one_line() -> None:
    env = _client_env(1, "s", _key())
    # The client retries a first connection for up to its request timeout: run both at once.
    results = await asyncio.gather(_call("pub", "t", "x", env=env), _call("sub", "t", env=env))
    for status, _, err in results:
        assert status == 1 and len(err) == 1 and err[0].startswith("fastport: error: cannot reach ws://127.0.0.1:1")


async def test_a_session_dropped_under_sub_is_reported_once(
    server: FastportServer, make_session: SessionFactory
) -> None:
    session = await make_session()
    env = _client_env(server.port, session["sessionName"], _key())
    sub = await _start("sub", "news/#", env=env)
    try:
        await _subscribed(sub)
        drop = _clean_env(FASTPORT_URL=f"ws://127.0.0.1:{server.port}", FASTPORT_PASSWORD="pw")
        drop["FASTPORT_SECRET_KEY"] = session["secretKey"]
        status, out, err = await _call("session", "drop", session["sessionName"], env=drop)
        assert status == 0 and json.loads(out) == {"success": True}, err
    finally:
        status, out, err = await _finish(sub)
    assert status == 1 and out == "", err
    assert err == ["fastport: error: session ended by the broker: 4001 session dropped"]


async def test_a_wrong_key_is_a_warning_on_sub(server: FastportServer, make_session: SessionFactory) -> None:
    session = await make_session()
    sub = await _start("sub", "k/#", env=_client_env(server.port, session["sessionName"], _key()))
    try:
        await _subscribed(sub)
        env = _client_env(server.port, session["sessionName"], _key())
        status, _, err = await _call("pub", "k/a", "x", env=env)
        assert status == 0, err
        assert sub.stderr is not None
        line = (await asyncio.wait_for(sub.stderr.readline(), 20)).decode()
        assert line.startswith("fastport: warning: rejected message "), line
    finally:
        sub.kill()
        await _finish(sub)


# ------------------------------------------------------------------------------- TLS


def _certificate(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signed for 127.0.0.1 / localhost: (ca.pem, cert.pem, key.pem)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastport test CA")])
    ca = (
        _certificate(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _certificate(name, ca_name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


#: The ``tls_broker`` fixture: the broker on TLS, and the CA file that signed its certificate.
TLSBroker = tuple[FastportServer, Path]


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[TLSBroker]:
    ca, cert, key = make_ca_and_certificate(tmp_path)
    config = ServerConfig(
        port=0, data_dir=tmp_path / "data", tls_cert=cert, tls_key=key, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS
    )
    srv = await FastportServer.start(config)
    try:
        yield srv, ca
    finally:
        await srv.close()


async def test_tls_cacert_insecure_and_no_flag(tls_broker: TLSBroker) -> None:
    srv, ca = tls_broker
    admin = _clean_env(FASTPORT_URL=f"wss://127.0.0.1:{srv.port}", FASTPORT_PASSWORD="pw")
    admin["FASTPORT_ADMIN_TOKEN"] = srv.admin_token
    # session over https: refused without a trusted CA, then created with --cacert.
    status, _, err = await _call("session", "create", "tls", env=admin)
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"fastport: error: TLS certificate of https://127.0.0.1:{srv.port} not trusted"), err
    status, out, err = await _call("session", "create", "tls", "--cacert", str(ca), env=admin)
    assert status == 0 and json.loads(out)["success"] is True and err == [], err
    admin["FASTPORT_SECRET_KEY"] = json.loads(out)["secretKey"]
    for action, suspended in (("suspend", True), ("resume", False)):
        status, out, err = await _call("session", action, "tls", "--insecure", env=admin)
        assert status == 0 and json.loads(out) == {"success": True, "suspended": suspended}, err
        assert err == ["fastport: warning: --insecure: the broker's TLS certificate is not verified"]

    env = _client_env(srv.port, "tls", _key(), scheme="wss")
    status, out, err = await _call("pub", "secure/a", "x", env=env)
    assert status == 1 and out == "" and len(err) == 1, err
    assert err[0].startswith(f"fastport: error: TLS certificate of wss://127.0.0.1:{srv.port} not trusted"), err
    assert "certificate" in err[0] and "--cacert" in err[0]
    sub = await _start("sub", "secure/#", "--count", "2", "--cacert", str(ca), env=env)
    try:
        await _subscribed(sub)
        status, out, err = await _call("pub", "secure/a", "verified", "--cacert", str(ca), "--wait-ack", env=env)
        assert status == 0 and out.strip().endswith("delivered to 1 acked") and err == [], err
        status, out, err = await _call("pub", "secure/b", "unverified", "--insecure", env=env)
        assert status == 0 and out.strip().endswith("delivered to 1"), err
        assert err == ["fastport: warning: --insecure: the broker's TLS certificate is not verified"]
    finally:
        status, out, err = await _finish(sub)
    assert status == 0 and out.splitlines() == ["secure/a verified", "secure/b unverified"], err

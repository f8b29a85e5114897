"""TLS: https:// and wss:// on the same port, with a certificate the test makes."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastport_client_helpers import ADMIN_PASS, ADMIN_USER, WSClient, WSCollector, basic, parse_response
from picows import WSMsgType, ws_connect

from fastport.config import ServerConfig
from fastport.errors import ConfigError
from fastport.server.app import FastportServer

pytestmark = pytest.mark.both_loops

#: The ``tls_server`` fixture: the server and a client context trusting its certificate.
TLSServer = tuple[FastportServer, ssl.SSLContext]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TLSServer]:
    cert, key = make_certificate(tmp_path)
    srv = await FastportServer.start(
        ServerConfig(
            port=0, data_dir=tmp_path, tls_cert=cert, tls_key=key, admin_user=ADMIN_USER, admin_pass=ADMIN_PASS
        )
    )
    context = ssl.create_default_context(cafile=str(cert))
    try:
        yield srv, context
    finally:
        await srv.close()


async def test_https_and_wss_on_one_port(tls_server: TLSServer) -> None:
    srv, context = tls_server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=context, server_hostname="localhost")
    body = b'{"sessionName": "tls", "password": "pw"}'
    auth = basic(ADMIN_USER, ADMIN_PASS)["Authorization"].encode()
    writer.write(
        b"POST /api/createSession HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: "
        + auth
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    status, _, response = parse_response(await asyncio.wait_for(reader.read(), 5))
    writer.close()
    assert status == 200 and response["success"] is True

    transport, listener = await ws_connect(WSCollector, f"wss://localhost:{srv.port}/", ssl_context=context)
    assert isinstance(listener, WSCollector)  # ws_connect is typed to return the base class
    client = WSClient(transport, listener)
    try:
        assert (await client.init("tls", "pw"))["success"] is True
        assert (await client.subscribe("secure"))["success"] is True
        client.send_raw(b"x" * 10, WSMsgType.TEXT)
        assert (await client.recv())["code"] == 1001
    finally:
        await client.close()


async def test_plain_client_on_tls_port_is_refused(tls_server: TLSServer) -> None:
    srv, _ = tls_server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert not data.startswith(b"HTTP/1.1 200")


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match="cannot load TLS certificate"):
        ServerConfig(tls_cert=missing, tls_key=missing).ssl_context()
    with pytest.raises(ConfigError, match="must be given together"):
        ServerConfig(tls_cert=missing)


def _serial_presented(port: int) -> int:
    """The serial number of the certificate a new TLS handshake on ``port`` presents."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial_of(cert: Path) -> int:
    return x509.load_pem_x509_certificate(cert.read_bytes()).serial_number


class _Lines:
    """The broker's stderr, read by a thread, so a test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self._stream = stream = process.stderr
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def close(self) -> None:
        """After the process ended: the reader is at end of file."""
        self._thread.join(10)
        self._stream.close()

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in {seen!r}")


SERVE = [sys.executable, "-m", "fastport", "serve", "--port", "0"]
PING = b"\x89\x84\x00\x00\x00\x00ping"  # a masked ping (zero mask key) with payload "ping"
PONG = b"\x8a\x04ping"


def test_sighup_reloads_the_certificate_and_keeps_connections(tmp_path: Path) -> None:
    old_cert, old_key = make_certificate(tmp_path)
    (tmp_path / "new").mkdir()
    new_cert, new_key = make_certificate(tmp_path / "new")
    live_cert, live_key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    shutil.copy(old_cert, live_cert)
    shutil.copy(old_key, live_key)
    process = subprocess.Popen(
        [*SERVE, "--data-dir", str(tmp_path / "data"), "--tls-cert", str(live_cert), "--tls-key", str(live_key)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FASTPORT_LOG_LEVEL": "info"},
    )
    lines = _Lines(process)
    try:
        port = int(lines.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        assert _serial_presented(port) == _serial_of(old_cert)
        trust_old = ssl.create_default_context(cafile=str(old_cert))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            trust_old.wrap_socket(raw, server_hostname="localhost") as ws,
        ):
            ws.sendall(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += ws.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head

            shutil.copy(new_cert, live_cert)
            shutil.copy(new_key, live_key)
            process.send_signal(signal.SIGHUP)
            lines.wait_for(r"INFO fastport\.server: reloaded: TLS certificate \S+live-cert\.pem, logging to stderr")
            assert _serial_presented(port) == _serial_of(new_cert)
            ws.sendall(PING)
            assert ws.recv(4096) == PONG  # the WebSocket opened before the reload is still open

            live_cert.write_text("not a certificate")
            process.send_signal(signal.SIGHUP)
            lines.wait_for(r"ERROR fastport\.server: reload: cannot load TLS certificate")
            assert _serial_presented(port) == _serial_of(new_cert)  # the bad pair changed nothing
            assert process.poll() is None

            process.send_signal(signal.SIGTERM)
            close = ws.recv(4096)
            assert close[:1] == b"\x88" and close[2:4] == (1001).to_bytes(2, "big"), close
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        lines.close()

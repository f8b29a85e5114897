"""TLS: https:// and wss:// on the same port, with a certificate the test makes."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

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

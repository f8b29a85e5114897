"""Make a self-signed certificate for a local fastport broker (127.0.0.1 and localhost).

Usage: ``python loadtest/make_cert.py [DIR] [--days N]`` writes ``DIR/cert.pem`` and ``DIR/key.pem``
(DIR defaults to the current directory), then prints the two paths. Start the broker with
``fastport serve --tls-cert DIR/cert.pem --tls-key DIR/key.pem`` and give the load generator
``DIR/cert.pem`` as its CA (``--fastport-ca``) so it verifies the broker.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(directory: Path, days: int = 7) -> tuple[Path, Path]:
    """Write a self-signed EC P-256 certificate and key for 127.0.0.1 / localhost into ``directory``.

    Returns:
        The paths of ``cert.pem`` and ``key.pem`` (the key is written with mode 0600).
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return cert_path, key_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=".", type=Path)
    parser.add_argument("--days", type=int, default=7, help="validity in days (default 7)")
    args = parser.parse_args()
    cert_path, key_path = make_certificate(args.directory, args.days)
    print(cert_path)
    print(key_path)


if __name__ == "__main__":
    main()

"""Password and secret-key hashing for sessions.

Passwords are stored only as salted scrypt hashes. Computing scrypt costs tens of
milliseconds of CPU, so callers run ``hash_password`` / ``verify_password`` in an
executor, never on the event loop. ``VerifiedCache`` then remembers, per process and
under a random key, an HMAC of each password that verified once, so reconnect storms
cost a few microseconds per ``init`` instead of one scrypt each.

Secret keys are 256-bit random values; a SHA-256 digest of them is stored and
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCRYPT_N: Final = 1 << 14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted scrypt hash of a session password."""

    salt: bytes
    digest: bytes


def _kdf(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=HASH_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def hash_password(password: str) -> PasswordHash:
    """Hash ``password`` with a fresh random salt (CPU-heavy: run in an executor)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return PasswordHash(salt=salt, digest=_kdf(salt).derive(password.encode("utf-8")))


def verify_password(password: str, stored: PasswordHash) -> bool:
    """Return True if ``password`` matches ``stored`` (constant time; run in an executor)."""
    try:
        _kdf(stored.salt).verify(password.encode("utf-8"), stored.digest)
    except InvalidKey:
        return False
    return True


def new_secret_key() -> str:
    """A new session secret key: 64 lowercase hex characters (256 bits)."""
    return secrets.token_hex(32)


def digest_secret_key(secret_key: str) -> bytes:
    """The stored form of a secret key."""
    return hashlib.sha256(secret_key.encode("utf-8")).digest()


def secret_key_matches(secret_key: str, stored_digest: bytes) -> bool:
    """Compare a presented secret key with a stored digest in constant time."""
    return hmac.compare_digest(digest_secret_key(secret_key), stored_digest)


class VerifiedCache:
    """Per-process memory of passwords that verified once, keyed by an HMAC.

    Only a keyed HMAC of the password is kept, under a key that never leaves the
    process, so the cache cannot be read back into passwords.
    """

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def tag(self, password: str) -> bytes:
        """The cache tag of ``password``."""
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def matches(self, password: str, tag: bytes | None) -> bool:
        """Return True if ``tag`` is the tag of ``password`` (constant time)."""
        return tag is not None and hmac.compare_digest(self.tag(password), tag)

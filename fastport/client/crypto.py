"""End-to-end payload envelopes: the broker forwards ``data`` and ``hash`` and never looks inside.

Two formats, told apart by their shape (``docs/envelope.md`` has the byte-level layout):

* **v1**, the original fastPort clients': AES-256-CBC with PKCS#7 padding,
  ``data = base64(iv) + ":" + base64(ciphertext)`` and ``hash`` = lowercase hex SHA-256 of
  ``data``, checked before decrypting. It has no authentication: the hash only catches accidents.
* **v2**, the default: AES-256-GCM with a random 96-bit nonce,
  ``data = "v2." + base64(nonce || ciphertext || tag)``. The associated data binds the session
  name, topic and messageId, so a message moved to another session, topic or id fails to open.
  The plaintext starts with one kind byte (text or bytes) so ``str``/``bytes`` survive the trip.
  ``hash`` is still sent (SHA-256 of ``data``) so old receivers' check passes.

Receivers open both formats whatever they send. The key is 32 bytes, given as base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fastport.client.errors import EnvelopeAuthError, EnvelopeFormatError, EnvelopeHashMismatch

EnvelopeVersion = Literal["v1", "v2"]

KEY_SIZE: Final = 32
IV_SIZE: Final = 16
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
V2_PREFIX: Final = "v2."
#: Domain separation label at the start of the v2 associated data.
V2_AAD_LABEL: Final = b"fastport-envelope-v2"
#: First plaintext byte of a v2 envelope: what the sender passed.
KIND_BYTES: Final = 0x00
KIND_TEXT: Final = 0x01

_V1_SHAPE: Final = re.compile(r"[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+")
_U32: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Sealed:
    """An envelope ready for a ``publish`` frame: its ``data`` and ``hash`` fields."""

    data: str
    hash: str


def decode_key(key: str | bytes) -> bytes:
    """Return the 32 raw key bytes of a base64 key (or of 32 raw bytes).

    Raises:
        EnvelopeFormatError: not base64, or not 32 bytes long. The key is never echoed.
    """
    if isinstance(key, bytes) and len(key) == KEY_SIZE:
        return key
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeFormatError("key is not valid base64") from None
    if len(raw) != KEY_SIZE:
        raise EnvelopeFormatError(f"key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def payload_hash(data: str) -> str:
    """Return the ``hash`` field of ``data``: lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def envelope_version(data: str) -> EnvelopeVersion:
    """Tell a v2 envelope from a v1 one by its shape.

    Raises:
        EnvelopeFormatError: ``data`` is neither.
    """
    if data.startswith(V2_PREFIX):
        return "v2"
    if _V1_SHAPE.fullmatch(data):
        return "v1"
    raise EnvelopeFormatError("data is neither a v1 nor a v2 envelope")


def associated_data(session_name: str, topic: str, message_id: str) -> bytes:
    """Return the v2 associated data: the label, then each field as uint32-BE length + UTF-8 bytes."""
    parts = [V2_AAD_LABEL]
    for field in (session_name, topic, message_id):
        encoded = field.encode("utf-8")
        parts.append(_U32.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeFormatError("envelope is not valid base64") from None


def _check_hash(data: str, hash_: str | None, *, required: bool) -> None:
    if hash_ is None:
        if required:
            raise EnvelopeHashMismatch("missing hash")
        return
    if not hmac.compare_digest(payload_hash(data).encode(), hash_.encode("utf-8")):
        raise EnvelopeHashMismatch("hash does not match data")


def _to_bytes(message: str | bytes) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else bytes(message)


class EnvelopeCipher:
    """Seals and opens the envelopes of one session with its shared key.

    Args:
        key: the session's AES-256 key, base64 of 32 bytes (or the 32 raw bytes).
        session_name: the session the envelopes belong to (bound into v2 envelopes).

    Raises:
        EnvelopeFormatError: the key is not 32 bytes of base64.
    """

    __slots__ = ("_key", "_gcm", "session_name")

    def __init__(self, key: str | bytes, session_name: str) -> None:
        self._key = decode_key(key)
        self._gcm = AESGCM(self._key)
        self.session_name = session_name

    def __repr__(self) -> str:
        return f"EnvelopeCipher(session_name={self.session_name!r})"

    # ------------------------------------------------------------------------- v1

    def seal_v1(self, message: str | bytes, *, iv: bytes | None = None) -> Sealed:
        """Encrypt ``message`` as a v1 envelope (AES-256-CBC, PKCS#7).

        Args:
            message: text (sent as UTF-8) or bytes.
            iv: the 16-byte IV; random when None (give one only to reproduce test vectors).
        """
        iv = os.urandom(IV_SIZE) if iv is None else iv
        if len(iv) != IV_SIZE:
            raise ValueError(f"iv must be {IV_SIZE} bytes, got {len(iv)}")
        padder = padding.PKCS7(algorithms.AES.block_size).padder()
        padded = padder.update(_to_bytes(message)) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        data = base64.b64encode(iv).decode("ascii") + ":" + base64.b64encode(ciphertext).decode("ascii")
        return Sealed(data, payload_hash(data))

    def open_v1(self, data: str, hash_: str | None) -> str | bytes:
        """Check ``hash_`` against ``data``, then decrypt a v1 envelope.

        Returns:
            The plaintext as ``str`` when it is valid UTF-8 (the original clients send only
            text), else as ``bytes``.

        Raises:
            EnvelopeHashMismatch: ``hash_`` is missing or wrong (checked before decrypting).
            EnvelopeFormatError: not the v1 shape, or an IV that is not 16 bytes.
            EnvelopeAuthError: the ciphertext does not decrypt (bad padding or length).
        """
        _check_hash(data, hash_, required=True)
        if not _V1_SHAPE.fullmatch(data):
            raise EnvelopeFormatError("data is not a v1 envelope")
        iv_text, _, ciphertext_text = data.partition(":")
        iv, ciphertext = _b64decode(iv_text), _b64decode(ciphertext_text)
        if len(iv) != IV_SIZE:
            raise EnvelopeFormatError(f"v1 iv must be {IV_SIZE} bytes, got {len(iv)}")
        try:
            decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
            padded = decryptor.update(ciphertext) + decryptor.finalize()
            unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
            plaintext = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise EnvelopeAuthError("v1 decryption failed") from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            return plaintext

    # ------------------------------------------------------------------------- v2

    def seal_v2(self, message: str | bytes, *, topic: str, message_id: str, nonce: bytes | None = None) -> Sealed:
        """Encrypt ``message`` as a v2 envelope bound to this session, ``topic`` and ``message_id``.

        Args:
            message: text or bytes; the receiver gets the same type back.
            topic: the topic it is published on.
            message_id: the ``messageId`` of the publish frame.
            nonce: the 12-byte nonce; random when None (give one only in tests: never reuse one).
        """
        nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        kind = KIND_TEXT if isinstance(message, str) else KIND_BYTES
        plaintext = bytes((kind,)) + _to_bytes(message)
        sealed = self._gcm.encrypt(nonce, plaintext, associated_data(self.session_name, topic, message_id))
        data = V2_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")
        return Sealed(data, payload_hash(data))

    def open_v2(self, data: str, hash_: str | None, *, topic: str, message_id: str) -> str | bytes:
        """Decrypt and authenticate a v2 envelope received on ``topic`` as ``message_id``.

        Raises:
            EnvelopeHashMismatch: ``hash_`` is given and wrong.
            EnvelopeFormatError: not a v2 envelope, too short, or an unknown kind byte.
            EnvelopeAuthError: tampered, another key, or sealed for another session, topic or id.
        """
        _check_hash(data, hash_, required=False)
        if not data.startswith(V2_PREFIX):
            raise EnvelopeFormatError("data is not a v2 envelope")
        raw = _b64decode(data[len(V2_PREFIX) :])
        if len(raw) < NONCE_SIZE + TAG_SIZE + 1:
            raise EnvelopeFormatError("v2 envelope too short")
        aad = associated_data(self.session_name, topic, message_id)
        try:
            plaintext = self._gcm.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], aad)
        except InvalidTag:
            raise EnvelopeAuthError(
                "v2 authentication failed: tampered, another key, or another session, topic or messageId"
            ) from None
        kind, body = plaintext[0], plaintext[1:]
        if kind == KIND_TEXT:
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                raise EnvelopeFormatError("v2 text payload is not valid UTF-8") from None
        if kind == KIND_BYTES:
            return body
        raise EnvelopeFormatError(f"unknown v2 payload kind: {kind}")

    # ------------------------------------------------------------------- dispatch

    def seal(self, message: str | bytes, *, version: EnvelopeVersion, topic: str, message_id: str) -> Sealed:
        """Encrypt ``message`` in the envelope ``version`` (v1 ignores topic and message_id)."""
        if version == "v1":
            return self.seal_v1(message)
        return self.seal_v2(message, topic=topic, message_id=message_id)

    def open(self, data: str, hash_: str | None, *, topic: str, message_id: str) -> str | bytes:
        """Open a v1 or v2 envelope, whichever ``data`` is.

        Raises:
            EnvelopeError: the subclass says why (see ``open_v1`` and ``open_v2``).
        """
        if envelope_version(data) == "v2":
            return self.open_v2(data, hash_, topic=topic, message_id=message_id)
        return self.open_v1(data, hash_)

"""Envelope v1 (the original clients' vectors) and v2 (AES-GCM bound to session, topic and id): no sockets."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastport.client.crypto import (
    V2_PREFIX,
    EnvelopeCipher,
    associated_data,
    decode_key,
    envelope_version,
    payload_hash,
)
from fastport.client.errors import (
    EnvelopeAuthError,
    EnvelopeError,
    EnvelopeFormatError,
    EnvelopeHashMismatch,
)

# The v1 test vectors of docs/envelope.md, made with Node's built-in crypto module.
VECTORS_PATH = Path(__file__).parent / "envelope-v1-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]
V1_SHAPE = re.compile(r"^[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")
KEY = base64.b64encode(bytes(range(32))).decode()


def cipher(session: str = "s1", key: str = KEY) -> EnvelopeCipher:
    return EnvelopeCipher(key, session)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["plaintext"][:16]))
def test_v1_vectors_decrypt(vector: dict[str, Any]) -> None:
    opened = cipher(key=vector["key"]).open(vector["data"], vector["hash"], topic="any", message_id="any")
    assert opened == vector["plaintext"]
    assert payload_hash(vector["data"]) == vector["hash"]
    assert envelope_version(vector["data"]) == "v1"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["plaintext"][:16]))
def test_v1_vectors_reencrypt_byte_for_byte(vector: dict[str, Any]) -> None:
    sealed = cipher(key=vector["key"]).seal_v1(vector["plaintext"], iv=base64.b64decode(vector["iv"]))
    assert sealed.data == vector["data"]
    assert sealed.hash == vector["hash"]


def test_v1_hash_is_checked_before_decrypting() -> None:
    vector = VECTORS[0]
    c = cipher(key=vector["key"])
    with pytest.raises(EnvelopeHashMismatch):
        c.open(vector["data"], "0" * 64, topic="t", message_id="m")
    with pytest.raises(EnvelopeHashMismatch):
        c.open(vector["data"], None, topic="t", message_id="m")
    # Garbage that is not even decryptable still fails on the hash first.
    garbage = "AAAA:BBBB"
    with pytest.raises(EnvelopeHashMismatch):
        c.open(garbage, payload_hash("other"), topic="t", message_id="m")


def test_v1_corrupted_ciphertext_with_matching_hash_fails_to_decrypt() -> None:
    c = cipher()
    iv_text, ciphertext_text = c.seal_v1("hello").data.split(":")
    # "hello" is one CBC block, so the IV's last byte XORs the plaintext's last byte: the PKCS#7 padding
    # (eleven 0x0b) ends in 0x0a and is invalid every time. (Flipping a ciphertext byte instead scrambles
    # the block, and 1 time in 256 the result happens to be valid padding.)
    iv = bytearray(base64.b64decode(iv_text))
    iv[-1] ^= 0x01
    data = base64.b64encode(bytes(iv)).decode() + ":" + ciphertext_text
    with pytest.raises(EnvelopeAuthError):
        c.open(data, payload_hash(data), topic="t", message_id="m")
    short = iv_text + ":" + base64.b64encode(b"x" * 5).decode()
    with pytest.raises(EnvelopeAuthError):
        c.open(short, payload_hash(short), topic="t", message_id="m")


def test_v1_wrong_iv_length_is_a_format_error() -> None:
    data = base64.b64encode(b"x" * 8).decode() + ":" + base64.b64encode(b"y" * 16).decode()
    with pytest.raises(EnvelopeFormatError):
        cipher().open(data, payload_hash(data), topic="t", message_id="m")


@pytest.mark.parametrize("message", ["hello", "", "ünïcødé ✓ 🚀", b"\x00\xffbytes", b""])
def test_v2_round_trip_keeps_str_and_bytes(message: str | bytes) -> None:
    c = cipher()
    sealed = c.seal_v2(message, topic="a/b", message_id="m1")
    assert sealed.data.startswith(V2_PREFIX)
    assert not V1_SHAPE.match(sealed.data)
    assert sealed.hash == payload_hash(sealed.data)
    opened = c.open(sealed.data, sealed.hash, topic="a/b", message_id="m1")
    assert opened == message and type(opened) is type(message)
    # The hash is optional for v2: GCM authenticates.
    assert c.open(sealed.data, None, topic="a/b", message_id="m1") == message


def test_v2_nonces_are_random() -> None:
    c = cipher()
    assert c.seal_v2("same", topic="t", message_id="m").data != c.seal_v2("same", topic="t", message_id="m").data


@pytest.mark.parametrize(
    ("session", "topic", "message_id"),
    [("s2", "a/b", "m1"), ("s1", "a/c", "m1"), ("s1", "a/b", "m2")],
    ids=["other-session", "other-topic", "other-message-id"],
)
def test_v2_replay_elsewhere_is_rejected(session: str, topic: str, message_id: str) -> None:
    sealed = cipher("s1").seal_v2("secret", topic="a/b", message_id="m1")
    with pytest.raises(EnvelopeAuthError):
        cipher(session).open(sealed.data, sealed.hash, topic=topic, message_id=message_id)


def test_v2_wrong_key_is_rejected() -> None:
    sealed = cipher().seal_v2("secret", topic="t", message_id="m")
    other = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(EnvelopeAuthError):
        cipher(key=other).open(sealed.data, sealed.hash, topic="t", message_id="m")


def test_v2_every_flipped_byte_is_rejected() -> None:
    c = cipher()
    sealed = c.seal_v2("tamper me", topic="t", message_id="m")
    raw = base64.b64decode(sealed.data[len(V2_PREFIX) :])
    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= 0x80
        data = V2_PREFIX + base64.b64encode(bytes(tampered)).decode()
        with pytest.raises(EnvelopeAuthError):
            c.open(data, payload_hash(data), topic="t", message_id="m")


def test_v2_hash_when_present_must_match() -> None:
    sealed = cipher().seal_v2("x", topic="t", message_id="m")
    with pytest.raises(EnvelopeHashMismatch):
        cipher().open(sealed.data, "f" * 64, topic="t", message_id="m")


def test_v2_associated_data_is_unambiguous() -> None:
    assert associated_data("ab", "c", "d") != associated_data("a", "bc", "d")
    assert associated_data("a", "b", "cd") != associated_data("a", "bc", "d")
    sealed = cipher("ab").seal_v2("x", topic="c", message_id="d")
    with pytest.raises(EnvelopeAuthError):
        cipher("a").open(sealed.data, sealed.hash, topic="bc", message_id="d")


@pytest.mark.parametrize(
    "data", ["", "plain text", "v2.", "v2.!!!", "v2." + base64.b64encode(b"short").decode(), "a:b:c", "abc"]
)
def test_malformed_envelopes_are_format_errors(data: str) -> None:
    with pytest.raises(EnvelopeFormatError):
        cipher().open(data, payload_hash(data), topic="t", message_id="m")


def test_all_envelope_errors_are_value_errors() -> None:
    for error in (EnvelopeAuthError, EnvelopeFormatError, EnvelopeHashMismatch):
        assert issubclass(error, EnvelopeError) and issubclass(error, ValueError)


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_bad_keys_are_refused_without_echo(key: str) -> None:
    with pytest.raises(EnvelopeFormatError) as info:
        decode_key(key)
    assert key == "" or key not in str(info.value)


def test_raw_key_bytes_are_accepted_and_repr_hides_the_key() -> None:
    c = EnvelopeCipher(bytes(range(32)), "s")
    assert KEY not in repr(c)
    sealed = cipher("s").seal_v1("x")
    assert c.open(sealed.data, sealed.hash, topic="t", message_id="m") == "x"


@given(message=st.one_of(st.text(), st.binary()), topic=st.text(min_size=1), message_id=st.text(min_size=1))
def test_v2_round_trip_property(message: str | bytes, topic: str, message_id: str) -> None:
    c = cipher("prop")
    sealed = c.seal(message, version="v2", topic=topic, message_id=message_id)
    assert c.open(sealed.data, sealed.hash, topic=topic, message_id=message_id) == message


@given(message=st.text())
def test_v1_round_trip_property(message: str) -> None:
    c = cipher("prop")
    sealed = c.seal(message, version="v1", topic="ignored", message_id="ignored")
    assert V1_SHAPE.match(sealed.data)
    assert c.open(sealed.data, sealed.hash, topic="other", message_id="other") == message

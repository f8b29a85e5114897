"""A minimal MQTT 3.1.1 codec for the benchmark's load generator (sans-I/O: bytes in, packets out).

Only what the benchmark speaks: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0 and 1, PUBACK,
PINGREQ/PINGRESP. Section numbers refer to the OASIS MQTT 3.1.1 standard.
"""

from __future__ import annotations

import struct
from typing import Final

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13


def _remaining_length(n: int) -> bytes:
    """Variable-length encoding of the remaining length (§2.2.3): 7 bits per byte, high bit = more."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _remaining_length(len(body)) + body


def connect(client_id: str, keepalive_s: int = 600, clean_session: bool = True) -> bytes:
    """CONNECT (§3.1) with protocol level 4 and no will, username or password."""
    flags = 0x02 if clean_session else 0x00
    variable = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive_s)
    return _packet(CONNECT << 4, variable + _string(client_id))


def subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    """SUBSCRIBE (§3.8) for one filter; the fixed header flags must be 0b0010."""
    return _packet(SUBSCRIBE << 4 | 0x02, struct.pack("!H", packet_id) + _string(topic_filter) + bytes((qos,)))


def publish_header(topic: str, qos: int) -> tuple[bytes, bytes]:
    """The parts of a PUBLISH (§3.3) that do not change between messages on one topic: flags byte, topic."""
    return bytes((PUBLISH << 4 | (qos << 1),)), _string(topic)


def publish(topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    """PUBLISH (§3.3); a packet identifier is present only for QoS > 0."""
    variable = _string(topic) + (struct.pack("!H", packet_id) if qos else b"")
    body = variable + payload
    return bytes((PUBLISH << 4 | (qos << 1),)) + _remaining_length(len(body)) + body


def puback(packet_id: int) -> bytes:
    """PUBACK (§3.4)."""
    return b"\x40\x02" + struct.pack("!H", packet_id)


def pingreq() -> bytes:
    return b"\xc0\x00"


class Parser:
    """Splits a byte stream into MQTT packets; a WebSocket frame may hold part of one or several (§6)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add bytes; return every complete packet as ``(type, flags, body)``."""
        buffer = self._buffer + data if self._buffer else data
        packets: list[tuple[int, int, bytes]] = []
        pos, end = 0, len(buffer)
        while pos + 2 <= end:
            first = buffer[pos]
            length, shift, i = 0, 0, pos + 1
            while True:
                if i >= end:
                    self._buffer = buffer[pos:]
                    return packets
                byte = buffer[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("malformed remaining length")
            if i + length > end:
                break
            packets.append((first >> 4, first & 0x0F, buffer[i : i + length]))
            pos = i + length
        self._buffer = buffer[pos:]
        return packets


def parse_publish(flags: int, body: bytes) -> tuple[bytes, int, bytes]:
    """Split a PUBLISH body into ``(topic, packet_id, payload)``; packet_id is 0 at QoS 0."""
    topic_length = body[0] << 8 | body[1]
    pos = 2 + topic_length
    topic = body[2:pos]
    packet_id = 0
    if flags & 0x06:
        packet_id = body[pos] << 8 | body[pos + 1]
        pos += 2
    return topic, packet_id, body[pos:]


def packet_id_of(body: bytes) -> int:
    """The packet identifier at the start of a PUBACK or SUBACK body."""
    return body[0] << 8 | body[1]

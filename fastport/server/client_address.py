"""The client's address behind trusted reverse proxies (``--trusted-proxies``).

Only when the TCP peer is itself a trusted proxy are ``Forwarded`` (RFC 7239, preferred when present)
or else ``X-Forwarded-For`` read: their hops are walked from the right, trusted hops skipped, and the
first untrusted one is the client. A malformed, ``unknown`` or obfuscated hop stops the walk at the last
good hop (the peer itself if it is the first). From any other peer the headers are ignored: anyone can
write them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: At most this many hops are read from the right: a longer chain stops there.
MAX_HOPS: Final = 64


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``192.0.2.7``, ``::1`` or ``2001:db8::/32`` (host bits allowed) as networks.

    Raises:
        ValueError: an entry is no address or network.
    """
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str) -> Address | None:
    """A hop as proxies write it: ``192.0.2.1``, ``192.0.2.1:80``, ``2001:db8::1``, ``[2001:db8::1]:80``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "x"
        if rest and not (rest[0] == ":" and rest[1:].isdigit()):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double-quoted strings (``\\`` escapes inside them)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one ``Forwarded`` element, unquoted; empty if it has none."""
    for pair in _split(element, ";"):
        name, _, value = pair.strip().partition("=")
        if name.strip().lower() == "for":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace("\\", "")
            return value
    return ""


def _hops(forwarded_for: str | None, forwarded: str | None) -> list[str]:
    """The hops of the request, left (the original client) to right (the last proxy)."""
    if forwarded is not None and forwarded.strip():
        return [_forwarded_for(element) for element in _split(forwarded, ",")]
    return (forwarded_for or "").split(",") if forwarded_for is not None and forwarded_for.strip() else []


def is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    """True if ``address`` lies in one of the ``trusted`` networks."""
    return any(address in network for network in trusted)


def client_address(peer: str, forwarded_for: str | None, forwarded: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: ``peer``, or the rightmost untrusted hop when ``peer`` is a trusted proxy.

    Args:
        peer: the TCP peer's address (no port).
        forwarded_for: every ``X-Forwarded-For`` header of the request, joined with commas; None: none.
        forwarded: every ``Forwarded`` header, joined with commas; None: none. Preferred when present.
        trusted: the ``--trusted-proxies`` networks; empty trusts no one.

    Never raises: a hop that does not parse ends the walk at the last good one.
    """
    if not trusted:
        return peer
    own = _address(peer)
    if own is None or not is_trusted(own, trusted):
        return peer
    client = peer
    for hop in reversed(_hops(forwarded_for, forwarded)[-MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not is_trusted(address, trusted):
            break
    return client


__all__ = ["Network", "client_address", "is_trusted", "parse_networks"]

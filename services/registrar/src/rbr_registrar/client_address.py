"""The address a request came from, for registrations that do not know their own.

The real rustbucket asks public "what is my IP" services for its address and registers
`0.0.0.0` when none answers; it never retries. The registry then takes the address the
registration came from instead: the TCP peer, or, when the peer is one of the operator's
reverse proxies (`RBR_TRUSTED_PROXIES`), the client address that proxy recorded in the one
forwarding header the operator named (`RBR_TRUSTED_PROXY_HEADER`): `X-Forwarded-For` or
RFC 7239 `Forwarded`. The chain is read from the right, skipping trusted proxies: the first
address that is not one is the client's. Hops to its left were written by the client or by
proxies nobody vouches for, so they are never believed; nor is any header from a peer that
is not a trusted proxy. Pure functions: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from enum import StrEnum

from rbr_runtime.buckets import IpNetwork


class ProxyHeader(StrEnum):
    """The forwarding header a trusted proxy writes."""

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


class UnknownClientAddress(ValueError):
    """The address the request came from cannot be told; the message says why."""


def is_unspecified(address: str) -> bool:
    """Tells whether an IP literal is the unspecified address (`0.0.0.0` or `::`)."""
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def plain_address(text: str) -> str | None:
    """Returns the canonical form of an IP literal (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return None
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
    return ip.compressed


def node_address(node: str) -> str:
    """Returns the address part of a forwarding hop: strips quotes, brackets and a port.

    `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::17]:4711`, `"[2001:db8::17]"` and a bare
    IPv6 address give the address; `unknown` or an obfuscated `_identifier` come back as they
    are (and are not IP literals).
    """
    value = node.strip().strip('"').strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def forwarded_hops(values: Iterable[str]) -> list[str]:
    """Returns the `for=` nodes of `Forwarded` header values (RFC 7239), first hop first.

    Several header lines are one list, in order. An element without `for=` is a hop whose
    client is not said: it comes back as an empty string (not an address).
    """
    hops: list[str] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            if not element.strip():
                continue
            found = ""
            for pair in _split_outside_quotes(element, ";"):
                key, _, node = pair.partition("=")
                if key.strip().lower() == "for":
                    found = node_address(node)
            hops.append(found)
    return hops


def x_forwarded_for_hops(values: Iterable[str]) -> list[str]:
    """Returns the hops of `X-Forwarded-For` header values, first hop first."""
    return [node_address(hop) for value in values for hop in value.split(",") if hop.strip() != ""]


def client_address(
    peer: str | None,
    header_values: Sequence[str],
    trusted_proxies: Sequence[IpNetwork],
    header: ProxyHeader = ProxyHeader.X_FORWARDED_FOR,
) -> str:
    """Returns the address a request came from.

    Args:
        peer: the TCP peer's address (None when the server does not know it).
        header_values: every value of the forwarding header named by `header`, in order.
        trusted_proxies: networks of the operator's reverse proxies.
        header: which forwarding header the trusted proxies write.

    Raises:
        UnknownClientAddress: no peer address, or a trusted proxy's header holds a hop that is
            not an IP address before any untrusted one (so the client cannot be told).
    """
    peer_address = plain_address(peer) if peer else None
    if peer_address is None:
        raise UnknownClientAddress("the server does not know the address the request came from")

    def trusted(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in trusted_proxies)

    if not trusted(peer_address):
        return peer_address
    hops = (
        forwarded_hops(header_values)
        if header is ProxyHeader.FORWARDED
        else x_forwarded_for_hops(header_values)
    )
    for hop in reversed(hops):
        address = plain_address(hop)
        if address is None:
            raise UnknownClientAddress(
                f"the trusted proxy {peer_address} forwarded it with a {header.value} hop "
                "that is not an IP address"
            )
        if not trusted(address):
            return address
    if not hops:
        return peer_address  # the trusted network itself registered, not through a proxy
    # Every hop is a trusted proxy: the client is the leftmost of them.
    return plain_address(hops[0]) or peer_address

"""Finding listening addresses for a fleet's buckets by actually binding them.

Several fleets may run at once, in one process or many, so nothing is assumed free: each
address is taken by binding and listening on it, and a conflict just moves on to the next.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)

HTTPS_PORT = 443
BACKLOG = 128
# Give up on port 443 after this many taken addresses (e.g. a service on 0.0.0.0:443).
MAX_443_ATTEMPTS = 20_000
_FIRST_LOOPBACK = ipaddress.IPv4Address("127.0.0.2")
_LAST_LOOPBACK = ipaddress.IPv4Address("127.255.255.254")
# Errors meaning "this process cannot bind loopback aliases on 443 at all".
_CANNOT_BIND_443 = {errno.EACCES, errno.EPERM, errno.EADDRNOTAVAIL}


class BindMode(StrEnum):
    """How a fleet picks its buckets' addresses."""

    AUTO = "auto"
    """Port 443 on 127.0.0.2, 127.0.0.3, ... when possible, else ephemeral ports."""
    PORTS = "ports"
    """Always distinct ephemeral ports on 127.0.0.1."""


@dataclass(frozen=True, slots=True)
class Listener:
    """A bound, listening socket and the address it holds."""

    sock: socket.socket
    ip: str
    port: int


def loopback_addresses() -> Iterator[str]:
    """Yields 127.0.0.2, 127.0.0.3, ... skipping addresses whose last octet is 0 or 255."""
    address = _FIRST_LOOPBACK
    while address <= _LAST_LOOPBACK:
        if address.packed[-1] not in (0, 255):
            yield str(address)
        address += 1


def listen_on(ip: str, port: int) -> socket.socket:
    """Returns a non-blocking TCP socket bound to (ip, port) and listening.

    Raises:
        OSError: If the address cannot be bound (in use, not permitted, not available).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets a bucket that went silent bind its address again despite TIME_WAIT leftovers.
        # Listening right away makes a second socket that bound the same address fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def allocate(count: int, mode: BindMode) -> list[Listener]:
    """Binds `count` listening sockets, one per bucket.

    In AUTO mode the buckets get port 443 on consecutive free loopback addresses; if this
    process may not bind there (no privilege, or the aliases are not configured), the rest get
    ephemeral ports on 127.0.0.1.

    Args:
        count: How many sockets to bind.
        mode: How to pick the addresses.

    Raises:
        OSError: If an ephemeral port cannot be bound either.
    """
    listeners: list[Listener] = []
    if mode is BindMode.AUTO:
        listeners.extend(_allocate_443(count))
    while len(listeners) < count:
        listeners.append(_ephemeral_listener())
    return listeners


def _allocate_443(count: int) -> list[Listener]:
    listeners: list[Listener] = []
    failures = 0
    for ip in loopback_addresses():
        if len(listeners) == count or failures >= MAX_443_ATTEMPTS:
            break
        sock, error = _try_listen(ip, HTTPS_PORT)
        if sock is not None:
            listeners.append(Listener(sock=sock, ip=ip, port=HTTPS_PORT))
            continue
        if error in _CANNOT_BIND_443:
            logger.info(
                "cannot bind %s:443 (%s); using ephemeral ports", ip, errno.errorcode[error]
            )
            break
        failures += 1
    return listeners


def _try_listen(ip: str, port: int) -> tuple[socket.socket | None, int]:
    try:
        return listen_on(ip, port), 0
    except OSError as exc:
        return None, exc.errno or 0


def _ephemeral_listener() -> Listener:
    sock = listen_on("127.0.0.1", 0)
    ip, port = sock.getsockname()[:2]
    return Listener(sock=sock, ip=str(ip), port=int(port))

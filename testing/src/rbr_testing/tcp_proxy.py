"""A TCP proxy a test can cut and restore, to simulate a server outage (e.g. MariaDB's).

The shared MariaDB cannot be stopped by one test; putting this proxy between the service
under test and the server can. `cut()` closes every connection through it and refuses new
ones (clients see "connection refused/lost" at once, as when a server dies); `restore()`
accepts again::

    def test_outage(tcp_proxy_factory):
        proxy = tcp_proxy_factory("127.0.0.1", 3306)
        url = f"mysql+pymysql://root@127.0.0.1:{proxy.port}/db"
        proxy.cut(); ...; proxy.restore()
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

BUFFER = 65536


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target address until stopped."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._accepting = threading.Event()
        self._accepting.set()
        self._stopped = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Drops every open connection and refuses new ones until restore()."""
        self._accepting.clear()
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            _close(sock)

    def restore(self) -> None:
        """Accepts and forwards connections again."""
        self._accepting.set()

    def stop(self) -> None:
        """Closes everything."""
        self._stopped.set()
        self.cut()
        _close(self._listener)
        self._thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._accepting.is_set():
                # Refuse the way a dead server does: reset rather than a half-open socket.
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                _close(client)
                continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._connections |= {client, upstream}
            self.accepted += 1
        threading.Thread(
            target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True
        ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        peers = {client: upstream, upstream: client}
        with contextlib.suppress(OSError, ValueError):
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(BUFFER)
                    if not data:
                        raise ConnectionError("closed")
                    peers[source].sendall(data)
                if source_closed(client) or source_closed(upstream):
                    break
        selector.close()
        for sock in peers:
            _close(sock)
        with self._lock:
            self._connections -= set(peers)


def source_closed(sock: socket.socket) -> bool:
    """Tells whether a socket was closed by cut()."""
    return sock.fileno() < 0


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


TcpProxyFactory = Callable[[str, int], TcpProxy]


@pytest.fixture
def tcp_proxy_factory() -> Iterator[TcpProxyFactory]:
    """Yields a function that starts proxies to a host and port; all stopped after the test."""
    proxies: list[TcpProxy] = []

    def start(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()

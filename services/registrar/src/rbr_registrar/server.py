"""Uvicorn as a service component: serves the app on a thread, drains on stop."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


class HttpServer:
    """Runs an ASGI app with uvicorn until stopped, with hooks around it.

    `before` runs before serving and `after` once the last request finished, so the parts
    requests depend on (the group committer) outlive every request.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        access_log: bool = False,
        graceful_timeout: float = 15.0,
        before: Callable[[], None] = lambda: None,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=max(1, round(graceful_timeout)),
            server_header=False,
            # The registrar reads forwarding headers itself, only from RBR_TRUSTED_PROXIES
            # (`client_address.py`); uvicorn would believe any from 127.0.0.1.
            proxy_headers=False,
        )
        self._server = uvicorn.Server(self._config)
        self._before = before
        self._after = after
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int | None:
        """Returns the bound port once serving (useful when asked for port 0)."""
        if self._socket is None:
            return None
        return int(self._socket.getsockname()[1])

    def readiness(self) -> str | None:
        """Readiness check: None once the server accepts connections."""
        return None if self._server.started else "HTTP server starting"

    def run(self) -> None:
        """Binds, serves until stop(), then runs the `after` hook."""
        family = socket.AF_INET6 if ":" in self._config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._config.host, self._config.port))
        self._socket = sock
        self._before()
        try:
            self._server.run(sockets=[sock])
        finally:
            self._after()
            sock.close()

    def stop(self) -> None:
        """Stops accepting connections and lets the requests in flight finish."""
        self._server.should_exit = True

"""The agent's HTTPS server: `/update_bucket`, `/extract_logs` and `/healthz`.

Standard library only: a threaded HTTP/1.1 server behind TLS, a bounded number of
connections, the bucket token checked in constant time, `/extract_logs` chunked so that a
transfer cut short is never taken for a whole one (agent/README.md, "How every line goes
once").
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rbr_agent.ledger import BadCursor
from rbr_agent.pulls import Busy, LogService, TransferCut
from rbr_agent.status import StatusReporter

log = logging.getLogger(__name__)

UPDATE_PATH = "/update_bucket"
EXTRACT_PATH = "/extract_logs"
HEALTH_PATH = "/healthz"
CURSOR_HEADER = "X-Log-Cursor"
CURSOR_RESET_HEADER = "X-Log-Cursor-Reset"


class Endpoints:
    """What the server answers, apart from HTTP plumbing."""

    def __init__(self, token: str, status: StatusReporter, logs: LogService) -> None:
        """Keeps the token the registry must present, and the two services."""
        self._token = token.encode()
        self.status = status
        self.logs = logs

    def authorised(self, header: str | None) -> bool:
        """Tells whether an Authorization header carries the bucket's token."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "token":
            return False
        return hmac.compare_digest(value.strip().encode(), self._token)


class Handler(BaseHTTPRequestHandler):
    """One connection's requests."""

    protocol_version = "HTTP/1.1"
    timeout = 60.0
    server: AgentHTTPServer

    def version_string(self) -> str:
        """Names the server without its Python version."""
        return "rbr-agent"

    def log_message(self, format: str, *args: Any) -> None:
        """Sends the access log to logging (never headers: they carry the token)."""
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        """Routes a GET."""
        url = urlsplit(self.path)
        endpoints = self.server.endpoints
        if url.path == HEALTH_PATH:
            self._json(200, {"status": "ok"})
            return
        if url.path not in (UPDATE_PATH, EXTRACT_PATH):
            self._json(404, {"status": "error", "error": "no such endpoint"})
            return
        if not endpoints.authorised(self.headers.get("Authorization")):
            self._json(
                401,
                {"status": "error", "error": "send the bucket token: Authorization: Token ..."},
                {"WWW-Authenticate": "Token"},
            )
            return
        if url.path == UPDATE_PATH:
            self._json(200, endpoints.status.answer())
            return
        since = parse_qs(url.query, keep_blank_values=True).get("since")
        self._extract(endpoints.logs, since[-1] if since else None)

    def _refuse_method(self) -> None:
        self._json(405, {"status": "error", "error": "only GET"}, {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _extract(self, logs: LogService, since: str | None) -> None:
        try:
            pull = logs.begin(since)
        except BadCursor as error:
            self._json(400, {"status": "error", "error": str(error)})
            return
        except Busy:
            self._json(
                503,
                {"status": "error", "error": "another pull is being served"},
                {"Retry-After": "30"},
            )
            return
        except OSError as error:
            log.error("cannot prepare a pull: %s", error)
            self._json(503, {"status": "error", "error": "log directory unavailable"})
            return
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header(CURSOR_HEADER, pull.cursor)
        if pull.reset:
            self.send_header(CURSOR_RESET_HEADER, "true")
        self.end_headers()
        try:
            for chunk in logs.body(pull):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        except TransferCut as cut:
            # No final chunk: the registry sees an incomplete answer and asks again.
            log.warning("pull %s cut short (%s); the registry will ask again", pull.cursor, cut)
            return
        self.wfile.write(b"0\r\n\r\n")


class AgentHTTPServer(ThreadingHTTPServer):
    """The threaded HTTPS server, at most `max_connections` connections at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        endpoints: Endpoints,
        tls: ssl.SSLContext,
        max_connections: int = 32,
    ) -> None:
        """Binds and listens (port 0 picks a free one); the caller runs `serve_forever`."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.endpoints = endpoints
        self._slots = threading.BoundedSemaphore(max_connections)

    @property
    def port(self) -> int:
        """Returns the port the server listens on."""
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serves the connection on a thread, or closes it when all slots are taken."""
        if not self._slots.acquire(blocking=False):
            log.warning("too many connections; closing one from %s", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serves one connection and frees its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Logs a failed connection in one line (a port scan's failed handshake is routine)."""
        log.info("connection from %s failed", client_address[0], exc_info=log.isEnabledFor(10))

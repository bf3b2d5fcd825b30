"""Local HTTP receivers that record every request: webhook, Slack, PagerDuty, Opsgenie stand-ins.

A receiver listens on 127.0.0.1 (HTTP/1.1, keep-alive, one thread per connection), records
each request's method, path, query, headers and raw body, and answers with scripted
responses: a queue of one-off answers first, then a default answer. Tests wait on what
arrived with `wait_for_requests`, never by sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        """Returns the body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, body, headers, and an optional delay before answering."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


class HttpReceiver:
    """An HTTP server on loopback that records requests and answers as scripted."""

    def __init__(self, default: Reply | None = None) -> None:
        self._default = default or Reply()
        self._queue: deque[Reply] = deque()
        self._requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="http-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """Returns the base URL, e.g. http://127.0.0.1:40123."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Returns a copy of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def start(self) -> HttpReceiver:
        """Starts serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()

    def respond(self, reply: Reply) -> None:
        """Sets the answer given whenever no scripted one-off answer is queued."""
        with self._lock:
            self._default = reply

    def enqueue(self, *replies: Reply) -> None:
        """Queues one-off answers, used in order before the default answer."""
        with self._lock:
            self._queue.extend(replies)

    def clear(self) -> None:
        """Forgets the requests received so far."""
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> list[ReceivedRequest]:
        """Waits until at least `count` requests arrived and returns all of them.

        Raises:
            AssertionError: fewer arrived before the deadline.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self._requests)} request(s) after {timeout}s, wanted {count}"
                    )
                self._arrived.wait(remaining)
            return list(self._requests)

    def _record(self, request: ReceivedRequest) -> Reply:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()
            return self._queue.popleft() if self._queue else self._default


def _handler_class(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are written separately: with Nagle's algorithm on, the body would
        # wait for the client's delayed ACK (~40 ms per request on Linux).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_GET(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = ReceivedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                received_at=time.time(),
            )
            reply = receiver._record(request)
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keeps test output quiet."""

    return Handler


@pytest.fixture
def http_receiver_factory() -> Iterator[Callable[..., HttpReceiver]]:
    """Starts receivers on demand (`factory(Reply(202))`); all are stopped after the test."""
    started: list[HttpReceiver] = []

    def start(default: Reply | None = None) -> HttpReceiver:
        receiver = HttpReceiver(default).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def http_receiver(http_receiver_factory: Callable[..., HttpReceiver]) -> HttpReceiver:
    """One receiver answering 200 "ok" to everything unless scripted otherwise."""
    return http_receiver_factory()

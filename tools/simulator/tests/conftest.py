"""Fixtures of the simulator's tests: a deadline-based waiter and a capturing registrar."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Polls `condition` until it returns something truthy; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value {value!r}")
        time.sleep(0.02)
        value = condition()
    return value


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """Returns `wait_until(condition, timeout=..., what=...)`."""
    return wait_until


@dataclass
class CapturedRequest:
    """One request the capturing registrar received."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class CaptureRegistrar:
    """A tiny HTTP registrar that records every POST and answers with a fixed status."""

    url: str
    requests: list[CapturedRequest] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def capture_registrar() -> Iterator[CaptureRegistrar]:
    """Yields a running capturing registrar on 127.0.0.1 (independent of the simulator)."""
    state = CaptureRegistrar(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with state.lock:
                state.requests.append(
                    CapturedRequest(
                        path=self.path, headers=dict(self.headers.items()), body=json.loads(raw)
                    )
                )
            reply = json.dumps({"status": "registered"}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # Keep test output quiet.

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()

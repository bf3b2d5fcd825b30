"""`/healthz`, `/readyz` and Prometheus `/metrics` for services without a web framework.

Liveness says the process works (no component crashed); readiness says it can do its job now
(for example: joined its consumer group, database reachable). A check added as not required
reports a degraded service without failing readiness: the service still does its job (the
registrar keeps acknowledging registrations while the broker is away, its outbox holds them).
The registrar serves the same answers from FastAPI routes built on `HealthState`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], str | None]
"""Returns None when ready, or a short reason why not."""


class HealthState:
    """What the health endpoints report: readiness checks and crashed components."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadinessCheck] = {}
        self._optional: set[str] = set()
        self._failures: dict[str, str] = {}
        self._lock = threading.Lock()

    def add_check(self, name: str, check: ReadinessCheck, *, required: bool = True) -> None:
        """Registers a readiness check.

        Args:
            name: what the check is about, as `/readyz` names it.
            check: returns None when fine, or why not.
            required: whether a failing check makes the service not ready; when False it is
                reported under `degraded` and `/readyz` still answers 200.
        """
        self._checks[name] = check
        if not required:
            self._optional.add(name)

    def mark_failed(self, component: str, reason: str) -> None:
        """Records that a component died; liveness fails from now on."""
        with self._lock:
            self._failures[component] = reason

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Returns (alive, body)."""
        with self._lock:
            failures = dict(self._failures)
        if failures:
            return False, {"status": "failed", "failed": failures}
        return True, {"status": "ok"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Runs every check; returns (ready, body naming what is not ready)."""
        alive, body = self.liveness()
        if not alive:
            return False, body
        waiting: dict[str, str] = {}
        degraded: dict[str, str] = {}
        for name, check in self._checks.items():
            reason = _run_check(check)
            if reason is not None:
                (degraded if name in self._optional else waiting)[name] = reason
        if waiting:
            return False, {"status": "not ready", "waiting": waiting, **_if_any(degraded)}
        if degraded:
            return True, {"status": "degraded", "degraded": degraded}
        return True, {"status": "ready", "checks": sorted(self._checks)}


def _if_any(degraded: dict[str, str]) -> dict[str, dict[str, str]]:
    return {"degraded": degraded} if degraded else {}


def _run_check(check: ReadinessCheck) -> str | None:
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - a failing check means "not ready", with why
        return f"{type(error).__name__}: {str(error)[:200]}"


def metrics_payload() -> bytes:
    """Returns the Prometheus exposition of every registered metric."""
    payload: bytes = generate_latest()
    return payload


class _Handler(BaseHTTPRequestHandler):
    state: HealthState

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, metrics_payload(), CONTENT_TYPE_LATEST)
            return
        if path in ("/healthz", "/readyz"):
            ok, body = self.state.liveness() if path == "/healthz" else self.state.readiness()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, orjson.dumps(body), "application/json")
            return
        self._send(HTTPStatus.NOT_FOUND, b'{"detail":"not found"}', "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps probe requests out of the logs."""


class HealthServer:
    """Serves the health endpoints on a background thread."""

    def __init__(self, state: HealthState, host: str, port: int) -> None:
        handler = type("HealthHandler", (_Handler,), {"state": state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-server", daemon=True
        )

    @property
    def port(self) -> int:
        """Returns the port actually bound (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Starts serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()

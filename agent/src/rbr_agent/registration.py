"""Registering the agent's bucket with the registrar, at every start.

The same name and token every time (the persistent identity), so a restart updates the one
bucket (address, port, pinned certificate) or leaves it unchanged; it never makes another.
With an enrollment key the bucket is active at once, without one it waits for an operator.

Failures that retrying can fix (the registrar unreachable, a 5xx, a 429) are retried with
backoff, while the agent serves; answers that retrying cannot fix (a 4xx: refused key, name
taken by another token, an address the registry will not call) are logged with the
registrar's reason, and the agent stops trying until its next start.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rbr_agent import __version__

log = logging.getLogger(__name__)

REGISTER_PATH = "/api/v1/register_bucket"
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RegistrarSettings:
    """Where and how to register."""

    url: str
    enrollment_key: str | None = None
    ca_file: str | None = None
    timeout: float = 15.0
    max_backoff: float = 300.0


@dataclass(frozen=True)
class Outcome:
    """What one registration attempt got."""

    done: bool
    """True when retrying would not change it (registered, or refused for good)."""
    status: str
    detail: str = ""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses redirects: the registration (token, key) goes to the configured registrar only."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def route_address(registrar_url: str) -> str | None:
    """Returns this host's address on the route to the registrar (no packet is sent)."""
    host = urlsplit(registrar_url).hostname
    if not host:
        return None
    try:
        family, _, _, _, address = socket.getaddrinfo(host, 443, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    except OSError:
        return None


def payload(
    *,
    name: str,
    token: str,
    ip_address: str,
    port: int,
    operating_system: str,
    pin: str | None,
    enrollment_key: str | None,
) -> dict[str, Any]:
    """Returns the registration body: the required fields, the port, the pin and the agent marks.

    No metrics: they change between any two starts, and would make every restart a new
    version of the bucket; the poller reports them from `/update_bucket` instead.
    """
    body: dict[str, Any] = {
        "name": name,
        "ip_address": ip_address,
        "port": port,
        "operating_system": operating_system,
        "token": token,
        # What a registry that knows delivery modes records; older ones ignore them.
        "delivery_mode": "agent",
        "agent_version": __version__,
    }
    if pin is not None:
        body["tls_cert_sha256"] = pin
    if enrollment_key:
        body["registration_key"] = enrollment_key
    return body


def register_once(settings: RegistrarSettings, body: dict[str, Any]) -> Outcome:
    """Posts one registration and classifies the answer (never raises on network errors)."""
    url = settings.url.rstrip("/") + REGISTER_PATH
    request = urllib.request.Request(  # noqa: S310 - the operator's registrar URL
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"rbr-agent/{__version__}"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
    opener = urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=settings.timeout) as response:
            answer = _json(response.read(65536))
            return Outcome(True, str(answer.get("status", "registered")))
    except urllib.error.HTTPError as error:
        detail = str(_json(error.read(65536)).get("detail", ""))[:500] or error.reason
        return Outcome(error.code not in RETRYABLE, f"HTTP {error.code}", str(detail))
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        return Outcome(False, "unreachable", f"{type(error).__name__}: {reason}")


def _json(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


class Registrar:
    """Registers in the background until the registrar gave a final answer."""

    def __init__(self, settings: RegistrarSettings, body: dict[str, Any]) -> None:
        """Keeps what to send; `start()` sends it."""
        self.settings = settings
        self._body = body
        self._stop = threading.Event()
        self.outcome: Outcome | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registration", daemon=True)

    def start(self) -> None:
        """Starts registering on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stops retrying."""
        self._stop.set()

    def _run(self) -> None:
        delay = 1.0
        name = self._body["name"]
        while not self._stop.is_set():
            outcome = register_once(self.settings, self._body)
            self.outcome = outcome
            if outcome.done and outcome.status.startswith("HTTP"):
                log.error(
                    "the registrar refused bucket %s (%s): %s; not retrying until restarted",
                    name,
                    outcome.status,
                    outcome.detail,
                )
                break
            if outcome.done:
                _log_registered(name, outcome.status)
                break
            log.warning(
                "cannot register bucket %s yet (%s %s); retrying in %.0fs",
                name,
                outcome.status,
                outcome.detail,
                delay,
            )
            self._stop.wait(delay)
            delay = min(delay * 2, self.settings.max_backoff)
        self.finished.set()


def _log_registered(name: str, status: str) -> None:
    if status == "pending":
        log.info("bucket %s registered: pending, waiting for an operator's approval", name)
    else:
        log.info("bucket %s registered (%s)", name, status)

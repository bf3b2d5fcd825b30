"""What every channel sender shares: the result of one try, its classification, scrubbing.

A sender makes exactly one try per `send` call and never raises for a delivery problem: it
returns an `AttemptResult` saying whether the try worked, may be retried (timeouts, connection
errors, 408, 429, 5xx) or never will (other 4xx, refused configuration). Error texts are
scrubbed of the channel's secrets and of every URL, because they end up in the database, in
logs and in DLQ headers.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import re
import ssl
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from rbr_notifier.channels import HttpChannel
from rbr_notifier.model import Notification
from rbr_notifier.senders.connections import ConnectionPool

USER_AGENT = "rbr-notifier/0.1 (+https://github.com/jamesbinford/rustbucket)"
MAX_ERROR_CHARS = 300
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class Outcome(StrEnum):
    """What one try came to."""

    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class AttemptResult:
    """The result of one try: outcome, HTTP status if any, a scrubbed error, Retry-After."""

    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """Tells whether the try delivered the notification."""
        return self.outcome is Outcome.OK

    def describe(self) -> str:
        """Returns a short description: HTTP status and error."""
        parts = [f"HTTP {self.http_status}"] if self.http_status is not None else []
        if self.error:
            parts.append(self.error)
        return ": ".join(parts) or self.outcome.value


class Scrubber:
    """Removes secrets and URLs from text that leaves the sender."""

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str, limit: int = MAX_ERROR_CHARS) -> str:
        """Returns text without secrets or URLs, on one line, cut to `limit` characters."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        text = _URL.sub("<url>", text)
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


class Sender(ABC):
    """Sends notifications to one channel; one try per call."""

    channel_type: str = ""
    # A digest opens an incident (PagerDuty) or alert (Opsgenie) of its own on this channel,
    # which the notifier resolves once every alert folded into it has resolved.
    closes_digests: bool = False

    def __init__(self, name: str, secrets: list[str]) -> None:
        self.name = name
        self.scrub = Scrubber(secrets)

    @abstractmethod
    def send(self, notification: Notification) -> AttemptResult:
        """Makes one try at delivering the notification."""

    def close(self) -> None:  # noqa: B027 - most senders hold nothing to close
        """Releases connections."""


def json_body(payload: Any) -> bytes:
    """Returns a document as compact UTF-8 JSON (orjson; json for what orjson refuses).

    orjson refuses integers beyond 64 bits, which an alert's context may hold.
    """
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def quiet_http_client_logs() -> None:
    """Keeps httpx/httpcore below INFO: their request lines hold webhook URLs, which are secrets."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parses a Retry-After header: delay in seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class HttpSender(Sender):
    """A sender speaking JSON over HTTP(S) with pooled, kept-alive connections (thread-safe).

    Requests go through `ConnectionPool` (the cheapest in CPU time), or through
    httpx where the environment names a proxy for the URL (HTTPS_PROXY and the like, which
    httpx follows).
    """

    def __init__(self, config: HttpChannel, timeout: float) -> None:
        super().__init__(config.name, config.secrets())
        self._timeout = timeout
        verification = _verification(config.tls_verify, config.ca_file)
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            verify=verification,
            headers={"User-Agent": USER_AGENT},
        )
        self._pool = ConnectionPool(timeout, verification, {"User-Agent": USER_AGENT})
        self._proxied: dict[str, bool] = {}

    def close(self) -> None:
        """Closes the connection pools."""
        self._client.close()
        self._pool.close()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        """POSTs a body and classifies the answer; never raises for network problems."""
        if self._through_proxy(url):
            return self._post_httpx(url, body, headers)
        try:
            answer = self._pool.post(url, body, headers)
        except TimeoutError as error:
            return AttemptResult(
                Outcome.RETRY, error=f"timeout after {self._timeout:g}s ({type(error).__name__})"
            )
        except (OSError, http.client.HTTPException) as error:
            return AttemptResult(
                Outcome.RETRY, error=self.scrub(f"{type(error).__name__}: {error}")
            )
        return self.classify_answer(answer.status, answer.text, answer.headers.get("retry-after"))

    def _post_httpx(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            return AttemptResult(
                Outcome.RETRY, error=f"timeout after {self._timeout:g}s ({type(error).__name__})"
            )
        except httpx.TransportError as error:
            return AttemptResult(
                Outcome.RETRY, error=self.scrub(f"{type(error).__name__}: {error}")
            )
        return self.classify(response)

    def _through_proxy(self, url: str) -> bool:
        """Tells whether the environment sends requests to this URL's host through a proxy."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxied:
            proxies = urllib.request.getproxies_environment()
            named = parts.scheme in proxies or "all" in proxies
            bypassed = bool(urllib.request.proxy_bypass(parts.hostname or ""))
            self._proxied[origin] = named and not bypassed
        return self._proxied[origin]

    def post_json(
        self, url: str, payload: Any, headers: dict[str, str] | None = None
    ) -> AttemptResult:
        """POSTs a JSON document."""
        return self.post(
            url, json_body(payload), {"Content-Type": "application/json", **(headers or {})}
        )

    def classify(self, response: httpx.Response) -> AttemptResult:
        """Turns an httpx answer into an outcome (see `classify_answer`)."""
        return self.classify_answer(
            response.status_code,
            response.text if response.content else "",
            response.headers.get("Retry-After"),
        )

    def classify_answer(self, status: int, text: str, retry_after: str | None) -> AttemptResult:
        """Turns an HTTP answer into an outcome: 2xx ok, 408/425/429/5xx retry, others never."""
        if 200 <= status < 300:
            return AttemptResult(Outcome.OK, http_status=status)
        detail = self.scrub(text, 200) if text else None
        if status in RETRYABLE_STATUSES or status >= 500:
            return AttemptResult(
                Outcome.RETRY,
                http_status=status,
                error=detail,
                retry_after=retry_after_seconds(retry_after),
            )
        if 300 <= status < 400:
            detail = "redirects are not followed; configure the final URL"
        return AttemptResult(Outcome.PERMANENT, http_status=status, error=detail)


def trust_context(ca_file: Path | None) -> ssl.SSLContext:
    """Returns a verifying TLS context: the usual CAs, plus the channel's `ca_file` if set.

    The usual CAs are certifi's bundle (httpx's default, or SSL_CERT_FILE) and the operating
    system's store. A `ca_file` adds to them rather than replacing them: a private CA for one
    relay must not make every public endpoint (a corporate proxy aside) untrusted.
    """
    context = httpx.create_ssl_context()
    context.load_default_certs()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _verification(tls_verify: bool, ca_file: Path | None) -> ssl.SSLContext | bool:
    if not tls_verify:
        return False
    return trust_context(ca_file)

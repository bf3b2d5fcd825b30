"""Registering simulated buckets with the registry, the way the real honeypot does it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from rbr_simulator.bucket import BucketInfo

DEFAULT_REGISTER_PATH = "/api/v1/register_bucket/"


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """The registry's answer to one bucket's registration.

    Attributes:
        name: The bucket.
        status_code: HTTP status, or None when no answer came.
        json: The decoded JSON body, or None when the body was not JSON.
        text: The body as text (cut to 2,000 characters).
        error: Why no answer came (connection refused, timeout...), else None.
    """

    name: str
    status_code: int | None
    json: Any
    text: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Returns True when the registry accepted the registration (2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


def registration_url(registrar_url: str) -> str:
    """Returns the URL to POST registrations to.

    A bare base URL (no path) gets the registry's API path; a URL with a path is used as the
    honeypot uses its configured URL: with a trailing slash appended when missing.
    """
    if urlsplit(registrar_url).path.strip("/") == "":
        return registrar_url.rstrip("/") + DEFAULT_REGISTER_PATH
    return registrar_url if registrar_url.endswith("/") else registrar_url + "/"


def registration_payload(bucket: BucketInfo, registration_key: str | None) -> dict[str, Any]:
    """Returns the JSON body a bucket registers with.

    Like the real honeypot it omits the optional metrics; it adds `port` when not on 443,
    the S3 fields in S3 mode and the registration key when one is given.
    """
    payload: dict[str, Any] = {
        "name": bucket.name,
        "ip_address": bucket.ip,
        "operating_system": bucket.operating_system,
        "token": bucket.token,
    }
    if bucket.port != 443:
        payload["port"] = bucket.port
    if bucket.s3 is not None:
        payload["s3_bucket_name"] = bucket.s3.bucket_name
        payload["s3_region"] = bucket.s3.region
        payload["s3_prefix"] = bucket.s3.prefix
    if registration_key is not None:
        payload["registration_key"] = registration_key
    return payload


async def register_all(
    buckets: Sequence[BucketInfo],
    registrar_url: str,
    *,
    registration_key: str | None = None,
    verify: bool | ssl.SSLContext = True,
    request_timeout: float = 10.0,
    concurrency: int = 32,
) -> list[RegistrationResult]:
    """POSTs every bucket's registration; returns the results in the buckets' order.

    Args:
        buckets: The buckets to register.
        registrar_url: The registry's base URL or registration endpoint.
        registration_key: Enrolment key, sent in the body and as `Authorization: Bearer`.
        verify: TLS verification for an https registry (see httpx).
        request_timeout: Seconds per request (the real honeypot uses 10).
        concurrency: Registrations in flight at once.
    """
    url = registration_url(registrar_url)
    headers = {"Authorization": f"Bearer {registration_key}"} if registration_key else {}
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=request_timeout, verify=verify, headers=headers) as client:

        async def register(bucket: BucketInfo) -> RegistrationResult:
            async with slots:
                return await _register_one(client, url, bucket, registration_key)

        return list(await asyncio.gather(*(register(bucket) for bucket in buckets)))


async def _register_one(
    client: httpx.AsyncClient, url: str, bucket: BucketInfo, registration_key: str | None
) -> RegistrationResult:
    payload = registration_payload(bucket, registration_key)
    try:
        response = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        return RegistrationResult(
            name=bucket.name, status_code=None, json=None, text="", error=_describe(exc)
        )
    return RegistrationResult(
        name=bucket.name,
        status_code=response.status_code,
        json=_json_or_none(response),
        text=response.text[:2000],
    )


def _describe(exc: httpx.HTTPError) -> str:
    # The exception text names the URL only; the token travels in the body, never in errors.
    return f"{type(exc).__name__}: {exc}"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None

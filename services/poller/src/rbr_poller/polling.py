"""One poll of one bucket: `GET {base}/update_bucket` with its token, into a `BucketStatus`.

Whatever the bucket does (refuse, hang, answer garbage or gigabytes) the result is one status
with an error class and a short reason; nothing a bucket does raises out of `poll_bucket`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from prometheus_client import Counter, Histogram

from rbr_poller.answers import BadAnswer, classify_error, classify_status, parse_answer
from rbr_runtime.buckets import (
    BucketAccessSettings,
    RefusalLog,
    base_url,
    refused_call,
    token_header,
)
from rbr_runtime.secrets import TokenDecryptionError, TokenVault
from rbr_schemas import BucketRegistered, BucketStatus, PollErrorClass, utcnow

POLLS = Counter("rbr_polls_total", "Polls of buckets, by outcome (ok or error class).", ["outcome"])
POLL_SECONDS = Histogram(
    "rbr_poll_seconds",
    "Time of one poll, from request to parsed answer.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPDATE_PATH = "/update_bucket"


class TooLarge(Exception):
    """The answer is bigger than the configured cap."""


@dataclass(frozen=True)
class PollConfig:
    """How buckets are called."""

    access: BucketAccessSettings
    vault: TokenVault
    max_response_bytes: int
    refusals: RefusalLog = field(default_factory=RefusalLog)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Reads a streamed body, refusing to hold more than `limit` bytes.

    Raises:
        TooLarge: the body (declared or received) is bigger than the limit.
        BadAnswer: the body is compressed (it was asked for uncompressed: a small compressed
            body could inflate without bound).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadAnswer("compressed answer refused")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _status(
    record: BucketRegistered,
    polled_at: datetime,
    started: float,
    *,
    error_class: PollErrorClass | None = None,
    error: str | None = None,
    http_status: int | None = None,
    measured: bool = True,
) -> BucketStatus:
    latency = (time.monotonic() - started) * 1000 if measured else None
    return BucketStatus(
        bucket_id=record.bucket_id,
        name=record.name,
        polled_at=polled_at,
        reachable=False,
        latency_ms=latency,
        http_status=http_status,
        error_class=error_class,
        error=error,
    )


async def poll_bucket(
    client: httpx.AsyncClient,
    record: BucketRegistered,
    config: PollConfig,
    limiter: asyncio.Semaphore | None = None,
) -> BucketStatus:
    """Polls one bucket and returns its status (reachable or not, with the reason).

    Args:
        client: the HTTP client for buckets.
        record: the bucket's registration.
        config: how buckets are called.
        limiter: bounds the polls in flight; the timeout counts from when a poll got a place,
            so a long queue of due buckets does not time them out.
    """
    if limiter is None:
        return await _timed_poll(client, record, config)
    async with limiter:
        return await _timed_poll(client, record, config)


async def _timed_poll(
    client: httpx.AsyncClient, record: BucketRegistered, config: PollConfig
) -> BucketStatus:
    polled_at = utcnow()
    started = time.monotonic()
    status = await _poll(client, record, config, polled_at, started)
    POLLS.labels(status.error_class.value if status.error_class else "ok").inc()
    POLL_SECONDS.observe(time.monotonic() - started)
    return status


async def _poll(  # noqa: PLR0911 - one early return per way a poll can fail
    client: httpx.AsyncClient,
    record: BucketRegistered,
    config: PollConfig,
    polled_at: datetime,
    started: float,
) -> BucketStatus:
    access = config.access
    refused = refused_call(record, access)
    if refused is not None:
        # The registrar refuses such addresses and ports, but a bucket registered before they
        # were refused (or a record put on the topic by other means) is never called either.
        config.refusals.warn(record.name, refused)
        return _status(
            record,
            polled_at,
            started,
            error_class=PollErrorClass.CONFIG,
            error=refused[:300],
            measured=False,
        )
    try:
        token = config.vault.decrypt(record.token_ciphertext)
    except TokenDecryptionError as error:
        return _status(
            record,
            polled_at,
            started,
            error_class=PollErrorClass.CONFIG,
            error=str(error),
            measured=False,
        )
    url = base_url(record, access) + UPDATE_PATH
    try:
        async with asyncio.timeout(access.bucket_timeout):
            headers = {**token_header(token), "Accept-Encoding": "identity"}
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    error_class, reason = classify_status(response.status_code)
                    return _status(
                        record,
                        polled_at,
                        started,
                        error_class=error_class,
                        error=reason,
                        http_status=response.status_code,
                    )
                body = await read_capped(response, config.max_response_bytes)
    except TooLarge:
        return _status(
            record,
            polled_at,
            started,
            error_class=PollErrorClass.TOO_LARGE,
            error=f"answer larger than {config.max_response_bytes} bytes",
            http_status=200,
        )
    except BadAnswer as bad:
        return _status(
            record,
            polled_at,
            started,
            error_class=PollErrorClass.BAD_RESPONSE,
            error=str(bad),
            http_status=200,
        )
    except (TimeoutError, httpx.HTTPError, OSError) as error:
        error_class, reason = classify_error(error, access.bucket_timeout)
        return _status(record, polled_at, started, error_class=error_class, error=reason)
    latency = (time.monotonic() - started) * 1000
    try:
        answer = parse_answer(body, record.name)
    except BadAnswer as bad:
        return _status(
            record,
            polled_at,
            started,
            error_class=PollErrorClass.BAD_RESPONSE,
            error=str(bad),
            http_status=200,
        )
    return BucketStatus(
        bucket_id=record.bucket_id,
        name=record.name,
        polled_at=polled_at,
        reachable=True,
        latency_ms=latency,
        http_status=200,
        status=answer.status,
        updates=answer.updates,
    )

"""The HTTP endpoints every simulated bucket serves.

One aiohttp application serves all buckets of a fleet; each bucket has its own listening
socket, and a request is routed to the bucket that owns the local address it arrived on.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiohttp import web

from rbr_simulator.bucket import BucketState, Mode
from rbr_simulator.logstore import BulkLog, Entry, Pull

logger = logging.getLogger(__name__)

UPDATE_PATH = "/update_bucket"
EXTRACT_PATH = "/extract_logs"
CURSOR_HEADER = "X-Log-Cursor"
FIRST_SEQ_HEADER = "X-Log-First-Seq"
CURSOR_RESET_HEADER = "X-Log-Cursor-Reset"
WRITE_CHUNK_BYTES = 64 * 1024

Endpoint = Callable[[web.Request, BucketState], Awaitable[web.StreamResponse]]
_GARBAGE_BODIES: tuple[tuple[bytes, str], ...] = (
    (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    (b'{"status": "ok", "updates": [{"name": "', "application/json"),
    (bytes(range(256)) * 4, "application/json"),
    (b"OK", "text/plain"),
)


class BucketServer:
    """Serves `/update_bucket` and `/extract_logs` for all buckets of a fleet."""

    def __init__(self, *, oversized_bytes: int) -> None:
        """Creates the server with no buckets.

        Args:
            oversized_bytes: Body size of responses in OVERSIZED mode.
        """
        self.oversized_bytes = oversized_bytes
        self._by_address: dict[tuple[str, int], BucketState] = {}
        self._failures: dict[Mode, Endpoint] = {
            Mode.SILENT: _drop,
            Mode.ERROR: _internal_error,
            Mode.GARBAGE: _garbage,
            Mode.OVERSIZED: self._oversized,
            Mode.BAD_TOKEN: _unauthorized,
        }

    def add(self, bucket: BucketState) -> None:
        """Routes requests arriving on the bucket's address to it."""
        self._by_address[(bucket.info.ip, bucket.info.port)] = bucket

    def build_app(self) -> web.Application:
        """Returns the aiohttp application serving every bucket."""
        app = web.Application()
        app.router.add_get(UPDATE_PATH, self._update_bucket)
        app.router.add_get(EXTRACT_PATH, self._extract_logs)
        return app

    async def _update_bucket(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, _answer_update)

    async def _extract_logs(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, _answer_extract)

    def _bucket_for(self, request: web.Request) -> BucketState | None:
        transport = request.transport
        if transport is None:
            return None
        sockname = transport.get_extra_info("sockname")
        if not sockname:
            return None
        return self._by_address.get((str(sockname[0]), int(sockname[1])))

    async def _dispatch(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        bucket = self._bucket_for(request)
        if bucket is None:
            return _json_error(404, "no bucket listens on this address")
        authorized = _carries_token(request, bucket.info.token)
        bucket.record_request(
            request.path, request.method, request.query_string, authorized=authorized
        )
        await bucket.wait_while_hanging()
        if bucket.closing:
            return _drop_connection(request)
        failure = self._failures.get(bucket.mode)
        if failure is not None:
            return await failure(request, bucket)
        if not authorized:
            return await _unauthorized(request, bucket)
        return await endpoint(request, bucket)

    async def _oversized(self, request: web.Request, bucket: BucketState) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for chunk in _oversized_chunks(bucket, self.oversized_bytes):
            if bucket.closing:
                return _drop_connection(request)
            await response.write(chunk)
        await response.write_eof()
        return response


def _carries_token(request: web.Request, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "token":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=status)


async def _drop(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    del bucket  # Every bucket drops alike.
    return _drop_connection(request)


async def _internal_error(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    del request, bucket  # Every request fails alike.
    return web.Response(status=500, text="Internal Server Error")


async def _unauthorized(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    del request, bucket  # Nothing about the bucket is revealed.
    return _json_error(401, "invalid or missing token")


def _drop_connection(request: web.Request) -> web.Response:
    # A dead host does not answer: close the connection without a response.
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


async def _garbage(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    del request  # The garbage depends on the bucket's response counter only.
    body, content_type = _GARBAGE_BODIES[bucket.response_counter % len(_GARBAGE_BODIES)]
    bucket.response_counter += 1
    return web.Response(body=body, headers={"Content-Type": content_type})


def _oversized_chunks(bucket: BucketState, size: int) -> Iterator[bytes]:
    item = json.dumps(_update_entry(bucket)).encode() + b","
    per_chunk = max(1, WRITE_CHUNK_BYTES // len(item))
    yield b'{"status": "ok", "updates": ['
    written = 0
    while written < size:
        chunk = item * per_chunk
        written += len(chunk)
        yield chunk
    # The last item closes the list, so the body stays valid JSON.
    yield item[:-1] + b"]}"


def _update_entry(bucket: BucketState) -> dict[str, str]:
    return {
        "name": bucket.info.name,
        "ip_address": bucket.info.ip,
        "operating_system": bucket.info.operating_system,
        **bucket.metrics.sample(bucket.logged_bytes),
    }


async def _answer_update(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    del request  # The answer depends on the bucket only.
    if bucket.mode is Mode.WRONG_SHAPE:
        return web.json_response(_wrong_update_shape(bucket))
    return web.json_response({"status": "ok", "updates": [_update_entry(bucket)]})


def _wrong_update_shape(bucket: BucketState) -> Any:
    shapes: tuple[Any, ...] = (
        {"status": "ok", "updates": {"cpu_usage": "12%"}},
        [{"name": bucket.info.name}],
        {"status": "ok", "updates": [{"name": bucket.info.name, "cpu_usage": 12}]},
        {"status": "ok"},
    )
    shape = shapes[bucket.response_counter % len(shapes)]
    bucket.response_counter += 1
    return shape


async def _answer_extract(request: web.Request, bucket: BucketState) -> web.StreamResponse:
    if bucket.info.s3 is not None:
        return _json_error(404, "this bucket ships its logs to S3")
    if bucket.mode is Mode.WRONG_SHAPE:
        return web.json_response({"status": "ok", "logs": []})
    since_text = request.query.get("since")
    if since_text is not None and not since_text.isdigit():
        return _json_error(400, "since must be a non-negative integer cursor")
    pull = bucket.store.pull(int(since_text) if since_text is not None else None)
    bucket.record_served(pull.entries)
    return await _stream_pull(request, bucket, pull)


def _pull_headers(pull: Pull) -> dict[str, str]:
    headers = {"Content-Type": "text/plain; charset=utf-8", CURSOR_HEADER: str(pull.cursor)}
    if pull.first_seq is not None:
        headers[FIRST_SEQ_HEADER] = str(pull.first_seq)
    if pull.reset:
        headers[CURSOR_RESET_HEADER] = "true"
    return headers


async def _stream_pull(request: web.Request, bucket: BucketState, pull: Pull) -> web.StreamResponse:
    response = web.StreamResponse(headers=_pull_headers(pull))
    size = pull.known_size
    if size is not None:
        response.content_length = size
    await response.prepare(request)
    for chunk in _body_chunks(pull.entries):
        if bucket.closing:
            return _drop_connection(request)
        await response.write(chunk)
        bucket.bytes_served += len(chunk)
    await response.write_eof()
    return response


def _body_chunks(entries: Iterable[Entry]) -> Iterator[bytes]:
    # Records are batched into chunks; a bulk log streams its own chunks as it generates them.
    batch: list[bytes] = []
    batch_size = 0
    for entry in entries:
        if isinstance(entry, BulkLog):
            if batch:
                yield b"".join(batch)
                batch, batch_size = [], 0
            yield from entry.chunks()
            continue
        batch.append(entry.data)
        batch_size += len(entry.data)
        if batch_size >= WRITE_CHUNK_BYTES:
            yield b"".join(batch)
            batch, batch_size = [], 0
    if batch:
        yield b"".join(batch)

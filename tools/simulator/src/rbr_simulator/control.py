"""The simulator's plain-HTTP control API, for demos and manual testing.

Served on 127.0.0.1 only, without authentication (it exposes no tokens):

- `GET /buckets`: every bucket with its address, mode and counters.
- `GET /buckets/{name}`: one bucket.
- `POST /buckets/{name}/mode` with `{"mode": "hang"}`: switch its failure mode.
- `POST /buckets/{name}/emit` with `{"count": 10}`: write records to its log now.
- `POST /buckets/{name}/flush`: write its pending logs to S3 now (S3 mode only).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rbr_simulator.bucket import BucketInfo, BucketStats, Mode

if TYPE_CHECKING:
    from rbr_simulator.fleet import Fleet

_FLEET_KEY = web.AppKey("fleet", object)


def build_app(fleet: Fleet) -> web.Application:
    """Returns the control application for a fleet.

    Handlers call the fleet's public (thread-safe) methods from a worker thread, since they
    run on the fleet's own loop.
    """
    app = web.Application()
    app[_FLEET_KEY] = fleet
    app.router.add_get("/buckets", _list_buckets)
    app.router.add_get("/buckets/{name}", _get_bucket)
    app.router.add_post("/buckets/{name}/mode", _set_mode)
    app.router.add_post("/buckets/{name}/emit", _emit)
    app.router.add_post("/buckets/{name}/flush", _flush)
    return app


def describe(info: BucketInfo, stats: BucketStats) -> dict[str, Any]:
    """Returns what the control API shows of one bucket (the token masked)."""
    return {
        "name": info.name,
        "ip_address": info.ip,
        "port": info.port,
        "base_url": info.base_url,
        "token": info.masked_token,
        "s3": dataclasses.asdict(info.s3) if info.s3 is not None else None,
        **dataclasses.asdict(stats),
    }


def _fleet(request: web.Request) -> Fleet:
    fleet: Fleet = request.app[_FLEET_KEY]  # type: ignore[assignment]
    return fleet


def _name(request: web.Request) -> str:
    fleet, name = _fleet(request), request.match_info["name"]
    if name not in fleet.names:
        raise web.HTTPNotFound(
            text=f'{{"error": "no bucket named {name}"}}', content_type="application/json"
        )
    return name


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{message}"}}', content_type="application/json")


async def _list_buckets(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    stats = await asyncio.to_thread(fleet.all_stats)
    buckets = [describe(info, item) for info, item in zip(fleet.buckets, stats, strict=True)]
    return web.json_response({"count": len(buckets), "buckets": buckets})


async def _get_bucket(request: web.Request) -> web.Response:
    fleet, name = _fleet(request), _name(request)
    stats = await asyncio.to_thread(fleet.stats, name)
    return web.json_response(describe(fleet.bucket(name), stats))


async def _set_mode(request: web.Request) -> web.Response:
    fleet, name = _fleet(request), _name(request)
    mode = (await _json_body(request)).get("mode")
    if mode not in {item.value for item in Mode}:
        raise _bad_request(f"mode must be one of {', '.join(item.value for item in Mode)}")
    await asyncio.to_thread(fleet.set_mode, name, mode)
    return web.json_response({"name": name, "mode": mode})


async def _emit(request: web.Request) -> web.Response:
    fleet, name = _fleet(request), _name(request)
    count = (await _json_body(request)).get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100_000:
        raise _bad_request("count must be an integer between 0 and 100000")
    records = await asyncio.to_thread(fleet.emit, name, count)
    last_seq = records[-1].seq if records else None
    return web.json_response({"name": name, "emitted": len(records), "last_seq": last_seq})


async def _flush(request: web.Request) -> web.Response:
    fleet, name = _fleet(request), _name(request)
    if fleet.bucket(name).s3 is None:
        raise _bad_request("this bucket serves its logs over HTTP, not S3")
    keys = await asyncio.to_thread(fleet.flush_to_s3, name)
    return web.json_response({"name": name, "keys": keys})

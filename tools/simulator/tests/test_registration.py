"""Registration payloads as the real honeypot sends them, captured by a local HTTP server."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from rbr_schemas.events import BUCKET_NAME_PATTERN
from rbr_simulator.fleet import Fleet
from rbr_simulator.registration import registration_url
from rbr_simulator.s3 import S3Settings

FleetFactory = Callable[..., Fleet]
OPTIONAL_METRICS = {"cpu_usage", "memory_usage", "disk_space", "uptime", "connections"}


def test_registration_payload_is_the_honeypots(
    fleet_factory: FleetFactory, capture_registrar: Any
) -> None:
    fleet = fleet_factory(count=3, bind="ports")

    results = fleet.register(capture_registrar.url, "enrol-key-123")

    assert [result.status_code for result in results] == [200, 200, 200]
    assert all(result.ok and result.json == {"status": "registered"} for result in results)
    by_name = {request.body["name"]: request for request in capture_registrar.requests}
    assert set(by_name) == set(fleet.names)
    for info in fleet.buckets:
        request = by_name[info.name]
        body = request.body
        assert request.path == "/api/v1/register_bucket/"
        assert request.headers["Authorization"] == "Bearer enrol-key-123"
        assert request.headers["Content-Type"] == "application/json"
        assert set(body) == {
            "name",
            "ip_address",
            "operating_system",
            "token",
            "port",
            "registration_key",
        }
        assert not OPTIONAL_METRICS & set(body)
        assert re.fullmatch(r"rustbucket-[A-Za-z0-9]{8}", body["name"])
        assert re.fullmatch(BUCKET_NAME_PATTERN, body["name"])
        assert re.fullmatch(r"[A-Za-z0-9]{32}", body["token"])
        assert body["token"] == info.token
        assert (body["ip_address"], body["port"]) == (info.ip, info.port)
        assert body["operating_system"] == "linux (x86_64)"
        assert body["registration_key"] == "enrol-key-123"
    assert len({request.body["token"] for request in capture_registrar.requests}) == 3


def test_registration_without_key_sends_neither_key_nor_authorization(
    fleet_factory: FleetFactory, capture_registrar: Any
) -> None:
    fleet = fleet_factory(count=1, bind="ports")

    fleet.register(capture_registrar.url)

    (request,) = capture_registrar.requests
    assert "registration_key" not in request.body
    assert "Authorization" not in request.headers


def test_registration_on_port_443_omits_the_port(capture_registrar: Any) -> None:
    with Fleet(2) as fleet:
        fleet.register(capture_registrar.url)
        on_443 = fleet.uses_port_443

    bodies = [request.body for request in capture_registrar.requests]
    assert len(bodies) == 2
    if on_443:
        assert all("port" not in body for body in bodies)
        assert all(body["ip_address"].startswith("127.") for body in bodies)
    else:
        assert all(isinstance(body["port"], int) for body in bodies)


def test_registration_to_an_endpoint_url_appends_a_slash_like_the_honeypot(
    fleet_factory: FleetFactory, capture_registrar: Any
) -> None:
    fleet = fleet_factory(count=1, bind="ports")

    fleet.register(capture_registrar.url + "/register_bucket")

    assert [request.path for request in capture_registrar.requests] == ["/register_bucket/"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://r:8000", "http://r:8000/api/v1/register_bucket/"),
        ("http://r:8000/", "http://r:8000/api/v1/register_bucket/"),
        ("http://r/register_bucket", "http://r/register_bucket/"),
        ("https://r/api/v1/register_bucket/", "https://r/api/v1/register_bucket/"),
    ],
)
def test_registration_url(given: str, expected: str) -> None:
    assert registration_url(given) == expected


def test_registration_results_report_rejections_and_unreachable_registrars(
    fleet_factory: FleetFactory, capture_registrar: Any
) -> None:
    fleet = fleet_factory(count=2, bind="ports")
    capture_registrar.status = 403

    rejected = fleet.register(capture_registrar.url)
    unreachable = fleet.register(f"http://127.0.0.1:{_closed_port()}")

    assert [(r.status_code, r.ok) for r in rejected] == [(403, False), (403, False)]
    assert all(r.status_code is None and r.error for r in unreachable)
    assert all(info.token not in str(r) for r in unreachable for info in fleet.buckets)


@pytest.mark.s3
def test_s3_buckets_register_where_their_logs_are(
    fleet_factory: FleetFactory, capture_registrar: Any, moto_s3: Any
) -> None:
    settings = S3Settings(
        endpoint_url=moto_s3.endpoint_url, bucket=moto_s3.create_bucket("reg"), prefix="hp/"
    )
    fleet = fleet_factory(count=4, bind="ports", s3_fraction=0.5, s3_settings=settings, seed=1)

    fleet.register(capture_registrar.url)

    bodies = {request.body["name"]: request.body for request in capture_registrar.requests}
    s3_fields = {"s3_bucket_name", "s3_region", "s3_prefix"}
    in_s3 = [info for info in fleet.buckets if info.s3 is not None]
    assert len(in_s3) == 2
    for info in fleet.buckets:
        body = bodies[info.name]
        if info.s3 is None:
            assert not s3_fields & set(body)
            continue
        assert body["s3_bucket_name"] == settings.bucket
        assert body["s3_region"] == "us-east-1"
        assert body["s3_prefix"] == "hp/"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""A fleet's buckets over real HTTPS, verified against the fleet's CA file."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rbr_schemas.events import BucketUpdate
from rbr_simulator.bucket import BucketInfo, Mode
from rbr_simulator.fleet import Fleet

UPDATE_FIELDS = {
    "name",
    "ip_address",
    "operating_system",
    "cpu_usage",
    "memory_usage",
    "disk_space",
    "uptime",
    "connections",
}

FleetFactory = Callable[..., Fleet]
Waiter = Callable[..., Any]


def tls(fleet: Fleet) -> ssl.SSLContext:
    # Trust exactly what the registry would be told to trust: the CA file.
    return ssl.create_default_context(cafile=str(fleet.ca_file))


def auth(info: BucketInfo, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Token {token or info.token}"}


def get(
    fleet: Fleet, info: BucketInfo, path: str, *, timeout: float = 5.0, **kwargs: Any
) -> httpx.Response:
    with httpx.Client(verify=tls(fleet), timeout=timeout) as client:
        return client.get(info.base_url + path, **kwargs)


def pull(fleet: Fleet, info: BucketInfo, since: int | None = None) -> httpx.Response:
    params = {"since": since} if since is not None else None
    response = get(fleet, info, "/extract_logs", headers=auth(info), params=params)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("path", ["/update_bucket", "/extract_logs"])
def test_endpoints_require_the_bucket_token(fleet_factory: FleetFactory, path: str) -> None:
    fleet = fleet_factory(count=2, bind="ports")
    mine, other = fleet.buckets

    missing = get(fleet, mine, path)
    wrong = get(fleet, mine, path, headers=auth(mine, other.token))
    bearer = get(fleet, mine, path, headers={"Authorization": f"Bearer {mine.token}"})
    right = get(fleet, mine, path, headers=auth(mine))

    for response in (missing, wrong, bearer):
        assert response.status_code == 401
        assert response.json()["status"] == "error"
        assert mine.token not in response.text
    assert right.status_code == 200


def test_update_bucket_answers_the_seed_shape_with_changing_metrics(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]

    first = get(fleet, info, "/update_bucket", headers=auth(info)).json()
    second = get(fleet, info, "/update_bucket", headers=auth(info)).json()

    assert first["status"] == "ok"
    (update,) = first["updates"]
    assert set(update) == UPDATE_FIELDS
    assert all(isinstance(value, str) for value in update.values())
    BucketUpdate.model_validate(update)
    assert (update["name"], update["ip_address"]) == (info.name, info.ip)
    assert update["operating_system"] == "linux (x86_64)"
    assert re.fullmatch(r"\d{1,2}%", update["cpu_usage"])
    assert re.fullmatch(r"\d+MB", update["memory_usage"])
    assert re.fullmatch(r"\d+GB", update["disk_space"])
    assert int(update["uptime"]) > 3600
    assert update["connections"].isdigit()
    (later,) = second["updates"]
    assert later["cpu_usage"] != update["cpu_usage"]
    assert int(later["uptime"]) >= int(update["uptime"])


def test_extract_logs_pulls_new_records_and_retries_with_the_cursor(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=3)
    info = fleet.buckets[0]
    first_batch = fleet.emit(info.name, 5)

    first = pull(fleet, info)
    again = pull(fleet, info)
    second_batch = fleet.emit(info.name, 3)
    second = pull(fleet, info)
    retry = pull(fleet, info, since=5)
    caught_up = pull(fleet, info, since=8)

    assert first.headers["content-type"].startswith("text/plain")
    assert first.content == b"".join(record.data for record in first_batch)
    assert first.headers["x-log-cursor"] == "5"
    assert first.headers["x-log-first-seq"] == "1"
    assert (again.content, again.headers["x-log-cursor"]) == (b"", "5")
    assert second.content == b"".join(record.data for record in second_batch)
    assert second.headers["x-log-cursor"] == "8"
    assert retry.content == second.content
    assert retry.headers["x-log-cursor"] == "8"
    assert (caught_up.content, caught_up.headers["x-log-cursor"]) == (b"", "8")
    assert fleet.served(info.name) == first_batch + second_batch
    assert fleet.pending(info.name) == []


def test_extract_logs_rejects_a_malformed_cursor(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]

    response = get(fleet, info, "/extract_logs", headers=auth(info), params={"since": "abc"})

    assert response.status_code == 400
    assert "since" in response.json()["error"]


def test_extract_logs_flags_a_cursor_from_the_future(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    records = fleet.emit(info.name, 2)

    response = pull(fleet, info, since=1000)

    assert response.content == b"".join(record.data for record in records)
    assert response.headers["x-log-cursor-reset"] == "true"
    assert response.headers["x-log-cursor"] == "2"


def test_bulk_log_is_streamed_and_a_retry_gets_the_same_bytes(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    before = fleet.emit(info.name, 2)
    fleet.add_bulk_log(info.name, 3_000_000)

    def stream(since: int | None) -> tuple[str, int, httpx.Headers]:
        digest, size = hashlib.sha256(), 0
        params = {"since": since} if since is not None else None
        with (
            httpx.Client(verify=tls(fleet), timeout=30) as client,
            client.stream(
                "GET", info.base_url + "/extract_logs", headers=auth(info), params=params
            ) as response,
        ):
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size, response.headers

    first_hash, first_size, headers = stream(None)
    retry_hash, retry_size, _ = stream(0)

    assert "content-length" not in headers  # Streamed in chunks, never built whole.
    assert headers["x-log-cursor"] == "3"
    assert first_size >= 3_000_000 + sum(record.size for record in before)
    assert (retry_hash, retry_size) == (first_hash, first_size)
    assert fleet.stats(info.name).bytes_served == 2 * first_size


def test_extract_logs_is_refused_for_a_bucket_shipping_to_s3(
    fleet_factory: FleetFactory, moto_s3: Any
) -> None:
    from rbr_simulator.s3 import S3Settings  # noqa: PLC0415

    settings = S3Settings(endpoint_url=moto_s3.endpoint_url, bucket=moto_s3.create_bucket("sim"))
    fleet = fleet_factory(count=1, bind="ports", s3_fraction=1.0, s3_settings=settings)
    info = fleet.buckets[0]

    response = get(fleet, info, "/extract_logs", headers=auth(info))

    assert response.status_code == 404
    with pytest.raises(ValueError, match="S3"):
        fleet.add_bulk_log(info.name, 1000)


def test_silent_bucket_refuses_connections_until_normal_again(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=2, bind="ports")
    info, neighbour = fleet.buckets

    fleet.set_mode(info.name, Mode.SILENT)
    with pytest.raises(httpx.ConnectError):
        get(fleet, info, "/update_bucket", headers=auth(info))
    neighbour_answer = get(fleet, neighbour, "/update_bucket", headers=auth(neighbour))
    fleet.set_mode(info.name, "normal")
    recovered = get(fleet, info, "/update_bucket", headers=auth(info))

    assert neighbour_answer.status_code == 200
    assert recovered.status_code == 200
    assert fleet.mode(info.name) is Mode.NORMAL


def test_silent_bucket_drops_requests_on_kept_alive_connections(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]

    with httpx.Client(verify=tls(fleet), timeout=5) as client:
        assert client.get(info.base_url + "/update_bucket", headers=auth(info)).status_code == 200
        fleet.set_mode(info.name, "silent")
        with pytest.raises(httpx.TransportError):
            client.get(info.base_url + "/update_bucket", headers=auth(info))


def test_hanging_bucket_times_the_client_out_and_answers_once_normal(
    fleet_factory: FleetFactory, wait_for: Waiter
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "hang")

    with pytest.raises(httpx.ReadTimeout):
        get(fleet, info, "/update_bucket", headers=auth(info), timeout=0.5)
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(get(fleet, info, "/update_bucket", headers=auth(info)))
    )
    waiting.start()
    wait_for(lambda: len(fleet.requests(info.name)) == 2, what="the second request to arrive")
    fleet.set_mode(info.name, "normal")
    waiting.join(timeout=5)

    assert [response.status_code for response in answers] == [200]
    assert [request.mode for request in fleet.requests(info.name)] == [Mode.HANG, Mode.HANG]


def test_stop_does_not_wait_for_hanging_requests(wait_for: Waiter) -> None:
    fleet = Fleet(1, bind="ports").start()
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "hang")
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(get(fleet, info, "/update_bucket", headers=auth(info), timeout=30))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: fleet.requests(info.name), what="the request to arrive")
    started = time.monotonic()
    fleet.stop()
    caller.join(timeout=10)

    assert time.monotonic() - started < 3
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.RemoteProtocolError)
    assert not fleet.running


def test_error_mode_answers_500(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "error")

    assert get(fleet, info, "/update_bucket", headers=auth(info)).status_code == 500
    assert get(fleet, info, "/extract_logs", headers=auth(info)).status_code == 500


def test_garbage_mode_answers_200_with_bodies_that_are_not_json(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "garbage")

    responses = [get(fleet, info, "/update_bucket", headers=auth(info)) for _ in range(4)]

    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 4
    for response in responses:
        with pytest.raises(ValueError):  # json.JSONDecodeError or UnicodeDecodeError
            json.loads(response.content)


def test_wrong_shape_mode_answers_json_that_is_not_the_seed_shape(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "wrong_shape")

    bodies = [get(fleet, info, "/update_bucket", headers=auth(info)).json() for _ in range(4)]

    for body in bodies:
        well_formed = (
            isinstance(body, dict)
            and isinstance(body.get("updates"), list)
            and all(
                isinstance(item, dict) and all(isinstance(v, str) for v in item.values())
                for item in body["updates"]
            )
        )
        assert not well_formed, body


def test_oversized_mode_answers_a_huge_valid_body(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports", oversized_bytes=500_000)
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "oversized")

    response = get(fleet, info, "/update_bucket", headers=auth(info))

    assert response.status_code == 200
    assert len(response.content) >= 500_000
    assert len(response.json()["updates"]) > 1000


def test_bad_token_mode_rejects_the_right_token(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    info = fleet.buckets[0]
    fleet.set_mode(info.name, "bad_token")

    assert get(fleet, info, "/update_bucket", headers=auth(info)).status_code == 401


def test_requests_are_counted_per_bucket_and_path(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=4, bind="ports")
    first = fleet.buckets[0]

    for info in fleet.buckets:
        get(fleet, info, "/update_bucket", headers=auth(info))
    get(fleet, first, "/extract_logs", headers=auth(first))
    get(fleet, first, "/extract_logs", headers=auth(first), params={"since": 0})

    assert fleet.request_counts("/update_bucket") == dict.fromkeys(fleet.names, 1)
    assert fleet.request_counts("/extract_logs")[first.name] == 2
    assert fleet.request_counts()[first.name] == 3
    requests = fleet.requests(first.name)
    assert [request.path for request in requests] == ["/update_bucket", *["/extract_logs"] * 2]
    assert requests[2].query == "since=0"
    assert all(request.authorized for request in requests)
    assert [r.monotonic for r in requests] == sorted(r.monotonic for r in requests)
    assert fleet.stats(first.name).requests == {"/update_bucket": 1, "/extract_logs": 2}
    fleet.reset_requests()
    get(fleet, first, "/update_bucket", headers=auth(first))
    assert fleet.request_counts("/update_bucket") == {
        name: name == first.name for name in fleet.names
    }
    assert len(fleet.requests(first.name)) == 1


def test_background_generation_writes_records_at_the_rate(
    fleet_factory: FleetFactory, wait_for: Waiter
) -> None:
    fleet = fleet_factory(count=2, bind="ports", rate=40.0)
    info = fleet.buckets[0]

    wait_for(lambda: fleet.stats(info.name).records_generated >= 20, what="20 records")
    response = pull(fleet, info)

    assert int(response.headers["x-log-cursor"]) >= 20
    assert response.content.count(b"\n") >= 20


def test_auto_bind_uses_port_443_on_distinct_loopback_addresses_when_allowed() -> None:
    with Fleet(3) as first, Fleet(3) as second:
        addresses = [(b.ip, b.port) for b in first.buckets + second.buckets]
        answers = [
            get(fleet, info, "/update_bucket", headers=auth(info)).status_code
            for fleet in (first, second)
            for info in fleet.buckets
        ]

    assert len(set(addresses)) == 6
    assert answers == [200] * 6
    if not _can_bind_privileged_ports():
        assert all(ip == "127.0.0.1" for ip, _ in addresses)
        return
    assert first.uses_port_443
    assert second.uses_port_443
    assert all(port == 443 and ip.startswith("127.") for ip, port in addresses)
    assert all(info.base_url == f"https://{info.ip}" for info in first.buckets)


def test_ports_bind_uses_distinct_ephemeral_ports_on_localhost(
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=5, bind="ports")

    assert {info.ip for info in fleet.buckets} == {"127.0.0.1"}
    assert len({info.port for info in fleet.buckets}) == 5
    assert not fleet.uses_port_443
    assert all(info.base_url == f"https://127.0.0.1:{info.port}" for info in fleet.buckets)


def test_token_is_never_in_the_repr_of_a_bucket(fleet_factory: FleetFactory) -> None:
    info = fleet_factory(count=1, bind="ports").buckets[0]

    assert info.token not in repr(info)
    assert info.token not in info.masked_token
    assert re.fullmatch(r"[A-Za-z0-9]{32}", info.token)


def test_fleet_cleans_up_its_temporary_ca_file() -> None:
    fleet = Fleet(1, bind="ports")
    with fleet:
        ca_file = fleet.ca_file
        assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert not ca_file.exists()
    assert not fleet.running
    with pytest.raises(RuntimeError, match="once"):
        fleet.start()


def test_a_200_bucket_fleet_starts_quickly_and_answers_every_bucket() -> None:
    with Fleet(200) as fleet:
        startup = fleet.startup_seconds
        statuses = asyncio.run(_poll_all(fleet))
        counts = fleet.request_counts("/update_bucket")

    assert startup is not None
    assert startup < 5
    assert statuses == [200] * 200
    assert counts == dict.fromkeys(fleet.names, 1)


async def _poll_all(fleet: Fleet) -> list[int]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(verify=tls(fleet), limits=limits, timeout=20) as client:

        async def poll(info: BucketInfo) -> int:
            response = await client.get(info.base_url + "/update_bucket", headers=auth(info))
            return response.status_code

        return list(await asyncio.gather(*(poll(info) for info in fleet.buckets)))


def _can_bind_privileged_ports() -> bool:
    # What decides AUTO mode: may this process bind port 443 on a loopback alias?
    probe = socket.socket()
    try:
        probe.bind(("127.0.250.250", 443))
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE
    finally:
        probe.close()
    return True

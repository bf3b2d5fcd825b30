"""Buckets at addresses or on ports the registry does not call are never polled.

The registrar refuses them, but a record already on `bucket.registered` (registered before
they were refused, or put there by other means) must be refused again before any call: a
`config` status saying why, one log line per bucket, and no connection.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import Engine

from rbr_poller import tasks
from rbr_poller.tasks import pull_updates
from rbr_schemas import BUCKET_STATUS, BucketRegistered, PollErrorClass
from rbr_testing.broker import Broker
from rbr_testing.buckets import publish_registrations, registration
from rbr_testing.kafka import read_events
from rbr_testing.registry import TEST_SECRET_KEY, poller_settings
from rbr_testing.simulator import FleetFactory
from rbr_testing.tcp_proxy import TcpProxyFactory

# (address, port): what the security run registered and saw polled, and other refused forms.
REFUSED_TARGETS: list[tuple[str, int | None]] = [
    ("10.0.0.1", None),
    ("172.16.0.1", None),
    ("192.168.1.1", None),
    ("100.64.0.1", None),
    ("100.100.100.200", None),
    ("169.254.169.254", None),
    ("fd00:ec2::254", None),
    ("fc00::1", None),
    ("::ffff:10.0.0.1", None),
    ("::127.0.0.1", None),
    ("::169.254.169.254", None),
    ("2002:a00:1::1", None),
    ("64:ff9b::a00:1", None),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", None),
    ("10.0.0.1", 6379),
    ("127.0.0.1", None),
]


def statuses(broker: Broker) -> dict[str, tuple[PollErrorClass | None, str]]:
    return {
        e.data.name: (e.data.error_class, e.data.error or "")
        for e in read_events(broker.bootstrap, BUCKET_STATUS)
    }


def refusal_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(f"bucket {name} not called")
    ]


def test_buckets_at_refused_addresses_are_never_called(
    broker: Broker,
    mysql_engine: Engine,
    fleet_factory: FleetFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [info] = fleet_factory(count=1, bind="ports").buckets
    records = [
        registration(info, secret_key=TEST_SECRET_KEY).model_copy(
            update={"name": f"rustbucket-refused{i:02d}", "ip_address": ip, "port": port}
        )
        for i, (ip, port) in enumerate(REFUSED_TARGETS)
    ]
    publish_registrations(broker.bootstrap, records)
    called: list[httpx.Request] = []

    def bucket(request: httpx.Request) -> httpx.Response:
        called.append(request)
        return httpx.Response(200, json={})

    # Every call goes to this transport: whatever the code does, nothing leaves the machine
    # (none of these addresses may ever be a test's target), and any call is seen.
    monkeypatch.setattr(
        tasks,
        "make_async_client",
        lambda _settings: httpx.AsyncClient(transport=httpx.MockTransport(bucket)),
    )
    settings = poller_settings(
        broker, mysql_engine, allowed_bucket_networks="", allowed_bucket_ports=""
    )

    with caplog.at_level(logging.WARNING):
        summary = pull_updates(settings)

    assert called == []
    assert summary.startswith(f"polled {len(records)} active bucket(s): 0 reachable")
    seen = statuses(broker)
    for record in records:
        error_class, error = seen[record.name]
        assert error_class is PollErrorClass.CONFIG, record.ip_address
        assert error.startswith(f"refusing to call {record.ip_address}: "), error
        [line] = refusal_lines(caplog, record.name)
        assert error in line
    assert "port 6379 is not called" in seen["rustbucket-refused14"][1]


def test_a_bucket_on_a_port_no_longer_allowed_is_not_connected_to(
    broker: Broker,
    mysql_engine: Engine,
    fleet_factory: FleetFactory,
    tcp_proxy_factory: TcpProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = fleet_factory(count=1, bind="ports")
    [info] = fleet.buckets
    # A real bucket behind a proxy that counts every connection made to it.
    proxy = tcp_proxy_factory(info.ip, info.port)
    record: BucketRegistered = registration(info, secret_key=TEST_SECRET_KEY).model_copy(
        update={"port": proxy.port}
    )
    publish_registrations(broker.bootstrap, [record])
    allowed = poller_settings(
        broker,
        mysql_engine,
        bucket_ca_file=str(fleet.ca_file),
        allowed_bucket_ports=str(proxy.port),
    )
    assert pull_updates(allowed).startswith("polled 1 active bucket(s): 1 reachable")
    assert proxy.accepted >= 1  # the proxy sees the poller's connections
    connections = proxy.accepted
    requests = len(fleet.requests(info.name))

    # The operator narrows the allowed ports: the bucket registered earlier is not called.
    narrowed = allowed.model_copy(update={"allowed_bucket_ports": [(8443, 8443)]})
    with caplog.at_level(logging.WARNING):
        summary = pull_updates(narrowed)

    assert summary.startswith("polled 1 active bucket(s): 0 reachable, 1 not (config: 1)")
    assert proxy.accepted == connections
    assert len(fleet.requests(info.name)) == requests
    [line] = refusal_lines(caplog, info.name)
    assert f"port {proxy.port} is not called" in line

"""Polling real (simulated) buckets in every failure mode, by hand (`rbr run-task`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from rbr_poller.store import PollerStateStore
from rbr_poller.tasks import health_check, pull_updates
from rbr_runtime.db.tables import poller_state
from rbr_runtime.kafka import EventProducer
from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings
from rbr_schemas import (
    ALERTS,
    BUCKET_REGISTERED,
    BUCKET_STATUS,
    AlertState,
    BucketRegistered,
    BucketState,
    PollErrorClass,
)
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import TEST_SECRET_KEY, poller_settings
from rbr_testing.simulator import FleetFactory

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
vault = TokenVault.from_setting(TEST_SECRET_KEY)

MODES = {
    "normal": None,
    "silent": PollErrorClass.CONNECT,
    "error": PollErrorClass.HTTP_STATUS,
    "garbage": PollErrorClass.BAD_RESPONSE,
    "oversized": PollErrorClass.TOO_LARGE,
    "wrong_shape": PollErrorClass.BAD_RESPONSE,
    "bad_token": PollErrorClass.AUTH,
    "hang": PollErrorClass.TIMEOUT,
}


def publish_registrations(broker: Broker, records: list[BucketRegistered]) -> None:
    producer = EventProducer(
        CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/registrar"
    )
    for item in records:
        producer.send(BUCKET_REGISTERED, item.name, item, subject=item.name)
    producer.flush()


def registration(
    name: str, ip: str, port: int | None, token: str, **changes: Any
) -> BucketRegistered:
    values: dict[str, Any] = {
        "bucket_id": f"id-{name}",
        "name": name,
        "state": BucketState.ACTIVE,
        "ip_address": ip,
        "port": port if port != 443 else None,
        "token_ciphertext": vault.encrypt(token),
        "registered_at": T0,
        "updated_at": T0,
        "version": 1,
        **changes,
    }
    return BucketRegistered(**values)


def test_every_failure_mode_is_one_status_with_its_class_and_polling_goes_on(
    broker: Broker, mysql_engine: Engine, fleet_factory: FleetFactory
) -> None:
    fleet = fleet_factory(count=len(MODES), oversized_bytes=2 * 1024 * 1024)
    modes = dict(zip(fleet.names, MODES, strict=True))
    for name, mode in modes.items():
        fleet.set_mode(name, mode)
    records = [registration(b.name, b.ip, b.port, b.token) for b in fleet.buckets]
    # Defence in depth: a record the registrar would refuse is never called.
    records.append(registration("rustbucket-metadata", "169.254.169.254", None, "t" * 32))
    records.append(
        registration("rustbucket-pending0", "127.0.0.9", None, "t" * 32, state=BucketState.PENDING)
    )
    publish_registrations(broker, records)
    settings = poller_settings(
        broker,
        mysql_engine,
        bucket_ca_file=str(fleet.ca_file),
        bucket_timeout=1.5,
        unresponsive_after=3600,
    )

    summary = pull_updates(settings)

    assert summary.startswith(f"polled {len(MODES) + 1} active bucket(s): 1 reachable")
    statuses = {e.data.name: e.data for e in read_events(broker.bootstrap, BUCKET_STATUS)}
    assert "rustbucket-pending0" not in statuses
    for name, mode in modes.items():
        status = statuses[name]
        assert status.error_class is MODES[mode], (mode, status)
        assert status.reachable is (mode == "normal")
        if mode != "normal":
            assert status.error, mode
            assert len(status.error) <= 300, (mode, status.error)
    metadata = statuses["rustbucket-metadata"]
    assert metadata.error_class is PollErrorClass.CONFIG
    assert "cloud metadata" in (metadata.error or "")
    assert fleet.requests(fleet.names[0], "/update_bucket"), "the normal bucket was called"
    with mysql_engine.connect() as connection:
        failures = dict(
            connection.execute(
                select(poller_state.c.name, poller_state.c.consecutive_failures)
            ).all()
        )
    assert failures[fleet.names[0]] == 0
    assert all(failures[name] == 1 for name in fleet.names[1:])


def test_certificates_are_verified_against_the_configured_ca(
    broker: Broker, mysql_engine: Engine, fleet_factory: FleetFactory, tmp_path: Any
) -> None:
    fleet = fleet_factory(count=1)
    other = fleet_factory(count=1)  # another CA: the bucket's certificate does not chain to it
    bucket = fleet.buckets[0]
    publish_registrations(broker, [registration(bucket.name, bucket.ip, bucket.port, bucket.token)])
    settings = poller_settings(broker, mysql_engine, bucket_ca_file=str(other.ca_file))
    pull_updates(settings)
    status = read_events(broker.bootstrap, BUCKET_STATUS)[0].data
    assert status.error_class is PollErrorClass.TLS
    assert fleet.requests(bucket.name, "/update_bucket") == [], "no request without TLS trust"


def test_health_check_task_fires_for_silent_buckets_once(
    broker: Broker, mysql_engine: Engine, fleet_factory: FleetFactory
) -> None:
    fleet = fleet_factory(count=2)
    quiet = fleet.buckets[0]
    fleet.set_mode(quiet.name, "silent")
    publish_registrations(
        broker, [registration(b.name, b.ip, b.port, b.token) for b in fleet.buckets]
    )
    settings = poller_settings(
        broker, mysql_engine, bucket_ca_file=str(fleet.ca_file), unresponsive_after=60.0
    )
    pull_updates(settings)
    # Both were first seen and polled a moment ago; back-date the first sighting and the start
    # of polling past the threshold (as if polled, in vain, since then).
    with mysql_engine.begin() as connection:
        connection.execute(poller_state.update().values(first_seen_at=T0, polling_since=T0))
    assert health_check(settings) == (
        "checked 2 active bucket(s): 1 unresponsive; alerts fired 1, resolved 0"
    )
    assert health_check(settings).endswith("alerts fired 0, resolved 0")
    fired = [e.data for e in read_events(broker.bootstrap, ALERTS)]
    assert [(a.bucket, a.state) for a in fired] == [(quiet.name, AlertState.FIRING)]

    fleet.set_mode(quiet.name, "normal")
    assert pull_updates(settings).endswith("alerts fired 0, resolved 1")
    states = [e.data.state for e in read_events(broker.bootstrap, ALERTS, at_least=2)]
    assert states == [AlertState.FIRING, AlertState.RESOLVED]


@pytest.mark.mariadb
def test_concurrent_claims_give_each_slot_of_each_bucket_to_one_replica(
    mysql_engine: Engine,
) -> None:
    names = [f"rustbucket-{i:08d}" for i in range(200)]
    stores = [PollerStateStore(mysql_engine, polling_gap=600.0) for _ in range(4)]
    stores[0].ensure({name: f"id-{name}" for name in names}, T0)
    won: list[list[str]] = [[] for _ in stores]

    def claimer(index: int) -> Callable[[], None]:
        def run() -> None:
            for slot in (7, 8):
                won[index].extend(f"{n}@{slot}" for n in stores[index].claim(names, slot, T0))

        return run

    threads = [threading.Thread(target=claimer(i)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claims = [claim for claims in won for claim in claims]
    assert sorted(claims) == sorted(f"{n}@{slot}" for n in names for slot in (7, 8))
    assert stores[0].claim(names, 8, T0) == [], "a slot already claimed stays claimed"
    assert stores[0].claim(names, 7, T0) == [], "an older slot is never claimed again"

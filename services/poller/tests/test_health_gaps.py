"""Health across gaps: a poller's own downtime, a bucket removed and registered again, and a
bucket that keeps updating its registration while it does not answer polls."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from rbr_runtime.db.tables import buckets, poller_state
from rbr_runtime.kafka import EventProducer
from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, BUCKET_REGISTERED, AlertState, BucketRegistered, BucketState
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import TEST_SECRET_KEY, PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

vault = TokenVault.from_setting(TEST_SECRET_KEY)
FAST_HEALTH = {
    "poll_interval": 2.0,
    "unresponsive_after": 5.0,
    "health_check_interval": 0.5,
    "bucket_timeout": 1.0,
}


def alerts(broker: Broker) -> list[Any]:
    return [event.data for event in read_events(broker.bootstrap, ALERTS)]


def firings(broker: Broker) -> list[Any]:
    return [a for a in alerts(broker) if a.state == AlertState.FIRING]


def bucket_ids(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(select(buckets.c.name, buckets.c.id)).all())


def successes_since(engine: Engine, moment: datetime) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(poller_state.c.name).where(poller_state.c.last_success_at > moment)
        )
        return {row.name for row in rows}


def publish_registrations(broker: Broker, fleet: Any, registered_at: datetime) -> None:
    """Publishes the fleet's registrations as the registrar made them at `registered_at`."""
    producer = EventProducer(
        CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/registrar"
    )
    for bucket in fleet.buckets:
        record = BucketRegistered(
            bucket_id=f"id-{bucket.name}",
            name=bucket.name,
            state=BucketState.ACTIVE,
            ip_address=bucket.ip,
            port=bucket.port if bucket.port != 443 else None,
            token_ciphertext=vault.encrypt(bucket.token),
            registered_at=registered_at,
            updated_at=registered_at,
            version=1,
        )
        producer.send(BUCKET_REGISTERED, bucket.name, record, subject=bucket.name)
    producer.flush()


def test_a_restart_after_poller_downtime_fires_only_for_buckets_failing_polls_since(
    broker: Broker,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
    mysql_engine: Engine,
) -> None:
    fleet = fleet_factory(count=3)
    quiet, *fine = fleet.names
    fleet.set_mode(quiet, "silent")
    now = datetime.now(UTC)
    before = now - timedelta(hours=1)
    publish_registrations(broker, fleet, before - timedelta(days=2))
    # What a poller left an hour ago before every replica went down: all answered then.
    with mysql_engine.begin() as connection:
        connection.execute(
            insert(poller_state),
            [
                {
                    "name": name,
                    "bucket_id": f"id-{name}",
                    "first_seen_at": before - timedelta(days=1),
                    "last_poll_slot": -1,
                    "last_success_at": before,
                    "last_attempt_at": before,
                    "polling_since": before - timedelta(days=1),
                }
                for name in fleet.names
            ],
        )

    poller_factory(bucket_ca_file=str(fleet.ca_file), **FAST_HEALTH)

    fired = wait_for(lambda: firings(broker), message="the silent bucket's alert")
    assert [a.bucket for a in fired] == [quiet]
    assert fired[0].context["silent_since"] >= now.isoformat(), "counted from the restart"
    wait_for(
        lambda: successes_since(mysql_engine, now) >= set(fine),
        message="the answering buckets polled since the restart",
    )
    assert [a.bucket for a in firings(broker)] == [quiet], "no alert for answering buckets"


def test_a_bucket_registered_again_after_removal_starts_with_a_clean_state(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
    mysql_engine: Engine,
) -> None:
    fleet = fleet_factory(count=1)
    name = fleet.names[0]
    fleet.set_mode(name, "silent")
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    poller_factory(bucket_ca_file=str(fleet.ca_file), **FAST_HEALTH)
    first = wait_for(lambda: firings(broker), message="the first bucket's alert")[0]

    with registrar.operator() as operator:
        assert operator.delete(f"/api/v1/buckets/{name}").status_code == 200
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))

    # Still silent: the new registration's silence is an occurrence of its own.
    both = wait_for(
        lambda: firings(broker) if len(firings(broker)) >= 2 else None,
        message="the re-registered bucket's own alert",
    )
    assert both[1].bucket == name
    assert both[1].alert_id != first.alert_id
    with mysql_engine.connect() as connection:
        state = connection.execute(select(poller_state.c.bucket_id, poller_state.c.alert_id)).one()
    assert state.bucket_id == bucket_ids(mysql_engine)[name]
    assert state.alert_id == both[1].alert_id


def test_a_bucket_updating_itself_but_not_answering_polls_fires(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1)
    bucket = fleet.buckets[0]
    fleet.set_mode(bucket.name, "silent")
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    poller_factory(bucket_ca_file=str(fleet.ca_file), **FAST_HEALTH)
    counter = itertools.count()

    with registrar.client() as client:
        auth = {"Authorization": f"Token {bucket.token}"}

        def update_itself_then_look() -> list[Any]:
            # The bucket reaches the registrar (new metrics each time) but never the poller.
            body = {"cpu_usage": f"{next(counter) % 100}%"}
            answer = client.patch(f"/api/v1/buckets/{bucket.name}/self", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            return firings(broker)

        fired = wait_for(
            update_itself_then_look, interval=0.5, message="the alert despite self-updates"
        )
    assert [a.bucket for a in fired] == [bucket.name]

"""A bucket that goes silent fires one alert, and resolves it when it answers again."""

from __future__ import annotations

from typing import Any

from rbr_schemas import ALERTS, BUCKET_STATUS, AlertState, Severity
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for


def alerts(broker: Broker) -> list[Any]:
    return [event.data for event in read_events(broker.bootstrap, ALERTS)]


def statuses(broker: Broker, name: str) -> list[Any]:
    return [e.data for e in read_events(broker.bootstrap, BUCKET_STATUS) if e.data.name == name]


def test_silent_bucket_fires_one_alert_and_resolves_it_when_back(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=2)
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    quiet, fine = fleet.names
    poller_factory(
        bucket_ca_file=str(fleet.ca_file),
        poll_interval=2.0,
        unresponsive_after=5.0,
        health_check_interval=0.5,
        bucket_timeout=1.0,
    )
    wait_for(lambda: any(s.reachable for s in statuses(broker, quiet)), message="first success")

    fleet.set_mode(quiet, "silent")
    fired = wait_for(lambda: alerts(broker), timeout=15, message="the unresponsive alert")
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.type, alert.severity, alert.state, alert.bucket) == (
        "bucket_unresponsive",
        Severity.HIGH,
        AlertState.FIRING,
        quiet,
    )
    assert alert.dedupe_key == f"bucket_unresponsive:{quiet}"
    assert "connect" in alert.detail

    # While it stays silent, more failed polls happen and no second alert fires.
    failed_before = sum(1 for s in statuses(broker, quiet) if not s.reachable)
    wait_for(
        lambda: sum(1 for s in statuses(broker, quiet) if not s.reachable) >= failed_before + 1,
        message="another failed poll",
    )
    assert len(alerts(broker)) == 1

    fleet.set_mode(quiet, "normal")
    both = wait_for(
        lambda: alerts(broker) if len(alerts(broker)) >= 2 else None, message="the resolution"
    )
    resolved = both[1]
    assert resolved.state == AlertState.RESOLVED
    assert (resolved.alert_id, resolved.dedupe_key) == (alert.alert_id, alert.dedupe_key)
    assert all(a.bucket != fine for a in alerts(broker)), "the answering bucket never alerted"

"""Health follows the delivery mode: s3-drop buckets are judged by their uploads, not polled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rbr_poller.unresponsive import (
    HealthRow,
    Transition,
    stale_uploads_alert,
    upload_transition,
    uploads_resumed_alert,
)
from rbr_schemas import ALERTS, BUCKET_STATUS, AlertState
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

T0 = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
DAY = 36 * 3600.0


def uploads_row(**changes: Any) -> HealthRow:
    values: dict[str, Any] = {
        "name": "rb-drop",
        "first_seen_at": T0,
        "last_success_at": None,
        "consecutive_failures": 0,
        "last_error_class": None,
        "last_error": None,
        "alert_open": False,
        "alert_id": None,
        "alert_opened_at": None,
        "last_attempt_at": None,
        "alert_basis": None,
    }
    values.update(changes)
    return HealthRow(**values)


def test_uploads_fire_only_on_silence_a_listing_proves_and_resolve_on_a_newer_upload() -> None:
    hour = timedelta(hours=1)
    # Never listed: nothing is known, nothing fires.
    assert upload_transition(uploads_row(), DAY) is None
    # Daily uploads, listed every 15 minutes: a day and a half of silence is needed.
    fresh = uploads_row(last_success_at=T0 + 20 * hour, last_attempt_at=T0 + 50 * hour)
    assert upload_transition(fresh, DAY) is None
    stale = uploads_row(last_success_at=T0 + 20 * hour, last_attempt_at=T0 + 56 * hour)
    assert upload_transition(stale, DAY) is Transition.FIRE
    # An extractor that stopped listing proves nothing more: the silence is counted up to
    # its last listing, whatever the time now (the row does not change while it is down).
    assert upload_transition(fresh, DAY) is None
    # Never uploaded anything: counted from the first listing.
    nothing = uploads_row(first_seen_at=T0, last_attempt_at=T0 + 37 * hour)
    assert upload_transition(nothing, DAY) is Transition.FIRE
    alert = stale_uploads_alert(stale, DAY)
    assert alert.dedupe_key == "bucket_unresponsive:rb-drop"
    assert alert.title == "Bucket rb-drop is unresponsive: no uploads for 36.0 h"
    assert alert.context["delivery_mode"] == "s3-drop"
    assert alert.occurred_at == T0 + 56 * hour
    opened = uploads_row(
        last_success_at=T0 + 20 * hour,
        last_attempt_at=T0 + 60 * hour,
        alert_open=True,
        alert_id=alert.alert_id,
        alert_opened_at=T0 + 56 * hour,
        alert_basis="uploads",
    )
    assert upload_transition(opened, DAY) is None  # still silent: no second alert
    uploaded = uploads_row(**{**opened.__dict__, "last_success_at": T0 + 57 * hour})
    assert upload_transition(uploaded, DAY) is Transition.RESOLVE
    resolved = uploads_resumed_alert(uploaded)
    assert (resolved.alert_id, resolved.state) == (alert.alert_id, AlertState.RESOLVED)


def test_a_bucket_switched_to_s3_drop_is_not_polled_and_its_poll_alert_is_closed(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=2)
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    name, other = fleet.names
    poller_factory(
        bucket_ca_file=str(fleet.ca_file),
        poll_interval=1.0,
        unresponsive_after=3.0,
        health_check_interval=0.3,
        bucket_timeout=1.0,
    )

    def alerts() -> list[Any]:
        return [e.data for e in read_events(broker.bootstrap, ALERTS) if e.data.bucket == name]

    def polls(bucket: str) -> int:
        return fleet.request_counts("/update_bucket")[bucket]

    fleet.set_mode(name, "silent")
    [fired] = wait_for(alerts, timeout=20, message="the poll-based alert")
    with registrar.operator() as operator:
        answer = operator.put(f"/api/v1/buckets/{name}/delivery-mode", json={"mode": "s3-drop"})
    assert answer.status_code == 200, answer.text
    [_, closed] = wait_for(
        lambda: alerts() if len(alerts()) == 2 else None, timeout=20, message="the alert closed"
    )
    assert (closed.alert_id, closed.state) == (fired.alert_id, AlertState.RESOLVED)
    assert "judged by its uploads now" in closed.detail

    # Once the poller acted on the new mode, the bucket is polled no more while the other
    # one is polled three more times (a poll a second each).
    before, others = polls(name), polls(other)
    wait_for(lambda: polls(other) >= others + 3, timeout=20, message="three more polls")
    assert polls(name) == before
    assert all(
        s.data.name != name or s.data.polled_at < closed.occurred_at
        for s in read_events(broker.bootstrap, BUCKET_STATUS)
    )

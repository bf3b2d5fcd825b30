"""After a poll: publish `bucket.status`, record the outcome, raise or resolve alerts.

Order matters for at-least-once delivery: a status is published before its outcome is
recorded, and an alert is published before it is recorded as open (or closed). A crash in
between repeats the publication with the same event id, which consumers recognise; it never
loses one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter, Gauge

from rbr_poller.health import (
    HealthRow,
    Transition,
    alert_event_id,
    firing_alert,
    resolved_alert,
    transition,
)
from rbr_poller.store import Outcome, PollerStateStore
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS, BUCKET_STATUS, Alert, BucketStatus, CloudEvent

log = logging.getLogger(__name__)

ALERTS_RAISED = Counter(
    "rbr_bucket_alerts_total", "Unresponsive alerts published, by state.", ["state"]
)
UNRESPONSIVE = Gauge(
    "rbr_unresponsive_buckets", "Owned buckets with an open unresponsive alert (last check)."
)


@dataclass
class HealthSummary:
    """What a health check found and did."""

    checked: int = 0
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    open: int = 0


class Recorder:
    """Publishes statuses and alerts and keeps `poller_state` in step."""

    def __init__(
        self, store: PollerStateStore, producer: EventProducer, unresponsive_after: float
    ) -> None:
        self._store = store
        self._producer = producer
        self._unresponsive_after = unresponsive_after
        self._polling_gap = store.polling_gap

    def record(self, polled: Sequence[tuple[BucketStatus, str | None]]) -> None:
        """Publishes each status (with its event id) and records the outcomes.

        Raises:
            DeliveryError: the broker did not confirm the statuses (nothing recorded).
            DBAPIError: the database failed (the statuses may be published again later).
        """
        if not polled:
            return
        events = [
            (
                status.name,
                self._producer.event(BUCKET_STATUS, status, subject=status.name, event_id=event_id),
            )
            for status, event_id in polled
        ]
        self._producer.send_events(BUCKET_STATUS, events)
        self._store.record([Outcome.of(status) for status, _ in polled])

    def check_health(
        self, names: Iterable[str], now: datetime, inactive: Iterable[str] = ()
    ) -> HealthSummary:
        """Fires and resolves alerts of active buckets; closes those of inactive ones.

        Raises:
            DeliveryError: the broker did not confirm the alerts (none recorded).
        """
        summary = HealthSummary()
        changes: list[tuple[HealthRow, Alert]] = []
        rows = self._store.health_rows(names)
        summary.checked = len(rows)
        for row in rows:
            change = transition(row, now, self._unresponsive_after, self._polling_gap)
            if change is Transition.FIRE:
                changes.append((row, firing_alert(row, now, self._unresponsive_after)))
            elif change is Transition.RESOLVE and row.last_success_at is not None:
                changes.append((row, resolved_alert(row, row.last_success_at)))
        for row in self._store.health_rows(list(inactive)):
            if row.alert_open and row.alert_id:
                reason = (
                    f"Bucket {row.name} is no longer active (disabled or pending): it is not "
                    "polled any more, so its unresponsive alert is closed."
                )
                changes.append((row, resolved_alert(row, now, reason)))
        self._publish(changes)
        for row, alert in changes:
            if alert.state.value == "firing":
                self._store.open_alert(row.name, alert.alert_id, now)
                summary.fired.append(row.name)
                log.warning(
                    "bucket %s is unresponsive: alert fired",
                    row.name,
                    extra={"bucket": row.name, "alert_id": alert.alert_id},
                )
            else:
                self._store.close_alert(row.name, alert.alert_id)
                summary.resolved.append(row.name)
                log.info(
                    "bucket %s: unresponsive alert resolved",
                    row.name,
                    extra={"bucket": row.name, "alert_id": alert.alert_id},
                )
        fired, resolved = set(summary.fired), set(summary.resolved)
        summary.open = sum(
            1 for row in rows if row.name in fired or (row.alert_open and row.name not in resolved)
        )
        return summary

    def _publish(self, changes: Sequence[tuple[HealthRow, Alert]]) -> None:
        if not changes:
            return
        events: list[tuple[str, CloudEvent[Alert]]] = [
            (
                alert.dedupe_key,
                self._producer.event(
                    ALERTS,
                    alert,
                    subject=alert.bucket,
                    event_id=alert_event_id(alert.alert_id, alert.state),
                ),
            )
            for _, alert in changes
        ]
        self._producer.send_events(ALERTS, events)
        for _, alert in changes:
            ALERTS_RAISED.labels(alert.state.value).inc()

"""After a poll: publish `bucket.status`, record the outcome, raise or resolve alerts.

Each is published before it is recorded: a crash in between repeats it with the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter, Gauge

from rbr_poller.store import Outcome, PollerStateStore
from rbr_poller.unresponsive import (
    Basis,
    HealthRow,
    Transition,
    alert_event_id,
    basis_of,
    firing_alert,
    resolved_alert,
    stale_uploads_alert,
    transition,
    upload_transition,
    uploads_resumed_alert,
)
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
        self,
        store: PollerStateStore,
        producer: EventProducer,
        unresponsive_after: float,
        upload_stale_after: float = 36 * 3600.0,
    ) -> None:
        self._store = store
        self._producer = producer
        self._unresponsive_after = unresponsive_after
        self._upload_stale_after = upload_stale_after
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
        self,
        names: Iterable[str],
        now: datetime,
        inactive: Iterable[str] = (),
        uploads: Iterable[str] = (),
    ) -> HealthSummary:
        """Fires and resolves alerts of active buckets; closes those of inactive ones.

        Args:
            names: active buckets judged by their polls (pull and agent).
            now: the time of the check.
            inactive: buckets that are not active (their open alert is closed).
            uploads: active s3-drop buckets, judged by the freshness of their uploads.

        An open alert judged on the other basis than the bucket's mode now calls for (its
        delivery mode changed) is closed; the new basis fires its own when it holds.

        Raises:
            DeliveryError: the broker did not confirm the alerts (none recorded).
        """
        summary = HealthSummary()
        changes: list[tuple[HealthRow, Alert]] = []
        rows = self._store.health_rows(names)
        upload_rows = self._store.upload_rows(uploads)
        summary.checked = len(rows) + len(upload_rows)
        for row in rows:
            changes.extend(self._poll_change(row, now))
        for row in upload_rows:
            changes.extend(self._upload_change(row, now))
        for row in self._store.health_rows(list(inactive)):
            if row.alert_open and row.alert_id:
                reason = (
                    f"Bucket {row.name} is no longer active (disabled or pending): it is not "
                    "polled any more, so its unresponsive alert is closed."
                )
                changes.append((row, resolved_alert(row, now, reason)))
        self._publish(changes)
        for row, alert in changes:
            self._record_change(row, alert, now, summary)
        fired, resolved = set(summary.fired), set(summary.resolved)
        summary.open = sum(
            1
            for row in [*rows, *upload_rows]
            if row.name in fired or (row.alert_open and row.name not in resolved)
        )
        return summary

    def _poll_change(self, row: HealthRow, now: datetime) -> list[tuple[HealthRow, Alert]]:
        if row.alert_open and row.alert_id and basis_of(row) is Basis.UPLOADS:
            return [(row, resolved_alert(row, now, _basis_changed(row.name, "its polls")))]
        change = transition(row, now, self._unresponsive_after, self._polling_gap)
        if change is Transition.FIRE:
            return [(row, firing_alert(row, now, self._unresponsive_after))]
        if change is Transition.RESOLVE and row.last_success_at is not None:
            return [(row, resolved_alert(row, row.last_success_at))]
        return []

    def _upload_change(self, row: HealthRow, now: datetime) -> list[tuple[HealthRow, Alert]]:
        if row.alert_open and row.alert_id and basis_of(row) is Basis.POLLS:
            return [(row, resolved_alert(row, now, _basis_changed(row.name, "its uploads")))]
        change = upload_transition(row, self._upload_stale_after)
        if change is Transition.FIRE:
            return [(row, stale_uploads_alert(row, self._upload_stale_after))]
        if change is Transition.RESOLVE:
            return [(row, uploads_resumed_alert(row))]
        return []

    def _record_change(
        self, row: HealthRow, alert: Alert, now: datetime, summary: HealthSummary
    ) -> None:
        if alert.state.value == "firing":
            # An uploads alert opens at the listing that proved the silence (S3's clock is
            # what a later upload is compared with); a polls alert now.
            by_uploads = alert.context.get("delivery_mode") == "s3-drop"
            self._store.open_alert(
                row.name,
                alert.alert_id,
                alert.occurred_at if by_uploads else now,
                Basis.UPLOADS.value if by_uploads else None,
            )
            summary.fired.append(row.name)
            log.warning(
                "bucket %s is unresponsive: alert fired",
                row.name,
                extra={"bucket": row.name, "alert_id": alert.alert_id},
            )
            return
        self._store.close_alert(row.name, alert.alert_id)
        summary.resolved.append(row.name)
        log.info(
            "bucket %s: unresponsive alert resolved",
            row.name,
            extra={"bucket": row.name, "alert_id": alert.alert_id},
        )

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


def _basis_changed(name: str, basis: str) -> str:
    return (
        f"Bucket {name}'s delivery mode changed: it is judged by {basis} now, so the alert "
        "raised on the other basis is closed."
    )

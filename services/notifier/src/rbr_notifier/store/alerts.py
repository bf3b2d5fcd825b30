"""SQL of alerts: recording alert events as occurrences, their history, acknowledgements.

Table `alerts` (one row per occurrence). An event is recorded and its deliveries planned in
one transaction, as `lifecycle` decides, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.engine import Connection, Row

from rbr_notifier.lifecycle import Occurrence, Outcome, Repeat, on_firing, on_resolve
from rbr_notifier.model import AlertState, Kind
from rbr_notifier.store.deliveries import (
    PlannedDelivery,
    owned_deliveries,
    plan_deliveries,
    plan_resolves,
)
from rbr_notifier.store.rows import ONE_SHOT_TYPES, OPEN_STATES, UNSERVED_STATES
from rbr_runtime.db.acknowledgements import acknowledge
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import alerts, notifications, notifier_deliveries
from rbr_schemas import Alert, utcnow
from rbr_schemas import AlertState as EventState

MAX_ID_CHARS = 64
"""Longest alert id and event id kept (the columns' width)."""

Router = Callable[[Alert], list[str]]
"""Returns the names of the channels an alert's trigger goes to (the filters)."""


@dataclass(frozen=True)
class AlertEvent:
    """One alert event from the topic, with what identifies the message."""

    event_id: str
    alert: Alert


class AlertStore:
    """Reads and writes alert occurrences."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_events(
        self,
        events: Sequence[AlertEvent],
        route: Router,
        *,
        reopen_after: float,
    ) -> list[tuple[Outcome, list[PlannedDelivery]]]:
        """Records a batch of alert events in one transaction and plans their deliveries.

        Returns, per event, what it meant (new, repeat, replay, resolve, resolve-unknown) and
        the deliveries it is responsible for that still have to be attempted: the ones it
        planned, and ones that failed before (a replay from the DLQ retries them).
        """
        results = []
        with self.engine.begin() as connection:
            for event in events:
                if event.alert.state is EventState.FIRING:
                    outcome, alert_ids = _record_firing(connection, event, route, reopen_after)
                    kind = Kind.TRIGGER
                else:
                    outcome, alert_ids = _record_resolved(connection, event)
                    kind = Kind.RESOLVE
                results.append((outcome, owned_deliveries(connection, alert_ids, kind)))
        return results

    def close_one_shot(self, dedupe_keys: Iterable[str]) -> int:
        """Closes the open occurrences of one-shot alerts (the daily summary); returns how many.

        No resolve is planned: a resolve means "the condition ended", and a summary never
        began one (PagerDuty and Opsgenie would get a resolve for nothing).
        """
        keys = sorted(set(dedupe_keys))
        if not keys:
            return 0
        now = utcnow()
        # Not while a channel still waits for it or gave up on it: left open, it is still sent
        # when its retry comes, and a replay of it from alerts.dlq still reaches that channel.
        unserved = (
            select(notifier_deliveries.c.id)
            .where(
                notifier_deliveries.c.alert_id == alerts.c.alert_id,
                notifier_deliveries.c.state.in_(UNSERVED_STATES),
            )
            .exists()
        )
        with self.engine.begin() as connection:
            closed: int = connection.execute(
                update(alerts)
                .where(
                    alerts.c.dedupe_key.in_(keys),
                    alerts.c.type.in_(ONE_SHOT_TYPES),
                    alerts.c.state.in_(OPEN_STATES),
                    ~unserved,
                )
                .values(
                    state=AlertState.RESOLVED.value,
                    resolved_at=now,
                    resolved_by="one-shot",
                    updated_at=now,
                )
            ).rowcount
        return closed

    def list_alerts(
        self, *, state: AlertState | None = None, bucket: str | None = None, limit: int = 50
    ) -> list[Row[Any]]:
        """Returns alert occurrences, newest first."""
        query = select(alerts).order_by(alerts.c.fired_at.desc(), alerts.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(alerts.c.state == state.value)
        if bucket is not None:
            query = query.where(alerts.c.bucket == bucket)
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def acknowledge(self, dedupe_key: str, by: str, now: datetime) -> int:
        """Acknowledges the firing occurrences of a dedupe key; returns how many."""
        with self.engine.begin() as connection:
            return acknowledge(connection, alerts.c.dedupe_key == dedupe_key, by, now)

    def history(self, dedupe_key: str) -> tuple[list[Row[Any]], list[Row[Any]]]:
        """Returns a dedupe key's occurrences and every notification attempt for them."""
        with self.engine.connect() as connection:
            occurrences = connection.execute(
                select(alerts).where(alerts.c.dedupe_key == dedupe_key).order_by(alerts.c.id)
            ).all()
            ids = [row.alert_id for row in occurrences]
            attempts = (
                connection.execute(
                    select(notifications)
                    .where(notifications.c.alert_id.in_(ids))
                    .order_by(notifications.c.id)
                ).all()
                if ids
                else []
            )
        return list(occurrences), list(attempts)


def _record_firing(
    connection: Connection, event: AlertEvent, route: Router, reopen_after: float
) -> tuple[Outcome, list[str]]:
    alert, now = event.alert, utcnow()
    same_id = connection.execute(
        select(alerts).where(alerts.c.alert_id == alert.alert_id)
    ).one_or_none()
    open_rows: Sequence[Row[Any]] = []
    if same_id is None:
        open_rows = connection.execute(
            select(alerts).where(
                alerts.c.dedupe_key == alert.dedupe_key, alerts.c.state.in_(OPEN_STATES)
            )
        ).all()
    firing = on_firing(
        alert.alert_id,
        _stored_id(event.event_id),
        alert.occurred_at,
        same_id=occurrence(same_id) if same_id is not None else None,
        open_occurrences=[occurrence(row) for row in open_rows],
        reopen_after=reopen_after,
    )
    if firing.repeat is not None:
        _count_repeat(connection, firing.repeat, now)
    for stale in firing.superseded:
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id == stale.alert_id)
            .values(
                state=AlertState.RESOLVED.value,
                resolved_at=stale.last_seen,
                resolved_by="superseded",
                updated_at=now,
            )
        )
    if firing.outcome is Outcome.NEW:
        connection.execute(insert_ignore(connection, alerts).values(**_alert_row(event, now)))
        plan_deliveries(connection, alert.alert_id, route(alert), Kind.TRIGGER, now)
    return firing.outcome, list(firing.owned)


def _record_resolved(connection: Connection, event: AlertEvent) -> tuple[Outcome, list[str]]:
    alert, now = event.alert, utcnow()
    targets = connection.execute(
        select(alerts).where(
            or_(
                alerts.c.alert_id == alert.alert_id,
                and_(
                    alerts.c.dedupe_key == alert.dedupe_key,
                    alerts.c.state.in_(OPEN_STATES),
                ),
            )
        )
    ).all()
    resolution = on_resolve([occurrence(row) for row in targets])
    if resolution.outcome is Outcome.RESOLVE_UNKNOWN:
        connection.execute(
            insert_ignore(connection, alerts).values(
                {
                    **_alert_row(event, now),
                    "state": AlertState.RESOLVED.value,
                    "resolved_at": alert.occurred_at,
                    "resolved_by": "event",
                }
            )
        )
    for alert_id in resolution.owned:
        if alert_id in resolution.closes:
            connection.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id)
                .values(
                    state=AlertState.RESOLVED.value,
                    resolved_at=alert.occurred_at,
                    resolved_by="event",
                    last_event_id=_stored_id(event.event_id),
                    updated_at=now,
                )
            )
        plan_resolves(connection, alert_id, now)
    return resolution.outcome, list(resolution.owned)


def occurrence(row: Row[Any]) -> Occurrence:
    """Returns what the lifecycle rules need of an `alerts` row."""
    return Occurrence(
        alert_id=row.alert_id,
        state=AlertState(row.state),
        fired_at=row.fired_at,
        last_seen_at=row.last_seen_at,
        last_event_id=row.last_event_id,
    )


def _stored_id(event_id: str) -> str:
    """Returns an event id as `alerts.last_event_id` keeps it."""
    return event_id[:MAX_ID_CHARS]


def _count_repeat(connection: Connection, repeat: Repeat, now: datetime) -> None:
    connection.execute(
        update(alerts)
        .where(alerts.c.alert_id == repeat.alert_id)
        .values(
            repeats=alerts.c.repeats + 1,
            last_seen_at=repeat.last_seen_at,
            last_event_id=repeat.event_id,
            updated_at=now,
        )
    )


def _alert_row(event: AlertEvent, now: datetime) -> dict[str, Any]:
    alert = event.alert
    return {
        "alert_id": alert.alert_id,
        "dedupe_key": alert.dedupe_key,
        "type": alert.type,
        "severity": alert.severity.value,
        "state": AlertState.FIRING.value,
        "bucket": alert.bucket,
        "title": alert.title,
        "detail": alert.detail,
        "source": alert.source,
        "context": dict(alert.context),
        "fired_at": alert.occurred_at,
        "last_seen_at": alert.occurred_at,
        "repeats": 0,
        "last_event_id": _stored_id(event.event_id),
        "updated_at": now,
    }

"""SQL of alerts: recording alert events as occurrences, their history, acknowledgements.

Table `alerts` (one row per occurrence). An event is recorded and its deliveries planned in
one transaction, as `lifecycle` decides, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.engine import Connection, Row

from rbr_notifier.lifecycle import Outcome, Repeat, on_firing, on_resolve
from rbr_notifier.model import AlertState, Kind
from rbr_notifier.store.batch import independent, known_rows, record_independent
from rbr_notifier.store.deliveries import (
    PlannedDelivery,
    owned_deliveries,
    plan_deliveries,
    plan_resolves,
)
from rbr_notifier.store.rows import (
    MAX_ID_CHARS,
    ONE_SHOT_TYPES,
    OPEN_STATES,
    UNSERVED_STATES,
    AlertEvent,
    Router,
    alert_row,
    occurrence,
    stored_id,
)
from rbr_runtime.db.acknowledgements import acknowledge
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import alerts, notifications, notifier_deliveries
from rbr_schemas import AlertState as EventState
from rbr_schemas import utcnow

__all__ = ["MAX_ID_CHARS", "AlertEvent", "AlertStore", "occurrence"]


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
        with self.engine.begin() as connection:
            known = known_rows(connection, events)
            alone = set(independent(events, known))
            together = record_independent(
                connection,
                [e for i, e in enumerate(events) if i in alone],
                known,
                route,
                reopen_after,
            )
            recorded = iter(together)
            results = []
            for index, event in enumerate(events):
                if index in alone:
                    results.append(next(recorded))
                else:
                    # Another event of the batch touches the same occurrences: in order.
                    results.append(_record_one(connection, event, route, reopen_after))
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


def _record_one(
    connection: Connection, event: AlertEvent, route: Router, reopen_after: float
) -> tuple[Outcome, list[PlannedDelivery]]:
    """Records one event with the queries it needs (events that depend on one another)."""
    if event.alert.state is EventState.FIRING:
        outcome, alert_ids = _record_firing(connection, event, route, reopen_after)
        return outcome, owned_deliveries(connection, alert_ids, Kind.TRIGGER)
    outcome, alert_ids = _record_resolved(connection, event)
    return outcome, owned_deliveries(connection, alert_ids, Kind.RESOLVE)


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
        stored_id(event.event_id),
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
        connection.execute(insert_ignore(connection, alerts).values(**alert_row(event, now)))
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
                    **alert_row(event, now),
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
                    last_event_id=stored_id(event.event_id),
                    updated_at=now,
                )
            )
        plan_resolves(connection, alert_id, now)
    return resolution.outcome, list(resolution.owned)


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

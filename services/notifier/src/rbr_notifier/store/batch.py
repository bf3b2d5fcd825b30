"""Recording a batch of alert events that touch separate occurrences, in a few queries.

The same rules as one event at a time (`lifecycle.on_firing`, `on_resolve`), decided over the
occurrences read for the whole batch at once and written with one statement per kind of row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row

from rbr_notifier.lifecycle import Outcome, on_firing, on_resolve, resolve_channels
from rbr_notifier.model import AlertState, DeliveryState, Kind
from rbr_notifier.store.deliveries import PlannedDelivery, delivery_row, owned_deliveries
from rbr_notifier.store.rows import (
    OPEN_STATES,
    AlertEvent,
    Router,
    alert_row,
    occurrence,
    stored_id,
)
from rbr_runtime.db.bulk import insert_rows
from rbr_runtime.db.tables import alerts, notifier_deliveries
from rbr_schemas import AlertState as EventState
from rbr_schemas import utcnow

Recorded = tuple[Outcome, list[PlannedDelivery]]


@dataclass
class Known:
    """The occurrences a batch's events may touch: by alert id, and open ones by dedupe key."""

    by_id: dict[str, Row[Any]] = field(default_factory=dict)
    open_by_key: dict[str, list[Row[Any]]] = field(default_factory=dict)

    def open_of(self, dedupe_key: str) -> list[Row[Any]]:
        """Returns the open occurrences of a dedupe key."""
        return self.open_by_key.get(dedupe_key, [])


@dataclass
class Writes:
    """What a batch writes, gathered so that each kind of row takes one statement."""

    new_alerts: list[dict[str, Any]] = field(default_factory=list)
    repeats: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    resolves_of: list[str] = field(default_factory=list)


def known_rows(connection: Connection, events: Sequence[AlertEvent]) -> Known:
    """Reads the occurrences with the events' alert ids and the open ones of their keys."""
    known = Known()
    ids = sorted({e.alert.alert_id for e in events})
    keys = sorted({e.alert.dedupe_key for e in events})
    for row in connection.execute(select(alerts).where(alerts.c.alert_id.in_(ids))):
        known.by_id[row.alert_id] = row
    open_rows = connection.execute(
        select(alerts)
        .where(alerts.c.dedupe_key.in_(keys), alerts.c.state.in_(OPEN_STATES))
        .order_by(alerts.c.id)
    )
    for row in open_rows:
        known.open_by_key.setdefault(row.dedupe_key, []).append(row)
    return known


def independent(events: Sequence[AlertEvent], known: Known) -> list[int]:
    """Returns the positions of the events no other event of the batch depends on.

    An event touches the occurrences of its alert id and of its dedupe key (and of the key
    its alert id was stored under). Events sharing none of these touch separate rows, so
    they may be recorded together in any order; the others are recorded one by one, in order.
    """
    marks = [_marks(event, known) for event in events]
    seen: dict[tuple[str, str], int] = {}
    for event_marks in marks:
        for mark in event_marks:
            seen[mark] = seen.get(mark, 0) + 1
    return [i for i, event_marks in enumerate(marks) if all(seen[m] == 1 for m in event_marks)]


def _marks(event: AlertEvent, known: Known) -> set[tuple[str, str]]:
    marks = {("id", event.alert.alert_id), ("key", event.alert.dedupe_key)}
    same_id = known.by_id.get(event.alert.alert_id)
    if same_id is not None:
        marks.add(("key", same_id.dedupe_key))
    return marks


def record_independent(
    connection: Connection,
    events: Sequence[AlertEvent],
    known: Known,
    route: Router,
    reopen_after: float,
) -> list[Recorded]:
    """Records events that touch separate occurrences; returns what each meant and owns."""
    if not events:
        return []
    now = utcnow()
    writes = Writes()
    decided = [
        _firing(event, known, writes, now, route=route, reopen_after=reopen_after)
        if event.alert.state is EventState.FIRING
        else _resolve(event, known, writes, now)
        for event in events
    ]
    _write(connection, writes, now)
    trigger_ids = [i for outcome, ids, kind in decided if kind is Kind.TRIGGER for i in ids]
    resolve_ids = [i for outcome, ids, kind in decided if kind is Kind.RESOLVE for i in ids]
    owned = _by_alert(owned_deliveries(connection, trigger_ids, Kind.TRIGGER))
    owned |= _by_alert(owned_deliveries(connection, resolve_ids, Kind.RESOLVE))
    return [
        (outcome, sorted((d for i in ids for d in owned.get(i, [])), key=lambda d: d.id))
        for outcome, ids, _ in decided
    ]


def _firing(
    event: AlertEvent,
    known: Known,
    writes: Writes,
    now: datetime,
    *,
    route: Router,
    reopen_after: float,
) -> tuple[Outcome, tuple[str, ...], Kind]:
    alert = event.alert
    same_id = known.by_id.get(alert.alert_id)
    open_rows = known.open_of(alert.dedupe_key) if same_id is None else []
    firing = on_firing(
        alert.alert_id,
        stored_id(event.event_id),
        alert.occurred_at,
        same_id=occurrence(same_id) if same_id is not None else None,
        open_occurrences=[occurrence(row) for row in open_rows],
        reopen_after=reopen_after,
    )
    if firing.repeat is not None:
        writes.repeats.append(
            {
                "target": firing.repeat.alert_id,
                "seen": firing.repeat.last_seen_at,
                "event": firing.repeat.event_id,
            }
        )
    for stale in firing.superseded:
        writes.closed.append(
            {"target": stale.alert_id, "at": stale.last_seen, "by": "superseded", "event": None}
        )
    if firing.outcome is Outcome.NEW:
        writes.new_alerts.append(alert_row(event, now))
        writes.triggers += [
            delivery_row(alert.alert_id, channel, Kind.TRIGGER, now) for channel in route(alert)
        ]
    return firing.outcome, firing.owned, Kind.TRIGGER


def _resolve(
    event: AlertEvent, known: Known, writes: Writes, now: datetime
) -> tuple[Outcome, tuple[str, ...], Kind]:
    alert = event.alert
    same_id = known.by_id.get(alert.alert_id)
    targets = {row.alert_id: row for row in known.open_of(alert.dedupe_key)}
    if same_id is not None:
        targets = {same_id.alert_id: same_id, **targets}
    resolution = on_resolve([occurrence(row) for row in targets.values()])
    if resolution.outcome is Outcome.RESOLVE_UNKNOWN:
        writes.new_alerts.append(
            {
                **alert_row(event, now),
                "state": AlertState.RESOLVED.value,
                "resolved_at": alert.occurred_at,
                "resolved_by": "event",
            }
        )
    for alert_id in resolution.closes:
        writes.closed.append(
            {
                "target": alert_id,
                "at": alert.occurred_at,
                "by": "event",
                "event": stored_id(event.event_id),
            }
        )
    writes.resolves_of += resolution.owned
    return resolution.outcome, resolution.owned, Kind.RESOLVE


def _write(connection: Connection, writes: Writes, now: datetime) -> None:
    """Writes a batch's rows: counts, closes, new occurrences, then their deliveries."""
    if writes.repeats:
        connection.execute(
            update(alerts)
            .where(alerts.c.alert_id == bindparam("target"))
            .values(
                repeats=alerts.c.repeats + 1,
                last_seen_at=bindparam("seen"),
                last_event_id=bindparam("event"),
                updated_at=now,
            ),
            writes.repeats,
        )
    _close(connection, [c for c in writes.closed if c["event"] is None], now, keep_event=True)
    _close(connection, [c for c in writes.closed if c["event"] is not None], now, keep_event=False)
    _insert(connection, alerts, _same_columns(writes.new_alerts))
    _insert(connection, notifier_deliveries, [writes.triggers])
    _insert(connection, notifier_deliveries, [_resolve_rows(connection, writes.resolves_of, now)])


def _close(
    connection: Connection, closes: list[dict[str, Any]], now: datetime, *, keep_event: bool
) -> None:
    """Resolves occurrences; a superseded one keeps its last event id, an event sets it."""
    if not closes:
        return
    values: dict[str, Any] = {
        "state": AlertState.RESOLVED.value,
        "resolved_at": bindparam("at"),
        "resolved_by": bindparam("by"),
        "updated_at": now,
    }
    if not keep_event:
        values["last_event_id"] = bindparam("event")
    connection.execute(
        update(alerts).where(alerts.c.alert_id == bindparam("target")).values(**values), closes
    )


def _resolve_rows(connection: Connection, alert_ids: list[str], now: datetime) -> list[Any]:
    """Returns the resolve deliveries to plan: to each channel the firing reached or will."""
    if not alert_ids:
        return []
    plan = notifier_deliveries.c
    triggers = connection.execute(
        select(plan.alert_id, plan.channel, plan.state).where(
            plan.alert_id.in_(sorted(set(alert_ids))), plan.kind == Kind.TRIGGER.value
        )
    ).all()
    by_alert: dict[str, list[tuple[str, DeliveryState]]] = {}
    for row in triggers:
        by_alert.setdefault(row.alert_id, []).append((row.channel, DeliveryState(row.state)))
    return [
        delivery_row(alert_id, channel, Kind.RESOLVE, now)
        for alert_id in dict.fromkeys(alert_ids)
        for channel in resolve_channels(by_alert.get(alert_id, []))
    ]


def _insert(connection: Connection, table: Any, batches: Iterable[list[dict[str, Any]]]) -> None:
    for rows in batches:
        insert_rows(connection, table, rows, ignore=True)


def _same_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Splits rows by their columns: one multi-row INSERT needs the same columns in each."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _by_alert(deliveries: list[PlannedDelivery]) -> dict[str, list[PlannedDelivery]]:
    grouped: dict[str, list[PlannedDelivery]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.alert_id, []).append(delivery)
    return grouped

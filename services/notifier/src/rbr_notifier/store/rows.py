"""What the stores share: the state sets as column values, and rows made into values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Table, bindparam
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import BindParameter

from rbr_notifier import lifecycle
from rbr_notifier.lifecycle import Occurrence
from rbr_notifier.model import AlertState, AlertView
from rbr_schemas import Alert, Severity

OPEN_STATES = tuple(state.value for state in lifecycle.OPEN_STATES)
RETRYABLE_STATES = tuple(state.value for state in lifecycle.RETRYABLE_STATES)
UNFINISHED_STATES = tuple(state.value for state in lifecycle.UNFINISHED_STATES)
UNSERVED_STATES = UNFINISHED_STATES + RETRYABLE_STATES
"""A delivery in one of these still owes its channel the notification."""
ONE_SHOT_TYPES = tuple(sorted(lifecycle.ONE_SHOT_TYPES))
MAX_DETAIL_CHARS = 500
MAX_ID_CHARS = 64
"""Longest alert id and event id kept (the columns' width)."""

Router = Callable[[Alert], list[str]]
"""Returns the names of the channels an alert's trigger goes to (the filters)."""


@dataclass(frozen=True)
class AlertEvent:
    """One alert event from the topic, with what identifies the message."""

    event_id: str
    alert: Alert


ALERT_VIEW_FIELDS = (
    "alert_id",
    "dedupe_key",
    "type",
    "severity",
    "state",
    "title",
    "detail",
    "source",
    "fired_at",
    "bucket",
    "resolved_at",
    "context",
    "acknowledged_at",
)
"""The columns of `alerts` that `alert_view` reads."""


def alert_view_columns(table: Table) -> list[Column[Any]]:
    """Returns the columns of `alerts` an AlertView is built from (a narrower SELECT)."""
    return [table.c[name] for name in ALERT_VIEW_FIELDS]


def alert_view(row: Row[Any] | Any) -> AlertView:
    """Builds an AlertView from an `alerts` row."""
    return AlertView(
        alert_id=row.alert_id,
        dedupe_key=row.dedupe_key,
        type=row.type,
        severity=Severity(row.severity),
        state=AlertState(row.state),
        title=row.title,
        detail=row.detail,
        source=row.source,
        fired_at=row.fired_at,
        bucket=row.bucket,
        resolved_at=row.resolved_at,
        context=dict(row.context or {}),
        acknowledged_at=row.acknowledged_at,
    )


def short(detail: str | None) -> str | None:
    """Returns a delivery's `detail`, cut to fit its column."""
    if detail is None:
        return None
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"


def occurrence(row: Row[Any]) -> Occurrence:
    """Returns what the lifecycle rules need of an `alerts` row."""
    return Occurrence(
        alert_id=row.alert_id,
        state=AlertState(row.state),
        fired_at=row.fired_at,
        last_seen_at=row.last_seen_at,
        last_event_id=row.last_event_id,
    )


def stored_id(event_id: str) -> str:
    """Returns an event id as `alerts.last_event_id` keeps it."""
    return event_id[:MAX_ID_CHARS]


def alert_row(event: AlertEvent, now: datetime) -> dict[str, Any]:
    """Returns the `alerts` row of a new occurrence, firing."""
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
        "last_event_id": stored_id(event.event_id),
        "updated_at": now,
    }


def literal_ids(ids: Iterable[int]) -> BindParameter[int]:
    """Returns delivery ids for an IN list, written into the statement as numbers.

    A batch's lists of 200 ids otherwise cost a bind name and a driver escape each (about
    2 µs an id here); as integers (`int` of each, BigInteger's literal) they cannot carry
    anything else into the SQL.
    """
    return bindparam(
        None, [int(i) for i in ids], expanding=True, literal_execute=True, type_=BigInteger
    )

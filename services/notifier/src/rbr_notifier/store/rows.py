"""What the stores share: the state sets as column values, and rows made into values."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row

from rbr_notifier import lifecycle
from rbr_notifier.model import AlertState, AlertView
from rbr_schemas import Severity

OPEN_STATES = tuple(state.value for state in lifecycle.OPEN_STATES)
RETRYABLE_STATES = tuple(state.value for state in lifecycle.RETRYABLE_STATES)
UNFINISHED_STATES = tuple(state.value for state in lifecycle.UNFINISHED_STATES)
UNSERVED_STATES = UNFINISHED_STATES + RETRYABLE_STATES
"""A delivery in one of these still owes its channel the notification."""
ONE_SHOT_TYPES = tuple(sorted(lifecycle.ONE_SHOT_TYPES))
MAX_DETAIL_CHARS = 500


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

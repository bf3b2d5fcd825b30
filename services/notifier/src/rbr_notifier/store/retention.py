"""The retention: deleting alert history, attempts and windows that ended long ago."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import Connection

from rbr_notifier.model import DIGEST_KEY_PREFIX, AlertState
from rbr_notifier.store.rows import UNFINISHED_STATES
from rbr_runtime.db.tables import (
    alerts,
    notifications,
    notifier_deliveries,
    notifier_delivery_events,
    notifier_windows,
)


def purge(engine: Engine, cutoff: datetime, chunk: int = 1000) -> dict[str, int]:
    """Deletes what ended before `cutoff`, in small transactions; returns counts by kind.

    That is: resolved alerts with their delivery plans and attempts, older attempts
    (digests, tests) and throttle windows.
    """
    removed = {"alerts": 0, "notifications": 0, "windows": 0}
    while True:
        with engine.begin() as connection:
            ids = _resolved_before(connection, cutoff, chunk)
            if not ids:
                break
            alerts_removed, attempts_removed = _delete_occurrences(connection, ids)
        removed["alerts"] += alerts_removed
        removed["notifications"] += attempts_removed
    with engine.begin() as connection:
        removed["notifications"] += connection.execute(
            delete(notifications).where(notifications.c.created_at < cutoff)
        ).rowcount
        # Digest resolves belong to no alert occurrence: they go with their window.
        connection.execute(
            delete(notifier_deliveries).where(
                notifier_deliveries.c.alert_id.startswith(DIGEST_KEY_PREFIX, autoescape=True),
                notifier_deliveries.c.window_start < cutoff,
                notifier_deliveries.c.state.not_in(UNFINISHED_STATES),
            )
        )
        removed["windows"] += connection.execute(
            delete(notifier_windows).where(notifier_windows.c.window_end < cutoff)
        ).rowcount
    return removed


def _resolved_before(connection: Connection, cutoff: datetime, limit: int) -> list[str]:
    """Returns the ids of up to `limit` occurrences resolved before `cutoff`."""
    # Not while a channel still waits for it (a retention shorter than a retry schedule): the
    # delivery and its kept message must outlive the wait.
    waiting = (
        select(notifier_deliveries.c.id)
        .where(
            notifier_deliveries.c.alert_id == alerts.c.alert_id,
            notifier_deliveries.c.state.in_(UNFINISHED_STATES),
        )
        .exists()
    )
    query = (
        select(alerts.c.alert_id)
        .where(
            alerts.c.state == AlertState.RESOLVED.value,
            alerts.c.resolved_at < cutoff,
            ~waiting,
        )
        .limit(limit)
    )
    return list(connection.execute(query).scalars().all())


def _delete_occurrences(connection: Connection, ids: list[str]) -> tuple[int, int]:
    """Deletes occurrences with their deliveries, kept messages and attempts; returns counts."""
    planned = select(notifier_deliveries.c.id).where(notifier_deliveries.c.alert_id.in_(ids))
    connection.execute(
        delete(notifier_delivery_events).where(notifier_delivery_events.c.delivery_id.in_(planned))
    )
    connection.execute(delete(notifier_deliveries).where(notifier_deliveries.c.alert_id.in_(ids)))
    attempts: int = connection.execute(
        delete(notifications).where(notifications.c.alert_id.in_(ids))
    ).rowcount
    occurrences: int = connection.execute(delete(alerts).where(alerts.c.alert_id.in_(ids))).rowcount
    return occurrences, attempts

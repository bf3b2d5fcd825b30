"""An operator's acknowledgement of an alert (firing becomes acknowledged), in one place.

The one change of the notifier's `alerts` table made outside the notifier (by the registrar's
operator API); the notifier's store uses it too. The notifier keeps an acknowledged
occurrence open (a resolve still closes it and is still sent) but never notifies it again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import Connection

from rbr_runtime.db.tables import alerts

FIRING = "firing"
ACKNOWLEDGED = "acknowledged"


def acknowledge(connection: Connection, which: ColumnElement[bool], by: str, now: datetime) -> int:
    """Acknowledges the firing occurrences `which` selects; returns how many."""
    result = connection.execute(
        update(alerts)
        .where(which, alerts.c.state == FIRING)
        .values(state=ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=by[:255], updated_at=now)
    )
    return int(result.rowcount or 0)

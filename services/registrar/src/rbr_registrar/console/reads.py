"""The console's own reads: counts per state and log records per hour (aggregates).

Every list the console shows comes from `rbr_registrar.operator.queries`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from rbr_registrar.console.charts import Count
from rbr_runtime.db.aliases import names_designating
from rbr_runtime.db.tables import buckets, logs

HOUR = timedelta(hours=1)


def bucket_counts(engine: Engine) -> dict[str, int]:
    """Returns how many buckets are in each state (states without any are absent)."""
    query = select(buckets.c.state, func.count()).group_by(buckets.c.state)
    with engine.connect() as connection:
        return {state: int(count) for state, count in connection.execute(query)}


def _hour_of(engine: Engine) -> object:
    if engine.dialect.name in ("mysql", "mariadb"):
        return func.date_format(logs.c.created_at, "%Y-%m-%d %H:00:00")
    return func.strftime("%Y-%m-%d %H:00:00", logs.c.created_at)


def log_volume(engine: Engine, bucket: str, hours: int, now: datetime | None = None) -> list[Count]:
    """Returns a bucket's log records stored per hour over the last `hours` (zeros included).

    Counted under the bucket's name and the names merged into it.
    """
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0) + HOUR
    start = end - hours * HOUR
    hour = _hour_of(engine).label("hour")  # type: ignore[attr-defined]
    with engine.connect() as connection:
        names = names_designating(connection, bucket)
        query = (
            select(hour, func.count())
            .where(logs.c.name.in_(names), logs.c.created_at >= start)
            .group_by(hour)
        )
        found = {str(slot): int(count) for slot, count in connection.execute(query)}
    slots = [start + index * HOUR for index in range(hours)]
    return [Count(slot, found.get(f"{slot:%Y-%m-%d %H:00:00}", 0)) for slot in slots]

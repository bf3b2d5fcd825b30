"""The operator API's reads as functions over the database, each answering a pydantic model.

The routes (`routes.py`), the CLI (through the routes) and the console call these. Lists are
newest first and paged by an opaque `cursor` (the previous page's `next_cursor`); every
filter given must hold. The notifier's and analyst's tables are only read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, Select, Table, and_, case, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from rbr_registrar.domain import BucketRow
from rbr_registrar.merges import BucketMerges, Lineage
from rbr_registrar.models import BucketPage, BucketView, S3View
from rbr_registrar.operator.views import (
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertSummary,
    AlertView,
    AnalysisFilter,
    AnalysisPage,
    AnalysisSummary,
    AnalysisView,
    AttemptView,
    BucketFilter,
    ChannelView,
    DeliveryView,
    LogEntry,
    LogFilter,
    LogPage,
    StatusEntry,
    StatusHistoryPage,
)
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.aliases import names_designating
from rbr_runtime.db.tables import (
    alerts,
    bucket_status_history,
    log_analysis,
    logs,
    notifications,
    notifier_deliveries,
)
from rbr_schemas import BucketState, DeliveryMode

LOG_CHARS_IN_LISTS = 4000
TEXT_SEARCH_RANGE = timedelta(hours=24)
"""What a text search without a time range covers: the last day (not every record stored)."""
STATEMENT_TIMEOUT_ERRORS = (1969, 3024)
"""MariaDB's max_statement_time exceeded, MySQL's max_execution_time exceeded."""
CURSOR_SEPARATOR = "~"


class BadCursor(ValueError):
    """A cursor this API did not give (or from another list)."""

    def __init__(self) -> None:
        super().__init__("cursor is not one this list gave: pass a next_cursor unchanged")


class SearchTooSlow(Exception):
    """A search ran past its time limit and was stopped by the database."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s: narrow it by bucket or time "
            "(since, until), or by event type, source address or username"
        )


# -- cursors ----------------------------------------------------------------------------------


def id_cursor(cursor: str | None) -> int | None:
    """Returns the id an id cursor continues below.

    Raises:
        BadCursor: not an id cursor.
    """
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 20:
        raise BadCursor
    return int(cursor)


def time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """Returns the (time, id) a time cursor continues below.

    Raises:
        BadCursor: not a time cursor.
    """
    if cursor is None:
        return None
    when, _, row_id = cursor.rpartition(CURSOR_SEPARATOR)
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        raise BadCursor from None
    if not row_id.isdigit() or at.tzinfo is None:
        raise BadCursor
    return at, int(row_id)


def make_time_cursor(at: datetime, row_id: int) -> str:
    """Returns the cursor of a (time, id) position."""
    return f"{at.isoformat()}{CURSOR_SEPARATOR}{row_id}"


def _below(time_column: Any, id_column: Any, position: tuple[datetime, int]) -> ColumnElement[bool]:
    at, row_id = position
    return or_(time_column < at, and_(time_column == at, id_column < row_id))


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches: ColumnElement[bool] = column.like(f"%{escaped}%", escape="\\")
    return matches


# -- buckets ----------------------------------------------------------------------------------


def bucket_view(row: BucketRow, lineage: Lineage | None = None) -> BucketView:
    """Returns what operators see of a bucket (never its token)."""
    s3 = row.s3
    lineage = lineage or Lineage()
    return BucketView(
        id=row.id,
        name=row.name,
        state=BucketState(row.state),
        delivery_mode=DeliveryMode(row.delivery_mode),
        delivery_mode_pinned=row.delivery_mode_pinned,
        ip_address=row.ip_address,
        port=row.port,
        tls_cert_sha256=row.tls_cert_sha256,
        operating_system=row.operating_system,
        metrics=row.metrics,
        s3=S3View(bucket_name=s3.bucket_name, region=s3.region, prefix=s3.prefix) if s3 else None,
        version=row.version,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
        approved_at=row.approved_at,
        last_seen=row.last_seen,
        last_status_at=row.last_status_at,
        last_reachable=row.last_reachable,
        last_error_class=row.last_error_class,
        last_latency_ms=row.last_latency_ms,
        replaces=lineage.replaces,
        aliases=lineage.aliases,
    )


def bucket_page(
    store: BucketRepository,
    merges: BucketMerges,
    where: BucketFilter,
    after: str | None,
    limit: int,
) -> BucketPage:
    """Returns a page of buckets by name (`after`: the name to continue after)."""
    rows, total = store.list_buckets(where, after, limit)
    lineages = merges.lineages(rows)
    return BucketPage(
        buckets=[bucket_view(row, lineages[row.id]) for row in rows],
        next_after=rows[-1].name if len(rows) == limit else None,
        total=total,
    )


def status_history(
    engine: Engine, bucket: str, cursor: str | None, limit: int, since: datetime | None = None
) -> StatusHistoryPage:
    """Returns a bucket's poll outcomes, newest first (kept for the retention period)."""
    history = bucket_status_history.c
    query = (
        select(bucket_status_history)
        .where(history.name == bucket)
        .order_by(history.polled_at.desc(), history.id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(history.polled_at >= since)
    position = time_cursor(cursor)
    if position is not None:
        query = query.where(_below(history.polled_at, history.id, position))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return StatusHistoryPage(
        bucket=bucket,
        statuses=[
            StatusEntry(
                polled_at=row.polled_at,
                reachable=row.reachable,
                error_class=row.error_class,
                latency_ms=row.latency_ms,
            )
            for row in rows
        ],
        next_cursor=make_time_cursor(rows[-1].polled_at, rows[-1].id)
        if len(rows) == limit
        else None,
    )


# -- logs -------------------------------------------------------------------------------------


def _log_conditions(where: LogFilter, names: list[str] | None) -> list[ColumnElement[bool]]:
    """The search's conditions; `names` are those the bucket filter designates (or None)."""
    c = logs.c
    conditions: list[ColumnElement[bool]] = []
    if names is not None:
        conditions.append(c.name.in_(names))
    exact = (
        (c.event_type, where.event_type),
        (c.source_ip, where.source_ip),
        (c.username, where.username),
    )
    conditions.extend(column == value for column, value in exact if value is not None)
    if where.since is not None:
        conditions.append(c.created_at >= where.since)
    if where.until is not None:
        conditions.append(c.created_at < where.until)
    if where.command:
        conditions.append(_contains(c.command, where.command))
    if where.text:
        conditions.append(_contains(c.log, where.text))
    return conditions


def bounded_search(where: LogFilter, now: datetime) -> tuple[LogFilter, str | None]:
    """Limits a text search without a time range to the last day; returns it and a note.

    A substring of the command or the raw record matches no index: over every record stored
    it reads the whole table. Given a time range (any `since` or `until`), the search is as
    asked.
    """
    if not (where.text or where.command) or where.since is not None or where.until is not None:
        return where, None
    narrowed = where.model_copy(update={"since": now - TEXT_SEARCH_RANGE})
    note = (
        "a text search without a time range covers the last 24 hours: "
        "give since (and until) to search further back"
    )
    return narrowed, note


def search_logs(
    engine: Engine,
    where: LogFilter,
    cursor: str | None,
    limit: int,
    *,
    timeout: float | None = None,
) -> LogPage:
    """Returns the log records matching every filter, newest stored first.

    Exact filters (bucket, event type, source address, username) and the time range use
    indexes; `command` and `text` match substrings of what those leave. On MariaDB and MySQL
    the search is stopped after `timeout` seconds. A bucket's records are found under its
    own name and under the names merged into it (an alias finds the same).

    Raises:
        SearchTooSlow: the search ran past `timeout`.
        BadCursor: a cursor this list did not give.
    """
    c = logs.c
    position = time_cursor(cursor)
    with engine.connect() as connection:
        names = None if where.bucket is None else names_designating(connection, where.bucket)
        query = (
            select(logs)
            .where(*_log_conditions(where, names))
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        if position is not None:
            query = query.where(_below(c.created_at, c.id, position))
        rows = rows_within(connection, query, timeout)
    return LogPage(
        logs=[_log_entry(row) for row in rows],
        next_cursor=make_time_cursor(rows[-1].created_at, rows[-1].id)
        if len(rows) == limit
        else None,
        since=where.since,
    )


def rows_within(connection: Connection, query: Select[Any], timeout: float | None) -> list[Any]:
    """Runs a read with the session's statement time limit set to `timeout` (MariaDB, MySQL).

    The limit is put back to the server's default afterwards: the connection returns to the
    pool and serves other reads.
    """
    if not timeout or connection.dialect.name not in ("mysql", "mariadb"):
        return list(connection.execute(query).all())
    mariadb = bool(getattr(connection.dialect, "is_mariadb", False))
    variable = "max_statement_time" if mariadb else "max_execution_time"
    value = f"{timeout:.6f}" if mariadb else str(max(1, round(timeout * 1000)))
    connection.exec_driver_sql(f"SET SESSION {variable} = {value}")
    try:
        return list(connection.execute(query).all())
    except OperationalError as error:
        code = error.orig.args[0] if error.orig is not None and error.orig.args else None
        if code in STATEMENT_TIMEOUT_ERRORS:
            raise SearchTooSlow(timeout) from None
        raise
    finally:
        connection.exec_driver_sql(f"SET SESSION {variable} = DEFAULT")


def _log_entry(row: Any) -> LogEntry:
    return LogEntry(
        id=row.id,
        bucket=row.name,
        created_at=row.created_at,
        event_time=row.event_time,
        log_format=row.log_format,
        event_type=row.event_type,
        source_ip=row.source_ip,
        source_port=row.source_port,
        username=row.username,
        command=row.command,
        url=row.url,
        message=row.message,
        log=row.log[:LOG_CHARS_IN_LISTS],
        log_size=row.log_size,
    )


# -- analyses ---------------------------------------------------------------------------------


def _counted(query: Select[Any], conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    return query.where(*conditions) if conditions else query


def _newest_first(
    engine: Engine,
    query: Select[Any],
    table: Table,
    conditions: Sequence[ColumnElement[bool]],
    *,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Row[Any]], int, str | None]:
    """Returns one page of a table by descending id, the matching total and the next cursor.

    Raises:
        BadCursor: the cursor is not an id cursor.
    """
    query = query.where(*conditions).order_by(table.c.id.desc()).limit(limit)
    below = id_cursor(cursor)
    if below is not None:
        query = query.where(table.c.id < below)
    count = _counted(select(func.count()).select_from(table), conditions)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        total = int(connection.execute(count).scalar_one())
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return rows, total, next_cursor


def analyses_page(
    engine: Engine, where: AnalysisFilter, cursor: str | None, limit: int
) -> AnalysisPage:
    """Returns analyses newest first, with how many findings and indicators each has."""
    c = log_analysis.c
    conditions: list[ColumnElement[bool]] = []
    if where.bucket is not None:
        conditions.append(c.name == where.bucket)
    if where.severity is not None:
        conditions.append(c.severity == where.severity)
    if where.since is not None:
        conditions.append(c.window_start >= where.since)
    if where.until is not None:
        conditions.append(c.window_start < where.until)
    columns = [
        c.id,
        c.name,
        c.window_start,
        c.window_end,
        c.severity,
        c.analyser,
        c.model,
        c.findings,
        c.iocs,
        c.log_rows,
        c.created_at,
    ]
    rows, total, next_cursor = _newest_first(
        engine, select(*columns), log_analysis, conditions, cursor=cursor, limit=limit
    )
    return AnalysisPage(
        analyses=[
            AnalysisSummary(
                id=row.id,
                bucket=row.name,
                window_start=row.window_start,
                window_end=row.window_end,
                severity=row.severity,
                analyser=row.analyser,
                model=row.model,
                findings=len(row.findings or []),
                iocs=len(row.iocs or []),
                log_rows=row.log_rows,
                created_at=row.created_at,
            )
            for row in rows
        ],
        next_cursor=next_cursor,
        total=total,
    )


def analysis(engine: Engine, analysis_id: int) -> AnalysisView | None:
    """Returns one analysis whole, or None."""
    with engine.connect() as connection:
        row = connection.execute(
            select(log_analysis).where(log_analysis.c.id == analysis_id)
        ).first()
    if row is None:
        return None
    return AnalysisView(
        id=row.id,
        bucket=row.name,
        ip_address=row.ip_address,
        window_start=row.window_start,
        window_end=row.window_end,
        severity=row.severity,
        analyser=row.analyser,
        model=row.model,
        fallback_reason=row.fallback_reason,
        analysis=row.log_analysis,
        findings=list(row.findings or []),
        iocs=list(row.iocs or []),
        recommended_actions=list(row.recommended_actions or []),
        log_rows=row.log_rows,
        created_at=row.created_at,
    )


# -- alerts -----------------------------------------------------------------------------------


def alerts_page(engine: Engine, where: AlertFilter, cursor: str | None, limit: int) -> AlertPage:
    """Returns alert occurrences newest first."""
    c = alerts.c
    exact = (
        (c.state, where.state),
        (c.bucket, where.bucket),
        (c.severity, where.severity),
        (c.type, where.type),
        (c.dedupe_key, where.dedupe_key),
    )
    conditions = [column == value for column, value in exact if value is not None]
    if where.since is not None:
        conditions.append(c.fired_at >= where.since)
    if where.until is not None:
        conditions.append(c.fired_at < where.until)
    rows, total, next_cursor = _newest_first(
        engine, select(alerts), alerts, conditions, cursor=cursor, limit=limit
    )
    return AlertPage(
        alerts=[
            AlertSummary(
                alert_id=row.alert_id,
                dedupe_key=row.dedupe_key,
                type=row.type,
                severity=row.severity,
                state=row.state,
                bucket=row.bucket,
                title=row.title,
                fired_at=row.fired_at,
                repeats=row.repeats,
                acknowledged_by=row.acknowledged_by,
                resolved_at=row.resolved_at,
            )
            for row in rows
        ],
        next_cursor=next_cursor,
        total=total,
    )


def alert_history(row: Any) -> list[AlertEvent]:
    """Returns an occurrence's life as events in time order (from its row)."""
    events = [AlertEvent(at=row.fired_at, event="fired", detail=row.source)]
    if row.repeats:
        events.append(
            AlertEvent(
                at=row.last_seen_at or row.fired_at,
                event="repeated",
                detail=f"fired again {row.repeats} time(s); last at this time",
            )
        )
    if row.acknowledged_at is not None:
        events.append(
            AlertEvent(at=row.acknowledged_at, event="acknowledged", detail=row.acknowledged_by)
        )
    if row.resolved_at is not None:
        events.append(AlertEvent(at=row.resolved_at, event="resolved", detail=row.resolved_by))
    return sorted(events, key=lambda event: event.at)


def alert(engine: Engine, alert_id: str) -> AlertView | None:
    """Returns one alert occurrence with its text, history, deliveries and attempts."""
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
        if row is None:
            return None
        deliveries = connection.execute(
            select(notifier_deliveries)
            .where(notifier_deliveries.c.alert_id == alert_id)
            .order_by(notifier_deliveries.c.id)
        ).all()
        attempts = connection.execute(
            select(notifications)
            .where(notifications.c.alert_id == alert_id)
            .order_by(notifications.c.id)
        ).all()
        others = connection.execute(
            select(alerts.c.alert_id)
            .where(alerts.c.dedupe_key == row.dedupe_key, alerts.c.alert_id != alert_id)
            .order_by(alerts.c.id.desc())
            .limit(50)
        ).scalars()
        other_ids = list(others)
    return AlertView(
        alert_id=row.alert_id,
        dedupe_key=row.dedupe_key,
        type=row.type,
        severity=row.severity,
        state=row.state,
        bucket=row.bucket,
        title=row.title,
        detail=row.detail,
        source=row.source,
        context=dict(row.context or {}),
        fired_at=row.fired_at,
        last_seen_at=row.last_seen_at,
        repeats=row.repeats,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        history=alert_history(row),
        deliveries=[
            DeliveryView(
                channel=d.channel,
                kind=d.kind,
                state=d.state,
                attempts=d.attempts,
                detail=d.detail,
                created_at=d.created_at,
                updated_at=d.updated_at,
            )
            for d in deliveries
        ],
        attempts=[
            AttemptView(
                at=a.created_at,
                channel=a.channel,
                kind=a.kind,
                attempt=a.attempt,
                status=a.status,
                http_status=a.http_status,
                error=a.error,
            )
            for a in attempts
        ],
        other_occurrences=other_ids,
    )


# -- channels ---------------------------------------------------------------------------------

FAILED_DELIVERY_STATES = ("failed", "rejected")


def channels(engine: Engine, now: datetime) -> list[ChannelView]:
    """Returns every channel the notifier has delivered to, with its last 24 hours.

    The channels file is the notifier's; a channel that never had a delivery is not listed
    (`rbr notify test --list` on the notifier's host lists the configured ones).
    """
    d = notifier_deliveries.c
    day_ago = now - timedelta(days=1)
    recent = d.created_at >= day_ago
    query = (
        select(
            d.channel,
            func.max(d.id).label("last_id"),
            func.sum(case((and_(recent, d.state == "sent"), 1), else_=0)).label("sent"),
            func.sum(case((and_(recent, d.state.in_(FAILED_DELIVERY_STATES)), 1), else_=0)).label(
                "failed"
            ),
        )
        .group_by(d.channel)
        .order_by(d.channel)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        last = {
            row.id: row
            for row in connection.execute(
                select(d.id, d.state, d.updated_at).where(d.id.in_([r.last_id for r in rows]))
            )
        }
    return [
        ChannelView(
            channel=row.channel,
            last_delivery_at=last[row.last_id].updated_at if row.last_id in last else None,
            last_state=last[row.last_id].state if row.last_id in last else None,
            sent_24h=int(row.sent or 0),
            failed_24h=int(row.failed or 0),
        )
        for row in rows
    ]

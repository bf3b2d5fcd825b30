"""The operator API's routes beyond the bucket routes of `api.py`: reads, bulk changes, audit.

Thin: each checks the caller's role, turns query parameters into a filter (422 on a bad
one, naming the field) and calls `queries`, `actions` or `audit`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from rbr_registrar import errors
from rbr_registrar.merges import BucketMerges
from rbr_registrar.models import CHANNEL_NAME_PATTERN, ErrorResponse, normalise_ip
from rbr_registrar.operator import audit, queries
from rbr_registrar.operator.actions import (
    AlertRefused,
    BucketActions,
    TooMany,
    acknowledge_alert,
    queue_channel_test,
    resolve_alert,
)
from rbr_registrar.operator.auth import Actor, Role, require_role
from rbr_registrar.operator.topics import TopicsReader
from rbr_registrar.operator.views import (
    AlertChange,
    AlertFilter,
    AlertPage,
    AlertView,
    AnalysisFilter,
    AnalysisPage,
    AnalysisView,
    AuditFilter,
    AuditPage,
    BulkAction,
    BulkOutcome,
    BulkRequest,
    BulkResponse,
    ChannelTest,
    ChannelView,
    ExportFormat,
    LogFilter,
    LogPage,
    StatusHistoryPage,
    TopicsView,
)
from rbr_registrar.store import BucketRepository
from rbr_runtime.settings import CommonSettings
from rbr_schemas import Severity, utcnow
from rbr_schemas.events import BUCKET_NAME_PATTERN

PageT = TypeVar("PageT")
TOPICS_TIMEOUT = 20.0
"""Seconds `GET /api/v1/topics` waits for the broker's answers."""

Viewer = Annotated[Actor, Depends(require_role(Role.VIEWER))]
Operator = Annotated[Actor, Depends(require_role(Role.OPERATOR))]
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Entries per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=100, description="The previous page's `next_cursor`, to continue."),
]
Since = Annotated[datetime | None, Query(description="From this time on (ISO 8601; UTC if bare).")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601; UTC if bare).")]
BucketQuery = Annotated[
    str | None,
    Query(pattern=BUCKET_NAME_PATTERN, max_length=128, description="Only this bucket's."),
]
ShortText = Annotated[str | None, Query(min_length=1, max_length=255)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Credentials missing."},
    403: {"model": ErrorResponse, "description": "Credentials not accepted, or role too low."},
    422: {"model": ErrorResponse, "description": "A parameter is invalid (named in errors)."},
    503: {
        "model": ErrorResponse,
        "description": "Database unavailable (retry), or a log search ran too long (narrow it).",
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such entry."}
}


class AlertStateFilter(StrEnum):
    """The states of an alert occurrence."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass
class OperatorContext:
    """What the operator routes work with."""

    engine: Engine
    store: BucketRepository
    merges: BucketMerges
    settings: CommonSettings
    on_commit: Callable[[], None]
    """Wakes the outbox relay after a change queued messages."""
    log_search_timeout: float = 0.0
    """Seconds a log search may run (MariaDB, MySQL); 0: no limit."""


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _time_range(since: datetime | None, until: datetime | None) -> tuple[datetime | None, ...]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise errors.FieldErrors([("until", "must be later than since")])
    return since, until


def _paged(read: Callable[[], PageT]) -> PageT:
    try:
        return read()
    except queries.BadCursor as error:
        raise errors.FieldErrors([("cursor", str(error))]) from None
    except queries.SearchTooSlow as error:
        raise HTTPException(503, str(error)) from None


def operator_routes(context: OperatorContext) -> list[APIRouter]:
    """Returns the routers of the operator reads, bulk changes, alerts, channels and audit."""
    return [
        _bucket_routes(context),
        _log_routes(context),
        _analysis_routes(context),
        _alert_routes(context),
        _channel_routes(context),
        _topic_routes(context),
        _audit_routes(context),
    ]


def _router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], responses=ERRORS)


# -- buckets ----------------------------------------------------------------------------------


def _bucket_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/buckets", "operators")
    actions = BucketActions(context.store, context.merges, context.on_commit)

    @router.get("/{name}/status-history", response_model=StatusHistoryPage)
    def status_history(
        _: Viewer,
        name: Annotated[str, Path(pattern=BUCKET_NAME_PATTERN, max_length=128)],
        since: Since = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> StatusHistoryPage:
        """A bucket's poll outcomes, newest first (kept for RBR_STATUS_HISTORY_RETENTION)."""
        return _paged(
            lambda: queries.status_history(context.engine, name, cursor, limit, _utc(since))
        )

    @router.post("/bulk", response_model=BulkResponse)
    def bulk(actor: Operator, request: BulkRequest) -> BulkResponse:
        """Approves, disables, removes or merges buckets named, or matching a filter.

        Give `names` or `filter` (not both); `merge` also needs `into`, the bucket they fold
        into. Each bucket is changed in its own transaction and gets its own outcome and
        audit entry: one unknown name does not stop the others.
        """
        if (request.names is None) == (request.filter is None):
            raise errors.FieldErrors([("names", "give either names or filter (one of them)")])
        if request.action is BulkAction.MERGE and request.into is None:
            raise errors.FieldErrors([("into", "is required to merge: the bucket that stays")])
        names = request.names
        if names is None:
            selected = request.filter
            assert selected is not None
            if not (selected.state or selected.mode or selected.prefix):
                message = "must select by state, mode or a non-empty prefix (send names for all)"
                raise errors.FieldErrors([("filter", message)])
            try:
                names = actions.names_for(selected)
            except TooMany as error:
                raise errors.FieldErrors([("filter", str(error))]) from None
        outcomes = actions.apply(actor, request.action, names, request.into)
        return BulkResponse(
            action=request.action,
            outcomes=[BulkOutcome(**vars(outcome)) for outcome in outcomes],
            counts=dict(Counter(outcome.outcome for outcome in outcomes)),
        )

    return router


# -- logs -------------------------------------------------------------------------------------


def _log_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/logs", "operators: reads")

    @router.get("", response_model=LogPage)
    def search_logs(  # noqa: PLR0917 - the filters
        _: Viewer,
        bucket: BucketQuery = None,
        since: Since = None,
        until: Until = None,
        event_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        source_ip: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        username: ShortText = None,
        command: ShortText = None,
        text: ShortText = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> LogPage:
        """Searches parsed log records, newest stored first.

        By bucket, time stored (`since` inclusive, `until` exclusive), event type, source
        address, username (exact), and substrings of the command or of the raw record.
        Records are attacker-controlled text: escape them when rendering.

        A search by `command` or `text` without `since` or `until` covers the last 24
        hours (the answer's `since` and `notice` say so). A search that runs longer than
        RBR_LOG_SEARCH_TIMEOUT is stopped: 503, asking to narrow it by bucket or time.
        """
        since, until = _time_range(since, until)
        if source_ip is not None:
            try:
                source_ip = normalise_ip(source_ip)
            except ValueError as error:
                raise errors.FieldErrors([("source_ip", str(error))]) from None
        where = LogFilter(
            bucket=bucket,
            since=since,
            until=until,
            event_type=event_type,
            source_ip=source_ip,
            username=username,
            command=command,
            text=text,
        )
        where, notice = queries.bounded_search(where, utcnow())
        page = _paged(
            lambda: queries.search_logs(
                context.engine, where, cursor, limit, timeout=context.log_search_timeout
            )
        )
        page.notice = notice
        return page

    return router


# -- analyses ---------------------------------------------------------------------------------


def _analysis_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/analyses", "operators: reads")

    @router.get("", response_model=AnalysisPage)
    def list_analyses(  # noqa: PLR0917 - the filters
        _: Viewer,
        bucket: BucketQuery = None,
        severity: Severity | None = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> AnalysisPage:
        """Lists analyses newest first (window, severity, counts of findings and indicators)."""
        since, until = _time_range(since, until)
        where = AnalysisFilter(
            bucket=bucket,
            severity=severity.value if severity else None,
            since=since,
            until=until,
        )
        return _paged(lambda: queries.analyses_page(context.engine, where, cursor, limit))

    @router.get("/{analysis_id}", response_model=AnalysisView, responses=NOT_FOUND)
    def show_analysis(_: Viewer, analysis_id: Annotated[int, Path(ge=1)]) -> AnalysisView:
        """One analysis whole: text, findings, indicators, recommended actions."""
        found = queries.analysis(context.engine, analysis_id)
        if found is None:
            raise HTTPException(404, f"no analysis with id {analysis_id}")
        return found

    return router


# -- alerts -----------------------------------------------------------------------------------


AlertIdPath = Annotated[str, Path(min_length=1, max_length=64)]


def _alert_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/alerts", "operators: alerts")

    @router.get("", response_model=AlertPage)
    def list_alerts(  # noqa: PLR0917 - the filters
        _: Viewer,
        state: AlertStateFilter | None = None,
        bucket: BucketQuery = None,
        severity: Severity | None = None,
        type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        dedupe_key: ShortText = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> AlertPage:
        """Lists alert occurrences newest first."""
        since, until = _time_range(since, until)
        where = AlertFilter(
            state=state.value if state else None,
            bucket=bucket,
            severity=severity.value if severity else None,
            type=type,
            dedupe_key=dedupe_key,
            since=since,
            until=until,
        )
        return _paged(lambda: queries.alerts_page(context.engine, where, cursor, limit))

    @router.get("/{alert_id}", response_model=AlertView, responses=NOT_FOUND)
    def show_alert(_: Viewer, alert_id: AlertIdPath) -> AlertView:
        """One alert occurrence whole: text, history, deliveries and every send attempt."""
        found = queries.alert(context.engine, alert_id)
        if found is None:
            raise HTTPException(404, f"no alert with id {alert_id}")
        return found

    def change(apply: Callable[[], str], alert_id: str) -> AlertChange:
        try:
            outcome = apply()
        except AlertRefused as refused:
            raise HTTPException(refused.status, refused.message) from None
        if outcome == "queued":
            context.on_commit()
        return AlertChange(alert_id=alert_id, outcome=outcome)

    conflicts: dict[int | str, dict[str, Any]] = {
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The alert is resolved."},
    }

    @router.post("/{alert_id}/ack", response_model=AlertChange, responses=conflicts)
    def acknowledge(actor: Operator, alert_id: AlertIdPath) -> AlertChange:
        """Acknowledges a firing alert: it stays open but is not notified again."""
        return change(lambda: acknowledge_alert(context.engine, actor, alert_id), alert_id)

    @router.post("/{alert_id}/resolve", response_model=AlertChange, responses=conflicts)
    def resolve(actor: Operator, alert_id: AlertIdPath) -> AlertChange:
        """Resolves an open alert: a resolve event on `alerts` that the notifier applies.

        Answers `queued`; the notifier closes the alert and notifies its channels within
        seconds. Its producer fires it again if the condition still holds.
        """
        return change(lambda: resolve_alert(context.engine, actor, alert_id), alert_id)

    return router


# -- channels ---------------------------------------------------------------------------------


def _channel_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/channels", "operators: alerts")

    @router.get("", response_model=list[ChannelView])
    def list_channels(_: Viewer) -> list[ChannelView]:
        """The channels the notifier has delivered to, with their last 24 hours."""
        return queries.channels(context.engine, utcnow())

    @router.post("/{channel}/test", response_model=ChannelTest)
    def test(
        actor: Operator,
        channel: Annotated[str, Path(pattern=CHANNEL_NAME_PATTERN, max_length=128)],
    ) -> ChannelTest:
        """Sends a test alert to one channel through the notifier.

        The test goes on `alerts` addressed to that channel; the notifier sends it there
        only and records the delivery: `GET /api/v1/alerts/{alert_id}` shows how it went.
        """
        alert_id = queue_channel_test(context.engine, actor, channel)
        context.on_commit()
        return ChannelTest(channel=channel, alert_id=alert_id)

    return router


# -- topics -----------------------------------------------------------------------------------


def _topic_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/topics", "operators: reads")
    reader = TopicsReader(context.settings, TOPICS_TIMEOUT)

    @router.get("", response_model=TopicsView)
    def topics(_: Viewer) -> TopicsView:
        """Consumer lag per group and DLQ depth per topic (what the broker answers in 20 s).

        Read at most every 10 s: calls in between get the last answer.
        """
        return reader.read()

    return router


# -- audit ------------------------------------------------------------------------------------


def _audit_routes(context: OperatorContext) -> APIRouter:
    router = _router("/api/v1/audit", "operators: audit")

    def where(
        actor: ShortText, action: ShortText, since: datetime | None, until: datetime | None
    ) -> AuditFilter:
        since, until = _time_range(since, until)
        return AuditFilter(actor=actor, action=action, since=since, until=until)

    @router.get("", response_model=AuditPage)
    def read_audit(  # noqa: PLR0917 - the filters
        _: Operator,
        actor: ShortText = None,
        action: ShortText = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> AuditPage:
        """Every change operators made, newest first (actor, action, target, outcome)."""
        selected = where(actor, action, since, until)
        return _paged(
            lambda: audit.audit_page(context.engine, selected, queries.id_cursor(cursor), limit)
        )

    @router.get(
        "/export",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    )
    def export_audit(
        _: Admin,
        format: ExportFormat = ExportFormat.CSV,
        actor: ShortText = None,
        action: ShortText = None,
        since: Since = None,
        until: Until = None,
    ) -> StreamingResponse:
        """The whole audit log (or what the filters select) as CSV or JSON lines (admins)."""
        entries = audit.all_entries(context.engine, where(actor, action, since, until))
        if format is ExportFormat.CSV:
            body, media, name = audit.export_csv(entries), "text/csv", "audit.csv"
        else:
            body, media, name = (
                audit.export_json_lines(entries),
                "application/x-ndjson",
                "audit.jsonl",
            )
        return StreamingResponse(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router

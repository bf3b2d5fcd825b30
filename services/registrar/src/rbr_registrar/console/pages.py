"""The console's pages and forms: fleet, bucket, logs, analyses, alerts, intel, topics, audit, ...

Reads go through `rbr_registrar.operator.queries` (the operator API's own functions), changes
through `rbr_registrar.operator.actions`, which write the audit log with the user's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine

from rbr_registrar.console import charts, reads
from rbr_registrar.console.sessions import ConsoleSession
from rbr_registrar.console.web import (
    PREFIX,
    ConsoleParts,
    OperatorSession,
    PageSession,
    Parts,
    Refused,
    actor_of,
    back_to,
    check_role,
    render,
)
from rbr_registrar.operator import audit, queries
from rbr_registrar.operator.actions import (
    AlertRefused,
    BucketActions,
    acknowledge_alert,
    queue_channel_test,
    resolve_alert,
)
from rbr_registrar.operator.auth import Actor, Role
from rbr_registrar.operator.views import (
    AlertFilter,
    AnalysisFilter,
    AuditFilter,
    BucketFilter,
    BulkAction,
    LogFilter,
    LogPage,
)
from rbr_runtime.intel.overview import Period, bucket_techniques, overview
from rbr_schemas import BucketState, DeliveryMode
from rbr_schemas.events import BUCKET_NAME_PATTERN

PAGE_SIZE = 100
LOG_PAGE_SIZE = 50
HISTORY_DAYS = 7
VOLUME_HOURS = 48
ALERT_TABS = ("firing", "acknowledged", "resolved")
CONSOLE_ACTIONS = (BulkAction.APPROVE, BulkAction.DISABLE)
Text = Annotated[str | None, Query(max_length=255)]
NamePath = Annotated[str, Path(pattern=BUCKET_NAME_PATTERN, max_length=128)]


def _blank(value: str | None) -> str | None:
    """Empty form fields mean 'no filter'."""
    return value.strip() or None if value is not None else None


def _time(value: str | None, field: str) -> datetime | None:
    """Parses a datetime-local field (UTC); a bad one is refused with the field's name."""
    value = _blank(value)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(422, f"{field}: give a date and time like 2026-01-31T14:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filter(model: type[BaseModel], **values: Any) -> Any:
    """Builds a filter model; an invalid value is refused, naming the field."""
    try:
        return model(**values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise Refused(422, f"{field}: {first['msg']}") from None


def _paged(read: Any) -> Any:
    try:
        return read()
    except queries.BadCursor as error:
        raise Refused(422, str(error)) from None


def page_routes() -> APIRouter:
    """Returns the routes of every page and form."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    _fleet_routes(router)
    _bucket_routes(router)
    _log_routes(router)
    _analysis_routes(router)
    _alert_routes(router)
    _intel_routes(router)
    _topic_routes(router)
    _channel_routes(router)
    _audit_routes(router)
    return router


# -- fleet ------------------------------------------------------------------------------------


class FleetQuery(BaseModel):
    """The fleet table's filters and page."""

    state: str | None = Field(default=None, max_length=16)
    mode: str | None = Field(default=None, max_length=16)
    prefix: str | None = Field(default=None, max_length=128)
    after: str | None = Field(default=None, max_length=128)


class BucketsForm(BaseModel):
    """A bulk change from the fleet table (or a bucket's page)."""

    action: BulkAction
    names: list[str] = Field(default_factory=list, max_length=1000)
    csrf_token: str = ""
    back: str = f"{PREFIX}/"


def _fleet_routes(router: APIRouter) -> None:
    @router.get("/")
    def fleet(
        request: Request, session: PageSession, parts: Parts, q: Annotated[FleetQuery, Query()]
    ) -> HTMLResponse:
        state, mode, prefix = q.state, q.mode, q.prefix
        where = _filter(BucketFilter, state=_blank(state), mode=_blank(mode), prefix=_blank(prefix))
        page = queries.bucket_page(parts.store, parts.merges, where, _blank(q.after), PAGE_SIZE)
        counts = reads.bucket_counts(parts.engine)
        return render(
            request,
            "fleet.html",
            session,
            page=page,
            counts=counts,
            total_all=sum(counts.values()),
            states=[s.value for s in BucketState],
            modes=[m.value for m in DeliveryMode],
            where=where,
            query={"state": state or "", "mode": mode or "", "prefix": prefix or ""},
        )

    @router.post("/buckets/action")
    def change_buckets(
        request: Request,
        session: OperatorSession,
        parts: Parts,
        form: Annotated[BucketsForm, Form()],
    ) -> Response:
        if form.action not in CONSOLE_ACTIONS:
            raise Refused(422, "the console approves and disables; use the API for the rest")
        if not form.names:
            return back_to(request, form.back, "nothing selected: tick the buckets first")
        actions = BucketActions(parts.store, parts.merges, parts.on_commit)
        outcomes = actions.apply(actor_of(session), form.action, form.names)
        tally = Counter(outcome.outcome for outcome in outcomes)
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(tally.items()))
        return back_to(request, form.back, f"{form.action.value}: {summary}")


# -- one bucket -------------------------------------------------------------------------------


def _bucket_routes(router: APIRouter) -> None:
    @router.get("/buckets/{name}")
    def bucket(request: Request, session: PageSession, parts: Parts, name: NamePath) -> Response:
        row = parts.store.find_by_name(name)
        if row is None:
            merged_into = parts.merges.merged_into(name)
            hint = f": it was merged into {merged_into}" if merged_into else ""
            raise Refused(404, f"no bucket named {name}{hint}")
        view = queries.bucket_view(row, parts.merges.lineages([row])[row.id])
        now = datetime.now(UTC)
        history = queries.status_history(
            parts.engine, name, None, 1000, since=now - timedelta(days=HISTORY_DAYS)
        )
        polls = [
            charts.Poll(entry.polled_at, entry.reachable, entry.latency_ms)
            for entry in history.statuses
        ]
        return render(
            request,
            "bucket.html",
            session,
            bucket=view,
            status_chart=charts.status_chart(polls),
            volume_chart=charts.volume_chart(reads.log_volume(parts.engine, name, VOLUME_HOURS)),
            unreachable=sum(1 for poll in polls if not poll.reachable),
            polls=len(polls),
            logs=queries.search_logs(parts.engine, LogFilter(bucket=name), None, 20).logs,
            analyses=queries.analyses_page(
                parts.engine, AnalysisFilter(bucket=name), None, 10
            ).analyses,
            alerts=queries.alerts_page(parts.engine, AlertFilter(bucket=name), None, 10).alerts,
            techniques=bucket_techniques(parts.engine, name),
        )


# -- logs -------------------------------------------------------------------------------------


class LogQuery(BaseModel):
    """The log search's filters (empty fields: no filter) and page."""

    bucket: str | None = Field(default=None, max_length=128)
    since: str | None = Field(default=None, max_length=32)
    until: str | None = Field(default=None, max_length=32)
    event_type: str | None = Field(default=None, max_length=64)
    source_ip: str | None = Field(default=None, max_length=45)
    username: str | None = Field(default=None, max_length=255)
    command: str | None = Field(default=None, max_length=255)
    text: str | None = Field(default=None, max_length=255)
    cursor: str | None = Field(default=None, max_length=100)


def _log_routes(router: APIRouter) -> None:
    @router.get("/logs")
    def log_search(
        request: Request, session: PageSession, parts: Parts, q: Annotated[LogQuery, Query()]
    ) -> HTMLResponse:
        since, until, cursor = q.since, q.until, q.cursor
        fields = {
            "bucket": q.bucket,
            "event_type": q.event_type,
            "source_ip": q.source_ip,
            "username": q.username,
            "command": q.command,
            "text": q.text,
        }
        where = _filter(
            LogFilter,
            since=_time(since, "since"),
            until=_time(until, "until"),
            **{key: _blank(value) for key, value in fields.items()},
        )
        now = datetime.now(UTC)
        where, notice = queries.bounded_search(where, now)
        query = {**fields, "since": since, "until": until}
        problem = None
        try:
            page = _paged(
                lambda: queries.search_logs(
                    parts.engine,
                    where,
                    cursor,
                    LOG_PAGE_SIZE,
                    timeout=parts.settings.log_search_timeout,
                )
            )
        except queries.SearchTooSlow as error:
            page, problem = LogPage(logs=[], next_cursor=None), str(error)
        return render(
            request,
            "logs.html",
            session,
            page=page,
            query={key: value or "" for key, value in query.items()},
            searched=any(value for value in query.values()),
            notice=notice,
            widen=_wider(query, now) if notice else [],
            problem=problem,
        )


WIDER_RANGES = (("the last 7 days", timedelta(days=7)), ("the last 30 days", timedelta(days=30)))


def _wider(query: dict[str, str | None], now: datetime) -> list[tuple[str, str]]:
    """Links to the same search over longer ranges (a text search defaulted to 24 hours)."""
    kept = {key: value for key, value in query.items() if value and key != "since"}
    links = []
    for label, length in WIDER_RANGES:
        since = (now - length).strftime("%Y-%m-%dT%H:%M")
        links.append((label, f"{PREFIX}/logs?{urlencode({**kept, 'since': since})}"))
    return links


# -- analyses ---------------------------------------------------------------------------------


class ListQuery(BaseModel):
    """Filters of the analyses, alerts and audit lists, and the page."""

    bucket: str | None = Field(default=None, max_length=128)
    severity: str | None = Field(default=None, max_length=16)
    tab: str = Field(default="firing", max_length=16)
    actor: str | None = Field(default=None, max_length=255)
    action: str | None = Field(default=None, max_length=64)
    cursor: str | None = Field(default=None, max_length=100)


def _analysis_routes(router: APIRouter) -> None:
    @router.get("/analyses")
    def analyses(
        request: Request, session: PageSession, parts: Parts, q: Annotated[ListQuery, Query()]
    ) -> HTMLResponse:
        bucket, severity, cursor = q.bucket, q.severity, q.cursor
        where = _filter(AnalysisFilter, bucket=_blank(bucket), severity=_blank(severity))
        page = _paged(lambda: queries.analyses_page(parts.engine, where, cursor, PAGE_SIZE))
        return render(
            request,
            "analyses.html",
            session,
            page=page,
            query={"bucket": bucket or "", "severity": severity or ""},
        )

    @router.get("/analyses/{analysis_id}")
    def analysis(
        request: Request,
        session: PageSession,
        parts: Parts,
        analysis_id: Annotated[int, Path(ge=1, le=2**62)],
    ) -> HTMLResponse:
        found = queries.analysis(parts.engine, analysis_id)
        if found is None:
            raise Refused(404, f"no analysis with id {analysis_id}")
        return render(request, "analysis.html", session, analysis=found)


# -- alerts -----------------------------------------------------------------------------------


def _alert_routes(router: APIRouter) -> None:
    @router.get("/alerts")
    def alerts(
        request: Request, session: PageSession, parts: Parts, q: Annotated[ListQuery, Query()]
    ) -> HTMLResponse:
        tab, bucket, cursor = q.tab, q.bucket, q.cursor
        state = tab if tab in ALERT_TABS else "firing"
        where = _filter(AlertFilter, state=state, bucket=_blank(bucket))
        page = _paged(lambda: queries.alerts_page(parts.engine, where, cursor, PAGE_SIZE))
        return render(
            request,
            "alerts.html",
            session,
            page=page,
            tab=state,
            tabs=ALERT_TABS,
            query={"bucket": bucket or ""},
        )

    @router.get("/alerts/{alert_id}")
    def alert(
        request: Request,
        session: PageSession,
        parts: Parts,
        alert_id: Annotated[str, Path(max_length=64)],
    ) -> HTMLResponse:
        found = queries.alert(parts.engine, alert_id)
        if found is None:
            raise Refused(
                404, "no such alert (retention may have deleted it)"
            )  # no echo: a link's text
        return render(request, "alert.html", session, alert=found)

    def change(
        request: Request,
        parts: ConsoleParts,
        session: ConsoleSession,
        *,
        apply: Callable[[Engine, Actor, str], str],
        alert_id: str,
        back: str,
    ) -> Response:
        try:
            outcome = apply(parts.engine, actor_of(session), alert_id)
        except AlertRefused as refused:
            raise Refused(refused.status, refused.message) from None
        return back_to(request, back, f"alert {alert_id}: {outcome}")

    @router.post("/alerts/{alert_id}/acknowledge")
    def acknowledge(
        request: Request,
        session: OperatorSession,
        parts: Parts,
        alert_id: Annotated[str, Path(max_length=64)],
        back: Annotated[str, Form(max_length=2048)] = f"{PREFIX}/alerts",
    ) -> Response:
        return change(
            request, parts, session, apply=acknowledge_alert, alert_id=alert_id, back=back
        )

    @router.post("/alerts/{alert_id}/resolve")
    def resolve(
        request: Request,
        session: OperatorSession,
        parts: Parts,
        alert_id: Annotated[str, Path(max_length=64)],
        back: Annotated[str, Form(max_length=2048)] = f"{PREFIX}/alerts",
    ) -> Response:
        answer = change(request, parts, session, apply=resolve_alert, alert_id=alert_id, back=back)
        parts.on_commit()
        return answer


# -- threat intelligence ----------------------------------------------------------------------

PERIOD_NAMES = {Period.DAY: "24 hours", Period.WEEK: "7 days", Period.MONTH: "30 days"}


def _intel_routes(router: APIRouter) -> None:
    @router.get("/intel")
    def intel(
        request: Request,
        session: PageSession,
        parts: Parts,
        period: Annotated[str, Query(max_length=8)] = Period.DAY.value,
    ) -> HTMLResponse:
        if period not in PERIOD_NAMES:
            raise Refused(422, "period: one of 24h, 7d, 30d")
        return render(
            request,
            "intel.html",
            session,
            intel=overview(parts.engine, Period(period), datetime.now(UTC)),
            periods=list(Period),
            period_names=PERIOD_NAMES,
        )


# -- topics -----------------------------------------------------------------------------------


def _topic_routes(router: APIRouter) -> None:
    @router.get("/topics")
    def topics(request: Request, session: PageSession) -> HTMLResponse:
        return render(request, "topics.html", session)

    @router.get("/topics/table")
    def topics_table(request: Request, session: PageSession, parts: Parts) -> HTMLResponse:
        view = parts.topics.read()
        return render(request, "_topics_table.html", session, view=view)


# -- channels ---------------------------------------------------------------------------------


CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _channel_routes(router: APIRouter) -> None:
    @router.get("/channels")
    def channel_list(request: Request, session: PageSession, parts: Parts) -> HTMLResponse:
        found = queries.channels(parts.engine, datetime.now(UTC))
        return render(request, "channels.html", session, channels=found)

    @router.post("/channels/test")
    def test_channel(
        request: Request,
        session: OperatorSession,
        parts: Parts,
        channel: Annotated[str, Form(pattern=CHANNEL_PATTERN, max_length=128)],
    ) -> Response:
        alert_id = queue_channel_test(parts.engine, actor_of(session), channel)
        parts.on_commit()
        return back_to(
            request,
            f"{PREFIX}/alerts/{alert_id}",
            f"test queued for {channel}: this alert shows its delivery once the notifier sent it",
        )


# -- audit ------------------------------------------------------------------------------------


def _audit_routes(router: APIRouter) -> None:
    @router.get("/audit")
    def audit_log(
        request: Request, session: PageSession, parts: Parts, q: Annotated[ListQuery, Query()]
    ) -> HTMLResponse:
        actor, action, cursor = q.actor, q.action, q.cursor
        check_role(session, Role.OPERATOR)
        where = AuditFilter(actor=_blank(actor), action=_blank(action))
        page = _paged(
            lambda: audit.audit_page(parts.engine, where, queries.id_cursor(cursor), PAGE_SIZE)
        )
        return render(
            request,
            "audit.html",
            session,
            page=page,
            query={"actor": actor or "", "action": action or ""},
        )

    @router.get("/audit/export.csv")
    def export(
        session: PageSession, parts: Parts, actor: Text = None, action: Text = None
    ) -> StreamingResponse:
        check_role(session, Role.ADMIN)
        where = AuditFilter(actor=_blank(actor), action=_blank(action))
        return StreamingResponse(
            audit.export_csv(audit.all_entries(parts.engine, where)),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )

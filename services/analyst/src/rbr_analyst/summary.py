"""The daily summary: the fleet and its last 24 hours in one `daily_summary` alert (info).

Reads other services' tables read-only. The scheduled run of day D (or its catch-up) is dated
D and its alert id comes from D alone, so a retry is the same summary; a run by hand
(`rbr run-task daily_summary`) has an id of its own and never takes the day's place.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from rbr_analyst.alerts import NAMESPACE, SOURCE
from rbr_analyst.redact import clean
from rbr_runtime.db.tables import (
    alerts,
    analysis_alert_state,
    buckets,
    iocs,
    log_analysis,
    logs,
    poller_state,
)
from rbr_runtime.intel.overview import new_indicator_counts, places
from rbr_runtime.kafka import EventProducer
from rbr_runtime.schedule import DailySlot
from rbr_schemas import ALERTS, Alert, AlertState, AlertType, Severity

TOP_ATTACKERS = 10


@dataclass
class DailyFigures:
    """What the daily summary reports."""

    day: date
    since: datetime
    until: datetime
    buckets_by_state: dict[str, int] = field(default_factory=dict)
    unresponsive: int = 0
    logs_ingested: int = 0
    active_log_buckets: int = 0
    top_attackers: list[tuple[str, int]] = field(default_factory=list)
    analyses: int = 0
    analyses_by_severity: dict[str, int] = field(default_factory=dict)
    analyses_by_rules: int = 0
    findings_alerted: int = 0
    alerts_fired: int = 0
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    top_techniques: list[tuple[str, int]] = field(default_factory=list)
    top_countries: list[tuple[str, int]] = field(default_factory=list)
    top_as_orgs: list[tuple[str, int]] = field(default_factory=list)
    new_indicators: int = 0
    new_indicators_by_type: dict[str, int] = field(default_factory=dict)


def collect(engine: Engine, until: datetime, day: date) -> DailyFigures:
    """Gathers the figures of the 24 hours before `until`, for the summary dated `day`."""
    figures = DailyFigures(day=day, since=until - timedelta(hours=24), until=until)
    with engine.connect() as connection:
        _buckets(connection, figures)
        _logs(connection, figures)
        _analyses(connection, figures)
        _alerts(connection, figures)
        _intel(connection, figures)
    return figures


def _intel(connection: Connection, figures: DailyFigures) -> None:
    """Techniques seen, where the attackers sit, indicators new to the fleet (24 h)."""
    in_day = (iocs.c.last_seen > figures.since, iocs.c.first_seen < figures.until)
    techniques: Tally[str] = Tally()
    for (values,) in connection.execute(select(iocs.c.techniques).where(*in_day)):
        techniques.update(values or [])
    figures.top_techniques = techniques.most_common(TOP_ATTACKERS)
    for column, target in ((iocs.c.country, "top_countries"), (iocs.c.as_org, "top_as_orgs")):
        found = places(connection, column, figures.since, figures.until, TOP_ATTACKERS)
        setattr(figures, target, [(clean(place.name, 64), place.addresses) for place in found])
    figures.new_indicators_by_type = new_indicator_counts(connection, figures.since, figures.until)
    figures.new_indicators = sum(figures.new_indicators_by_type.values())


def _buckets(connection: Connection, figures: DailyFigures) -> None:
    rows = connection.execute(select(buckets.c.state, func.count()).group_by(buckets.c.state))
    figures.buckets_by_state = {str(state): int(count) for state, count in rows}
    figures.unresponsive = int(
        connection.execute(
            select(func.count())
            .select_from(poller_state)
            .where(poller_state.c.alert_open.is_(True))
        ).scalar_one()
    )


def _logs(connection: Connection, figures: DailyFigures) -> None:
    in_day = (logs.c.created_at >= figures.since, logs.c.created_at < figures.until)
    row = connection.execute(
        select(func.count(), func.count(logs.c.name.distinct())).where(*in_day)
    ).one()
    figures.logs_ingested, figures.active_log_buckets = int(row[0]), int(row[1])
    hits = func.count().label("hits")
    top = connection.execute(
        select(logs.c.source_ip, hits)
        .where(*in_day, logs.c.source_ip.is_not(None))
        .group_by(logs.c.source_ip)
        .order_by(hits.desc(), logs.c.source_ip)
        .limit(TOP_ATTACKERS)
    )
    figures.top_attackers = [(clean(ip, 45), int(count)) for ip, count in top]


def _analyses(connection: Connection, figures: DailyFigures) -> None:
    rows = connection.execute(
        select(log_analysis.c.severity, log_analysis.c.analyser).where(
            log_analysis.c.created_at >= figures.since, log_analysis.c.created_at < figures.until
        )
    ).all()
    figures.analyses = len(rows)
    figures.analyses_by_severity = dict(Tally(str(row[0]) for row in rows))
    figures.analyses_by_rules = sum(1 for row in rows if row[1] == "rules")
    figures.findings_alerted = int(
        connection.execute(
            select(func.count())
            .select_from(analysis_alert_state)
            .where(
                analysis_alert_state.c.updated_at >= figures.since,
                analysis_alert_state.c.state == "firing",
            )
        ).scalar_one()
    )


def _alerts(connection: Connection, figures: DailyFigures) -> None:
    rows = connection.execute(
        select(alerts.c.type, alerts.c.severity).where(
            alerts.c.fired_at >= figures.since,
            alerts.c.fired_at < figures.until,
            alerts.c.type != AlertType.DAILY_SUMMARY.value,
        )
    ).all()
    figures.alerts_fired = len(rows)
    figures.alerts_by_type = dict(Tally(str(row[0]) for row in rows))
    figures.alerts_by_severity = dict(Tally(str(row[1]) for row in rows))


def summary_alert(
    figures: DailyFigures, built_at: datetime, *, run_id: str | None = None, late: bool = False
) -> Alert:
    """Builds the `daily_summary` alert from the figures.

    Args:
        figures: what to report.
        built_at: when the summary was built (the alert's time).
        run_id: set for a summary asked for by hand: it gets its own id and dedupe key.
        late: the day's run was caught up at start-up, after its time.
    """
    day = figures.day.isoformat()
    dedupe = f"daily_summary:{day}" if run_id is None else f"daily_summary:{day}:run-{run_id}"
    alert_id = str(uuid.uuid5(NAMESPACE, dedupe))
    states = figures.buckets_by_state
    attackers = ", ".join(f"{ip} ({count})" for ip, count in figures.top_attackers) or "none"
    note = ""
    if run_id is not None:
        note = " (asked for by hand)"
    elif late:
        note = " (sent late: no replica was running at its time)"
    detail = "\n".join(
        [
            f"Daily summary for {day} (24 h to {figures.until:%Y-%m-%d %H:%M} UTC){note}",
            f"Buckets: {states.get('active', 0)} active, {states.get('pending', 0)} pending, "
            f"{states.get('disabled', 0)} disabled, {figures.unresponsive} unresponsive.",
            f"Logs ingested: {figures.logs_ingested} records from "
            f"{figures.active_log_buckets} bucket(s).",
            f"Top attacker IPs: {attackers}.",
            f"Analyses run: {figures.analyses} ({figures.analyses_by_rules} by rules); by "
            f"severity: {_counts(figures.analyses_by_severity)}.",
            f"Alerts fired: {figures.alerts_fired} ({_counts(figures.alerts_by_type)}); "
            f"analysis findings alerting: {figures.findings_alerted}.",
            f"Top ATT&CK techniques: {_pairs(figures.top_techniques)}.",
            f"Top attacker countries: {_pairs(figures.top_countries)}; "
            f"top AS: {_pairs(figures.top_as_orgs)}.",
            f"New indicators since yesterday: {figures.new_indicators} "
            f"({_counts(figures.new_indicators_by_type)}).",
        ]
    )
    context: dict[str, Any] = {
        "date": day,
        "since": figures.since.isoformat(),
        "until": figures.until.isoformat(),
        "run": "manual" if run_id is not None else ("catch-up" if late else "scheduled"),
        "buckets_active": states.get("active", 0),
        "buckets_pending": states.get("pending", 0),
        "buckets_disabled": states.get("disabled", 0),
        "buckets_unresponsive": figures.unresponsive,
        "logs_ingested": figures.logs_ingested,
        "buckets_with_logs": figures.active_log_buckets,
        "top_attacker_ips": ", ".join(ip for ip, _ in figures.top_attackers),
        "analyses_run": figures.analyses,
        "analyses_by_rules": figures.analyses_by_rules,
        "alerts_fired": figures.alerts_fired,
        "analysis_findings_alerting": figures.findings_alerted,
        "top_techniques": ", ".join(t for t, _ in figures.top_techniques),
        "top_countries": ", ".join(c for c, _ in figures.top_countries),
        "top_as_orgs": ", ".join(a for a, _ in figures.top_as_orgs),
        "new_indicators": figures.new_indicators,
    }
    return Alert(
        alert_id=alert_id,
        dedupe_key=dedupe,
        type=AlertType.DAILY_SUMMARY.value,
        severity=Severity.INFO,
        state=AlertState.FIRING,
        bucket=None,
        title=f"Rustbucket fleet daily summary {day}" + (" (on request)" if run_id else ""),
        detail=detail,
        source=SOURCE,
        occurred_at=built_at,
        context=context,
    )


def _pairs(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in pairs) or "none"


def _counts(tally: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(tally.items())) or "none"


def send_daily_summary(
    engine: Engine, producer: EventProducer, slot: DailySlot, now: datetime
) -> Alert:
    """Publishes the summary of one day's slot (scheduled, or caught up); returns it.

    The figures are those of the 24 hours before the slot was due, whenever it runs. The
    event id is derived from the content, so sending the same summary twice (a retried run)
    is recognisably one event, while a later run with new figures is a new one.
    """
    figures = collect(engine, slot.due_at, slot.day)
    alert = summary_alert(figures, now, late=slot.caught_up)
    content = alert.model_dump(mode="json", exclude={"occurred_at"})
    digest = hashlib.sha256(orjson.dumps(content)).hexdigest()
    event_id = str(uuid.uuid5(NAMESPACE, f"{alert.dedupe_key}|{digest}"))
    producer.send(ALERTS, alert.dedupe_key, alert, event_id=event_id)
    return alert


def send_summary_now(
    engine: Engine, producer: EventProducer, now: datetime, timezone: str
) -> Alert:
    """Publishes a summary of the 24 hours before now, asked for by hand; returns it.

    It has an id of its own, so it is delivered however many summaries went out that day.
    """
    figures = collect(engine, now, now.astimezone(ZoneInfo(timezone)).date())
    alert = summary_alert(figures, now, run_id=uuid.uuid4().hex[:12])
    producer.send(ALERTS, alert.dedupe_key, alert, event_id=alert.alert_id)
    return alert


def describe(alert: Alert) -> str:
    """Returns a one-line description of a summary (for `rbr run-task`)."""
    context = alert.context
    return (
        f"{alert.dedupe_key}: {context['buckets_active']} active, {context['buckets_pending']} "
        f"pending, {context['buckets_unresponsive']} unresponsive buckets; "
        f"{context['logs_ingested']} log records; {context['analyses_run']} analyses; "
        f"{context['alerts_fired']} alerts fired"
    )

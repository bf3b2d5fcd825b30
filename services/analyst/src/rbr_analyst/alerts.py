"""Alerts from analyses: one condition per (bucket, finding key), firing until it stops.

A finding at or above `RBR_ALERT_MIN_SEVERITY` fires `analysis:<bucket>:<finding key>`. While
later windows keep reporting it, the same alert (same `alert_id`) stays firing; the first window
that no longer reports it (or a bucket that went quiet for a whole window) resolves it, and a
later recurrence is a new occurrence with a new `alert_id`. Ids of alerts and events are
uuid5 of what identifies them, so a replay produces the very same events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rbr_analyst.analysis import AnalysisResult, Finding
from rbr_analyst.redact import clip
from rbr_analyst.store import OpenAlert
from rbr_analyst.windows import Window
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.outbox import OutboxMessage
from rbr_schemas import ALERTS, Alert, AlertState, AlertType, Severity

SOURCE = "/rbr/analyst"
NAMESPACE = uuid.UUID("5d6f0a43-6f6e-4b7b-9a51-2a7f1c7f0b11")
MAX_DETAIL = 20_000


def dedupe_key(bucket: str, key: str) -> str:
    """Returns the dedupe key of a bucket's finding."""
    return f"analysis:{bucket}:{key}"


def alert_id_for(dedupe: str, opened: datetime) -> str:
    """Returns the id of the occurrence of a condition that opened with the given window."""
    return str(uuid.uuid5(NAMESPACE, f"{dedupe}|{opened.isoformat()}"))


def event_id_for(alert_id: str, state: str, window_start: datetime) -> str:
    """Returns the id of the event an analysis of a window sends about an alert."""
    return str(uuid.uuid5(NAMESPACE, f"{alert_id}|{state}|{window_start.isoformat()}"))


@dataclass
class AlertPlan:
    """What one analysis changes: events to send and alert states to store."""

    events: list[tuple[str, Alert]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)

    def outbox(self) -> list[OutboxMessage]:
        """Returns the events as outbox messages (encoded CloudEvents keyed by dedupe key)."""
        return [
            OutboxMessage(ALERTS.name, alert.dedupe_key, encode_alert(alert, event_id))
            for event_id, alert in self.events
        ]


def encode_alert(alert: Alert, event_id: str) -> bytes:
    """Encodes an alert as the CloudEvent the analyst publishes."""
    event = make_event(
        ALERTS,
        alert,
        source=SOURCE,
        subject=alert.bucket,
        event_id=event_id,
        time=alert.occurred_at,
    )
    return encode(event)


def plan_alerts(
    window: Window,
    analysis: AnalysisResult,
    open_alerts: dict[str, OpenAlert],
    *,
    min_severity: Severity,
    analyser: str,
    log_rows: int,
    now: datetime,
    severities: Mapping[str, Severity] | None = None,
    reasons: Mapping[str, Sequence[str]] | None = None,
) -> AlertPlan:
    """Returns the alert events and state changes an analysis of the window causes.

    `severities` grades each finding's alert (by novelty, see `novelty.grade`); without it a
    finding alerts at its own severity. `reasons` says, per finding, why it is not routine.
    """
    plan = AlertPlan()
    graded = {
        f.key: f.model_copy(update={"severity": (severities or {}).get(f.key, f.severity)})
        for f in analysis.findings
    }
    reported = {key: f for key, f in graded.items() if f.severity >= min_severity}
    for key, finding in reported.items():
        previous = open_alerts.get(key)
        opened = previous.opened_window_start if previous else window.start
        dedupe = dedupe_key(window.bucket, key)
        alert_id = previous.alert_id if previous else alert_id_for(dedupe, opened)
        alert = _firing(
            window,
            finding=finding,
            analysis=analysis,
            dedupe=dedupe,
            alert_id=alert_id,
            analyser=analyser,
            log_rows=log_rows,
            opened=opened,
            reasons=list((reasons or {}).get(key, [])),
        )
        plan.events.append((event_id_for(alert_id, "firing", window.start), alert))
        plan.states.append(
            _state(
                window.bucket,
                key=key,
                alert_id=alert_id,
                state="firing",
                finding=finding,
                opened=opened,
                last=window.start,
                now=now,
            )
        )
    for key, previous in open_alerts.items():
        if key in reported:
            continue
        alert = resolved_alert(previous, window.end, f"not reported by {window.label()}")
        plan.events.append((event_id_for(previous.alert_id, "resolved", window.start), alert))
        plan.states.append(
            {
                "name": previous.name,
                "finding_key": key,
                "alert_id": previous.alert_id,
                "state": "resolved",
                "severity": previous.severity,
                "title": previous.title,
                "opened_window_start": previous.opened_window_start,
                "last_window_start": window.start,
                "updated_at": now,
            }
        )
    return plan


def _firing(
    window: Window,
    *,
    finding: Finding,
    analysis: AnalysisResult,
    dedupe: str,
    alert_id: str,
    analyser: str,
    log_rows: int,
    opened: datetime,
    reasons: list[str],
) -> Alert:
    evidence = "\n".join(f"- {line}" for line in finding.evidence)
    detail = finding.description
    if reasons:
        detail += "\n\nNew to the fleet:\n" + "\n".join(f"- {line}" for line in reasons)
    detail += f"\n\nEvidence:\n{evidence}\n\nWindow summary ({analyser}): {analysis.summary}"
    if finding.techniques:
        detail += f"\n\nATT&CK: {', '.join(finding.techniques)}"
    if analysis.recommended_actions:
        actions = "\n".join(f"- {action}" for action in analysis.recommended_actions)
        detail += f"\n\nRecommended actions:\n{actions}"
    return Alert(
        alert_id=alert_id,
        dedupe_key=dedupe,
        type=AlertType.ANALYSIS_FINDING.value,
        severity=finding.severity,
        state=AlertState.FIRING,
        bucket=window.bucket,
        title=clip(f"{window.bucket}: {finding.title}", 300),
        detail=clip(detail, MAX_DETAIL),
        source=SOURCE,
        occurred_at=window.end,
        context={
            "finding_key": finding.key,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "opened_window_start": opened.isoformat(),
            "analyser": analyser,
            "analysis_severity": analysis.severity.value,
            "log_rows": log_rows,
            "techniques": ",".join(finding.techniques),
            "novel": bool(reasons),
        },
    )


def resolved_alert(previous: OpenAlert, when: datetime, why: str) -> Alert:
    """Returns the resolving event of a firing analysis alert."""
    return Alert(
        alert_id=previous.alert_id,
        dedupe_key=dedupe_key(previous.name, previous.finding_key),
        type=AlertType.ANALYSIS_FINDING.value,
        severity=Severity(previous.severity),
        state=AlertState.RESOLVED,
        bucket=previous.name,
        title=clip(previous.title, 300),
        detail=f"Resolved: {why}.",
        source=SOURCE,
        occurred_at=when,
        context={
            "finding_key": previous.finding_key,
            "opened_window_start": previous.opened_window_start.isoformat(),
            "last_window_start": previous.last_window_start.isoformat(),
        },
    )


def _state(
    bucket: str,
    *,
    key: str,
    alert_id: str,
    state: str,
    finding: Finding,
    opened: datetime,
    last: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "name": bucket,
        "finding_key": key,
        "alert_id": alert_id,
        "state": state,
        "severity": finding.severity.value,
        "title": clip(f"{bucket}: {finding.title}", 300),
        "opened_window_start": opened,
        "last_window_start": last,
        "updated_at": now,
    }

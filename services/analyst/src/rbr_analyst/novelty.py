"""Alerts that matter on a honeypot: severity from novelty and reach, not the kind of attack.

On a honeypot, logins, miners and cron persistence are the weather: every bucket sees them
every window. What deserves a page is what is new to the fleet (an indicator or an ATT&CK
technique never seen before), what is coordinated (one source or payload on several buckets
within a window: a campaign), a bucket departing from its own baseline, and signs that the
honeypot itself misbehaves. So, with `RBR_ALERT_GRADING=novelty` (the default), a finding's
alert keeps its severity (at least high) only when it evidences something new to the fleet, or
is one of those signals; otherwise it is graded `low` (routine): it stays in the analysis, the
daily summary and the digests, and raises an alert only if `RBR_ALERT_MIN_SEVERITY` is `low`.
"""

from __future__ import annotations

import re
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rbr_analyst.alerts import NAMESPACE, SOURCE, alert_id_for, dedupe_key, event_id_for
from rbr_analyst.analysis import AnalysisResult, Finding, highest
from rbr_analyst.indicators import Sighting
from rbr_analyst.intel_store import Campaign
from rbr_analyst.redact import clip
from rbr_analyst.store import CAMPAIGNS, OpenAlert
from rbr_analyst.windows import Window
from rbr_runtime.intel.attack import catalogue
from rbr_schemas import Alert, AlertState, AlertType, Severity

ROUTINE = Severity.LOW
ACTIVITY_CHANGE = "activity_change"
LOGS_SILENT = "logs_silent"
OUTBOUND_ACTIVITY = "outbound_activity"
SIGNALS = frozenset({ACTIVITY_CHANGE, LOGS_SILENT, OUTBOUND_ACTIVITY})
"""Findings about the bucket itself, not its attackers: never graded routine."""
MAX_NOTES = 8
# Which finding a new indicator is evidence for, by what it was seen doing.
_FINDING_OF_ROLE = {
    "download": "file_download",
    "login": "successful_login",
    "brute_force": "brute_force",
}


@dataclass
class Grading:
    """The alert severity of each finding of an analysis, and why it is not routine."""

    severities: dict[str, Severity] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _findings_of(sighting: Sighting) -> set[str]:
    keys = {_FINDING_OF_ROLE[role] for role in sighting.roles if role in _FINDING_OF_ROLE}
    if sighting.source_rule and sighting.source_rule not in ("download", "model"):
        keys.add(sighting.source_rule)
    if "payload_host" in sighting.roles and sighting.source_rule == "download":
        keys.add("file_download")
    return keys


def grade(
    result: AnalysisResult,
    *,
    new_indicators: Sequence[Sighting],
    new_techniques: Sequence[str],
    page_types: frozenset[str],
) -> Grading:
    """Grades every finding: its own severity (at least high) when novel, else routine.

    Each new thing counts for one finding only, the most severe one it evidences: a new
    payload URL fetched, made executable and run pages once, not once per rule it matched.
    """
    grading = Grading()
    claimed: set[str] = set()
    ranked = sorted(result.findings, key=lambda f: -f.severity.rank)
    for finding in ranked:
        reasons = [
            r
            for r in _novel(finding, new_indicators, new_techniques, page_types)
            if r not in claimed
        ]
        claimed.update(reasons)
        if finding.key in SIGNALS:
            grading.severities[finding.key] = finding.severity
        elif reasons:
            grading.severities[finding.key] = highest([finding.severity, Severity.HIGH])
            grading.reasons[finding.key] = reasons[:MAX_NOTES]
        else:
            grading.severities[finding.key] = min(finding.severity, ROUTINE, key=lambda s: s.rank)
    return grading


def _novel(
    finding: Finding,
    new_indicators: Sequence[Sighting],
    new_techniques: Sequence[str],
    page_types: frozenset[str],
) -> list[str]:
    reasons: list[str] = []
    if "technique" in page_types:
        for technique_id in finding.techniques:
            if technique_id in new_techniques:
                technique = catalogue().get(technique_id)
                name = technique.name if technique else ""
                reasons.append(f"ATT&CK {technique_id} {name} first seen in the fleet")
    for sighting in new_indicators:
        kind = sighting.indicator.type.value
        if kind in page_types and finding.key in _findings_of(sighting):
            reasons.append(f"{kind} {clip(sighting.indicator.value, 200)} first seen in the fleet")
    return reasons


def activity_change(
    log_rows: int,
    history: Sequence[int],
    *,
    min_windows: int,
    factor: float,
    min_rows: int,
) -> Finding | None:
    """Returns a finding when the window's volume departs from the bucket's own baseline.

    The baseline is the median of the bucket's earlier windows (at least `min_windows` of
    them); a surge is `factor` times it and at least `min_rows`; a collapse is a window with
    `factor` times fewer rows than a baseline of at least `min_rows` (the honeypot may have
    stopped logging, or stopped being reachable to attackers).
    """
    if len(history) < min_windows or factor <= 1:
        return None
    baseline = statistics.median(history)
    evidence = [f"this window: {log_rows} records; median of the last {len(history)}: {baseline:g}"]
    if log_rows >= max(min_rows, factor * baseline):
        ratio = log_rows / baseline if baseline else float(log_rows)
        return Finding(
            key=ACTIVITY_CHANGE,
            title=f"Activity surge: {ratio:.0f}x the bucket's usual volume",
            severity=Severity.HIGH,
            description="The bucket logged far more than its own baseline: a targeted attack, "
            "a new botnet, or the honeypot being used as a relay.",
            evidence=evidence,
        )
    if baseline >= min_rows and log_rows * factor <= baseline:
        return Finding(
            key=ACTIVITY_CHANGE,
            title="Activity collapse: far fewer records than the bucket's usual volume",
            severity=Severity.HIGH,
            description="The bucket logged far less than its own baseline while it still "
            "logs: check that the honeypot process and its logging are intact.",
            evidence=evidence,
        )
    return None


PROXY_TECHNIQUES = ("T1090",)
TUNNEL_EVENT = "tunnel"
# A proxy request names another host in its target: absolute form (`GET http://host/`) or
# authority form (`CONNECT host:443`); a honeypot's own paths start with a slash.
_PROXY_TARGET = re.compile(r"\A(?:[a-z][a-z0-9+.-]*://|[^/\s]+:[0-9]{1,5}\Z)", re.IGNORECASE)


def outbound_activity(
    event_counts: Sequence[dict[str, Any]], http_targets: Sequence[dict[str, Any]]
) -> Finding | None:
    """Returns a finding when attackers used the honeypot to reach other hosts.

    SSH port forwarding (`tunnel` records, Cowrie's direct-tcpip) and HTTP proxy requests ask
    the honeypot itself to open connections elsewhere: if it carries them, it attacks others
    on the attacker's behalf. That is about the honeypot, not its attackers, so it is a signal.

    Args:
        event_counts: the window's records per event type (`{"value", "count"}` items).
        http_targets: the window's most requested HTTP targets, same shape.
    """
    tunnels = sum(int(i["count"]) for i in event_counts if i["value"] == TUNNEL_EVENT)
    proxied = [i for i in http_targets if _PROXY_TARGET.match(str(i["value"]))]
    requests = tunnels + sum(int(i["count"]) for i in proxied)
    if requests == 0:
        return None
    evidence = [f"{tunnels} SSH port-forwarding (tunnel) record(s)"] if tunnels else []
    evidence += [f"proxy request for {clip(str(i['value']), 200)} ({i['count']}x)" for i in proxied]
    return Finding(
        key=OUTBOUND_ACTIVITY,
        title=f"Honeypot asked to relay traffic: {requests} tunnel or proxy request(s)",
        severity=Severity.HIGH,
        description="Attackers tried to use the honeypot as a relay to other hosts. If it "
        "forwards such connections it is carrying their attacks: check that its host can "
        "reach nothing on the Internet but what it must.",
        evidence=evidence[:MAX_NOTES],
        techniques=list(PROXY_TECHNIQUES),
    )


def campaign_alert(
    window: Window, campaigns: Sequence[Campaign], *, now: datetime
) -> tuple[str, Alert, dict[str, Any]]:
    """Returns (event id, alert, alert state) of the campaigns one analysis found.

    One alert per analysis, naming every indicator that crossed the bucket threshold and the
    buckets that sighted them. Its dedupe key and alert id are the window's
    (`campaign:<window start>`), so the analyses of other buckets in the same window that find
    more of the campaign are repeats of one open alert to the notifier: at most one campaign
    page per window. It is resolved once no analysis can add to it (`resolved_campaign`).
    """
    dedupe = campaign_key(window.start)
    alert_id = str(uuid.uuid5(NAMESPACE, dedupe))
    buckets = sorted({name for campaign in campaigns for name in campaign.buckets})
    lines = [
        f"- {c.kind} {clip(c.value, 300)}: {len(c.buckets)} buckets ({', '.join(c.buckets)})"
        for c in campaigns
    ]
    head = campaigns[0]
    more = f" and {len(campaigns) - 1} more" if len(campaigns) > 1 else ""
    detail = (
        f"Sighted by several buckets within the campaign window around "
        f"{window.start.isoformat()}:\n" + "\n".join(lines) + "\n\nOne source or payload "
        "across several honeypots at once is a coordinated campaign: block it fleet-wide and "
        "on real hosts."
    )
    title = clip(
        f"Campaign: {head.kind} {clip(head.value, 100)}{more} on {len(head.buckets)}+ buckets",
        300,
    )
    alert = Alert(
        alert_id=alert_id,
        dedupe_key=dedupe,
        type=AlertType.CAMPAIGN.value,
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket=None,
        title=title,
        detail=clip(detail, 20_000),
        source=SOURCE,
        occurred_at=window.end,
        context={
            "indicators": clip("; ".join(f"{c.kind} {c.value}" for c in campaigns), 2000),
            "indicator_count": len(campaigns),
            "buckets": ", ".join(buckets),
            "bucket_count": len(buckets),
            "window_start": window.start.isoformat(),
            "found_by": window.bucket,
        },
    )
    state = {
        "name": CAMPAIGNS,  # fleet-wide
        "finding_key": dedupe,
        "alert_id": alert_id,
        "state": "firing",
        "severity": Severity.HIGH.value,
        "title": title,
        "opened_window_start": window.start,
        "last_window_start": window.start,
        "updated_at": now,
    }
    event_id = str(uuid.uuid5(NAMESPACE, f"{alert_id}|firing|{window.bucket}"))
    return event_id, alert, state


def campaign_key(window_start: datetime) -> str:
    """Returns the dedupe key of the campaign alert of a window."""
    return f"campaign:{window_start.isoformat()}"


def resolved_campaign(previous: OpenAlert, when: datetime) -> Alert:
    """Returns the resolving event of a window's campaign alert."""
    return Alert(
        alert_id=previous.alert_id,
        dedupe_key=previous.finding_key,
        type=AlertType.CAMPAIGN.value,
        severity=Severity(previous.severity),
        state=AlertState.RESOLVED,
        bucket=None,
        title=clip(previous.title, 300),
        detail="Resolved: the campaign window ended (later sightings raise a new one).",
        source=SOURCE,
        occurred_at=when,
        context={"window_start": previous.opened_window_start.isoformat()},
    )


def silence_alert(
    window: Window, *, last_log_at: datetime, answered_at: datetime, now: datetime
) -> tuple[str, Alert, dict[str, Any]]:
    """Returns (event id, alert, alert state) of a bucket that answers but logs nothing.

    A honeypot whose ports still answer the poller while its logs stopped may have lost its
    honeypot process, its logging, or its integrity: the opposite of the expected weather.
    It is resolved by the next analysis of a window with logs (a window that no longer
    reports it), like any analysis finding.
    """
    dedupe = dedupe_key(window.bucket, LOGS_SILENT)
    alert_id = alert_id_for(dedupe, window.start)
    since = f"{last_log_at:%Y-%m-%d %H:%M} UTC"
    title = clip(f"{window.bucket}: answers the poller but logged nothing since {since}", 300)
    alert = Alert(
        alert_id=alert_id,
        dedupe_key=dedupe,
        type=AlertType.ANALYSIS_FINDING.value,
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket=window.bucket,
        title=title,
        detail=(
            f"The poller reached {window.bucket} at {answered_at.isoformat()}, but its last "
            f"log record arrived at {last_log_at.isoformat()}. Check that the honeypot process "
            "runs and still writes and ships its logs; a compromised honeypot may stop logging."
        ),
        source=SOURCE,
        occurred_at=now,
        context={
            "finding_key": LOGS_SILENT,
            "last_log_at": last_log_at.isoformat(),
            "last_answered_at": answered_at.isoformat(),
        },
    )
    state = {
        "name": window.bucket,
        "finding_key": LOGS_SILENT,
        "alert_id": alert_id,
        "state": "firing",
        "severity": Severity.HIGH.value,
        "title": title,
        "opened_window_start": window.start,
        "last_window_start": window.start,
        "updated_at": now,
    }
    return event_id_for(alert_id, "firing", window.start), alert, state

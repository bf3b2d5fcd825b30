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

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from rbr_analyst.alerts import NAMESPACE, SOURCE
from rbr_analyst.analysis import AnalysisResult, Finding, highest
from rbr_analyst.indicators import Sighting
from rbr_analyst.intel_store import Campaign
from rbr_analyst.redact import clip
from rbr_analyst.windows import Window
from rbr_runtime.intel.attack import catalogue
from rbr_schemas import Alert, AlertState, AlertType, Severity

ROUTINE = Severity.LOW
ACTIVITY_CHANGE = "activity_change"
LOGS_SILENT = "logs_silent"
SIGNALS = frozenset({ACTIVITY_CHANGE, LOGS_SILENT})
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
    """Grades every finding: its own severity (at least high) when novel, else routine."""
    grading = Grading()
    for finding in result.findings:
        reasons = _novel(finding, new_indicators, new_techniques, page_types)
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


def campaign_alert(window: Window, campaign: Campaign) -> tuple[str, Alert]:
    """Returns (event id, alert) of a campaign: one indicator on several buckets."""
    dedupe = f"campaign:{campaign.kind}:{campaign.key_sha256[:32]}"
    alert_id = str(uuid.uuid5(NAMESPACE, f"{dedupe}|{window.end.isoformat()}"))
    names = ", ".join(campaign.buckets)
    value = clip(campaign.value, 120)
    detail = (
        f"The {campaign.kind} {clip(campaign.value, 2000)} was sighted by "
        f"{len(campaign.buckets)} buckets within the campaign window ending "
        f"{window.end.isoformat()}: {names}.\n\nOne source or payload across several honeypots "
        "at once is a coordinated campaign: block it fleet-wide and on real hosts."
    )
    alert = Alert(
        alert_id=alert_id,
        dedupe_key=dedupe,
        type=AlertType.CAMPAIGN.value,
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket=None,
        title=clip(f"Campaign: {campaign.kind} {value} on {len(campaign.buckets)} buckets", 300),
        detail=clip(detail, 20_000),
        source=SOURCE,
        occurred_at=window.end,
        context={
            "indicator_type": campaign.kind,
            "indicator": clip(campaign.value, 2000),
            "buckets": names,
            "bucket_count": len(campaign.buckets),
            "window_end": window.end.isoformat(),
        },
    )
    return str(uuid.uuid5(NAMESPACE, f"{alert_id}|firing")), alert

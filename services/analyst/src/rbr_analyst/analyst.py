"""One analysis cycle: every ended window in the backlog becomes a stored analysis and alerts.

For each bucket's oldest pending window that has ended (plus `RBR_ANALYSIS_GRACE`): claim it
(a lease, so replicas do not analyse the same window twice), build its digest, run the rules,
ask Claude (when configured) and merge with the rules' floor, then store the analysis, the
alert state changes and the alert events (in the analyst's outbox) in one transaction, and
publish the events through the outbox relay. A replayed or duplicate window stores nothing
twice: `log_analysis` is unique per (bucket, window), and the loser of a race stores nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.engine import Connection

from rbr_analyst.alerts import AlertPlan, encode_alert, event_id_for, plan_alerts, resolved_alert
from rbr_analyst.analysis import AnalysisResult, Finding, highest, merge_with_rules
from rbr_analyst.claude import (
    BudgetExceeded,
    ClaudeAnalyser,
    ClaudeOutcome,
    ClaudeRejected,
    ClaudeUnavailable,
    MalformedAnswer,
)
from rbr_analyst.enrich import GeoDatabase, shared_database
from rbr_analyst.indicators import sightings_of
from rbr_analyst.intel_store import CampaignPolicy, RecordedIntel, record_intel
from rbr_analyst.novelty import (
    activity_change,
    campaign_alert,
    grade,
    outbound_activity,
    resolved_campaign,
    silence_alert,
)
from rbr_analyst.rules import analyse_with_rules
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import OUTBOX, AnalystStore, BacklogEntry, Decision, OpenAlert
from rbr_analyst.window_digest import Digest, DigestBuilder
from rbr_analyst.windows import Window
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka import EventProducer
from rbr_runtime.outbox import OutboxMessage, OutboxRelay
from rbr_runtime.schedule import worker_identity
from rbr_schemas import ALERTS, Alert, utcnow

log = logging.getLogger(__name__)

ANALYSES = Counter(
    "rbr_analyst_analyses_total", "Windows analysed and stored, by analyser.", ["analyser"]
)
FALLBACKS = Counter(
    "rbr_analyst_fallbacks_total", "Windows analysed by the rules instead of Claude.", ["reason"]
)
FAILURES = Counter(
    "rbr_analyst_failures_total", "Analysis attempts that failed and will be retried.", ["reason"]
)
ALERTS_QUEUED = Counter(
    "rbr_analyst_alert_events_total", "Alert events queued for publishing, by state.", ["state"]
)
BACKLOG = Gauge("rbr_analyst_backlog_windows", "Windows waiting to be analysed.")
DIGEST_TOKENS = Histogram(
    "rbr_analyst_digest_tokens",
    "Estimated tokens of window digests.",
    buckets=(500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000),
)
INDICATORS = Counter(
    "rbr_analyst_indicator_sightings_total", "Indicator sightings recorded (iocs events queued)."
)
NEW_INDICATORS = Counter(
    "rbr_analyst_new_indicators_total", "Indicators sighted for the first time in the fleet."
)
ANALYSIS_SECONDS = Histogram("rbr_analyst_analysis_seconds", "Time to analyse one window.")


@dataclass
class CycleSummary:
    """What one analysis cycle did."""

    analysed: int = 0
    by_rules: int = 0
    skipped: int = 0
    failed: int = 0
    alert_events: int = 0
    published: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Returns the summary as one line."""
        text = (
            f"{self.analysed} window(s) analysed ({self.by_rules} by rules), "
            f"{self.skipped} already done, {self.failed} failed, "
            f"{self.alert_events} alert event(s) queued, {self.published} published, "
            f"{self.pending} pending"
        )
        return text + (f"; last error: {self.errors[-1]}" if self.errors else "")

    def add(self, other: CycleSummary) -> None:
        """Adds another cycle's counts (pending is the latest)."""
        self.analysed += other.analysed
        self.by_rules += other.by_rules
        self.skipped += other.skipped
        self.failed += other.failed
        self.alert_events += other.alert_events
        self.published += other.published
        self.pending = other.pending
        self.errors += other.errors


@dataclass
class WindowAnalysis:
    """The analysis of one window, ready to store."""

    result: AnalysisResult
    analyser: str
    model: str | None = None
    fallback_reason: str | None = None
    stages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    notes: list[str] = field(default_factory=list)


class Analyst:
    """Analyses ended windows from the backlog and publishes the resulting alerts."""

    def __init__(
        self,
        settings: AnalystSettings,
        store: AnalystStore,
        producer: EventProducer,
        claude: ClaudeAnalyser | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        geo: GeoDatabase | None = None,
    ) -> None:
        self._settings = settings
        self._geo = geo if geo is not None or not settings.enrichment else shared_database()
        self._campaigns = CampaignPolicy(
            window=settings.campaign_window,
            min_buckets=settings.campaign_min_buckets,
            quiet=settings.campaign_quiet,
        )
        self._store = store
        self._claude = claude
        self._clock = clock
        self._owner = owner or worker_identity()
        self._digests = DigestBuilder(
            store.engine, top_n=settings.digest_top_n, samples=settings.digest_samples
        )
        self.relay = OutboxRelay(
            store.engine,
            OUTBOX,
            lambda: producer,
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
        )
        """Publishes the alert events; the service also runs it (retries, other replicas')."""

    def run_cycle(self) -> CycleSummary:
        """Resolves quiet buckets' alerts, analyses due windows, publishes the alert events."""
        summary = CycleSummary()
        now = self._clock()
        self._resolve_quiet_buckets(now)
        self._resolve_campaigns(now)
        self._raise_silent_buckets(now)
        interval = self._settings.analysis_interval
        started_by = now - timedelta(seconds=interval + self._settings.analysis_grace)
        for entry in self._store.due(started_by, now):
            if not self._analyse_entry(entry, now, summary):
                break  # the Claude API is down: the other windows would fail the same way
        # Every event waiting, leftovers of earlier cycles too (a relay not running, or one
        # whose broker was away): published in the order they were decided.
        summary.published += self.relay.publish_pending()
        summary.pending = self._store.pending_count()
        BACKLOG.set(summary.pending)
        return summary

    def preview(self, now: datetime) -> list[tuple[Window, WindowAnalysis]]:
        """Analyses each bucket's oldest waiting window as it stands now, ended or not.

        Stores nothing and publishes nothing: the window is still analysed (whole, alerts and
        all) once it has ended. For an operator who wants to see an analysis at once.
        """
        previews: list[tuple[Window, WindowAnalysis]] = []
        for entry in self._store.due(now, now):
            window = Window.starting(
                entry.name, entry.window_start, self._settings.analysis_interval
            )
            digest = self._digests.build(window, entry.ip_address)
            previews.append((window, self.analyse(digest, now)))
        return previews

    # -- one window ------------------------------------------------------------------------------

    def _analyse_entry(self, entry: BacklogEntry, now: datetime, summary: CycleSummary) -> bool:
        """Analyses one backlog entry; False when the API is unavailable (stop the cycle)."""
        window = Window.starting(entry.name, entry.window_start, self._settings.analysis_interval)
        if not self._store.claim(entry, self._owner, now, self._settings.analysis_lease):
            return True
        with log_context(bucket=entry.name, window_start=entry.window_start.isoformat()):
            started = time.monotonic()
            try:
                stored, analysis, events = self._analyse_and_store(window, entry, now)
            except ClaudeUnavailable as error:
                self._failed(entry, summary, "claude_unavailable", str(error))
                return False
            except Exception as error:
                log.exception("analysis of %s failed; it will be retried", window.label())
                self._failed(
                    entry, summary, type(error).__name__, f"{type(error).__name__}: {error}"
                )
                return True
            ANALYSIS_SECONDS.observe(time.monotonic() - started)
        self._count(stored, analysis, summary)
        summary.alert_events += events
        return True

    def _failed(self, entry: BacklogEntry, summary: CycleSummary, reason: str, text: str) -> None:
        FAILURES.labels(reason).inc()
        summary.failed += 1
        summary.errors.append(text[:300])
        log.warning("analysis of %s postponed: %s", entry.name, text[:300])
        self._store.release(entry, text)

    def _count(self, stored: bool, analysis: WindowAnalysis, summary: CycleSummary) -> None:
        if not stored:
            summary.skipped += 1
            return
        summary.analysed += 1
        summary.by_rules += analysis.analyser == "rules"
        ANALYSES.labels(analysis.analyser).inc()

    def _analyse_and_store(
        self, window: Window, entry: BacklogEntry, now: datetime
    ) -> tuple[bool, WindowAnalysis, int]:
        digest = self._digests.build(window, entry.ip_address)
        DIGEST_TOKENS.observe(digest.estimated_tokens())
        analysis = self.analyse(digest, now)
        self._add_activity_change(window, digest, analysis)
        self._add_finding(
            analysis, outbound_activity(digest.event_counts.items, digest.http_paths.items)
        )
        open_alerts = self._store.open_alerts(window.bucket)
        sightings = sightings_of(digest, analysis.result)
        techniques = Tally(t for f in analysis.result.findings for t in f.techniques)
        record = self._record(window, digest, analysis, now)

        def decide(connection: Connection, analysis_id: int | None) -> Decision:
            intel = record_intel(
                connection,
                window,
                analysis_id=analysis_id,
                sightings=sightings,
                techniques=dict(techniques),
                geo=self._geo,
                campaigns=self._campaigns,
                now=now,
            )
            plan = self._plan(
                window,
                analysis=analysis,
                open_alerts=open_alerts,
                intel=intel,
                log_rows=digest.total_rows,
                now=now,
            )
            campaigns: list[tuple[str, Alert]] = []
            states = list(plan.states)
            if intel.campaigns:
                event_id, alert, state = campaign_alert(window, intel.campaigns, now=now)
                campaigns.append((event_id, alert))
                states.append(state)
            messages = [*plan.outbox(), *AlertPlan(events=campaigns).outbox(), *intel.events]
            plan.events += campaigns
            return Decision(states, messages, detail=(plan, intel))

        decision = self._store.save(window, record, now, decide)
        if decision is None:
            return False, analysis, 0
        plan, intel = decision.detail
        INDICATORS.inc(len(intel.events))
        NEW_INDICATORS.inc(len(intel.new_indicators))
        self._log_stored(window, digest, analysis, plan)
        return True, analysis, len(plan.events)

    def _plan(
        self,
        window: Window,
        *,
        analysis: WindowAnalysis,
        open_alerts: dict[str, OpenAlert],
        intel: RecordedIntel,
        log_rows: int,
        now: datetime,
    ) -> AlertPlan:
        grading = None
        if self._settings.alert_grading == "novelty":
            grading = grade(
                analysis.result,
                new_indicators=intel.new_indicators,
                new_techniques=intel.new_techniques,
                page_types=frozenset(self._settings.novelty_types),
            )
        return plan_alerts(
            window,
            analysis.result,
            open_alerts,
            min_severity=self._settings.alert_min_severity,
            analyser=analysis.analyser,
            log_rows=log_rows,
            now=now,
            severities=grading.severities if grading else None,
            reasons=grading.reasons if grading else None,
        )

    def _add_activity_change(
        self, window: Window, digest: Digest, analysis: WindowAnalysis
    ) -> None:
        """Adds a finding when the window departs from the bucket's own baseline."""
        settings = self._settings
        history = self._store.recent_log_rows(window, max(settings.baseline_windows, 12))
        change = activity_change(
            digest.total_rows,
            history,
            min_windows=settings.baseline_windows,
            factor=settings.baseline_factor,
            min_rows=settings.baseline_min_rows,
        )
        self._add_finding(analysis, change)

    @staticmethod
    def _add_finding(analysis: WindowAnalysis, finding: Finding | None) -> None:
        """Adds a finding about the bucket itself to the analysis, raising its severity."""
        if finding is None:
            return
        result = analysis.result
        analysis.result = result.model_copy(
            update={
                "findings": [*result.findings, finding],
                "severity": highest([result.severity, finding.severity]),
            }
        )

    def analyse(self, digest: Digest, now: datetime) -> WindowAnalysis:
        """Returns the analysis of a digest: Claude with the rules' floor, or the rules alone.

        Raises:
            ClaudeUnavailable: the API is down and the window has not waited long enough for
                the rules to stand in (`RBR_ANALYST_FALLBACK_AFTER`).
        """
        rules = analyse_with_rules(digest)
        if self._claude is None:
            return WindowAnalysis(rules, "rules", fallback_reason="no ANTHROPIC_API_KEY configured")
        try:
            outcome = self._claude.analyse(digest)
        except (MalformedAnswer, BudgetExceeded, ClaudeRejected) as error:
            return self._fallback(rules, type(error).__name__, str(error))
        except ClaudeUnavailable as error:
            due_since = digest.window.end + timedelta(seconds=self._settings.analysis_grace)
            waited = (now - due_since).total_seconds()
            if waited < self._settings.analyst_fallback_after:
                raise
            return self._fallback(rules, "ClaudeUnavailable", str(error))
        return self._merged(outcome, rules)

    def _merged(self, outcome: ClaudeOutcome, rules: AnalysisResult) -> WindowAnalysis:
        return WindowAnalysis(
            merge_with_rules(outcome.result, rules),
            "claude",
            model=outcome.model,
            stages=outcome.usage.requests,
            input_tokens=outcome.usage.input_tokens,
            output_tokens=outcome.usage.output_tokens,
            notes=outcome.notes,
        )

    def _fallback(self, rules: AnalysisResult, kind: str, reason: str) -> WindowAnalysis:
        FALLBACKS.labels(kind).inc()
        log.warning("falling back to the rule-based analysis: %s", reason[:300])
        return WindowAnalysis(rules, "rules", fallback_reason=f"{kind}: {reason}"[:500])

    def _record(
        self, window: Window, digest: Digest, analysis: WindowAnalysis, now: datetime
    ) -> dict[str, Any]:
        result = analysis.result
        return {
            "name": window.bucket,
            "ip_address": digest.ip_address,
            "log_analysis": written_analysis(result, analysis),
            "created_at": now,
            "window_start": window.start,
            "window_end": window.end,
            "analyser": analysis.analyser,
            "model": analysis.model,
            "fallback_reason": analysis.fallback_reason,
            "severity": result.severity.value,
            "findings": [f.model_dump(mode="json") for f in result.findings],
            "iocs": [i.model_dump(mode="json") for i in result.iocs],
            "recommended_actions": list(result.recommended_actions),
            "log_rows": digest.total_rows,
            "stages": analysis.stages,
            "digest_tokens": digest.estimated_tokens(),
            "input_tokens": analysis.input_tokens,
            "output_tokens": analysis.output_tokens,
        }

    def _log_stored(
        self, window: Window, digest: Digest, analysis: WindowAnalysis, plan: AlertPlan
    ) -> None:
        ALERTS_QUEUED.labels("firing").inc(
            sum(1 for _, a in plan.events if a.state.value == "firing")
        )
        ALERTS_QUEUED.labels("resolved").inc(
            sum(1 for _, a in plan.events if a.state.value == "resolved")
        )
        log.info(
            "analysed %s: %s by %s, %d alert event(s)",
            window.label(),
            analysis.result.severity.value,
            analysis.analyser,
            len(plan.events),
            extra={
                "log_rows": digest.total_rows,
                "input_tokens": analysis.input_tokens,
                "output_tokens": analysis.output_tokens,
                "stages": analysis.stages,
            },
        )

    # -- quiet buckets ---------------------------------------------------------------------------

    def _resolve_campaigns(self, now: datetime) -> None:
        """Resolves the campaign alerts of windows no analysis can add to any more."""
        settings = self._settings
        horizon = settings.campaign_window + settings.analysis_interval + settings.analysis_grace
        for alert in self._store.stale_campaigns(now - timedelta(seconds=horizon)):
            resolved = resolved_campaign(alert, now)
            event_id = event_id_for(alert.alert_id, "resolved", alert.opened_window_start)
            event = OutboxMessage(
                ALERTS.name, resolved.dedupe_key, encode_alert(resolved, event_id)
            )
            if self._store.resolve_stale(alert, event, now):
                ALERTS_QUEUED.labels("resolved").inc()

    def _raise_silent_buckets(self, now: datetime) -> None:
        """Raises logs_silent for buckets that answer the poller but stopped logging."""
        silence = self._settings.silence_after
        if silence <= 0:
            return
        interval = self._settings.analysis_interval
        answered_since = now - timedelta(seconds=interval)
        for name, last_log_at, answered_at in self._store.silent_buckets(
            answered_since, now - timedelta(seconds=silence)
        ):
            window = Window.containing(name, now, interval)
            event_id, alert, state = silence_alert(
                window, last_log_at=last_log_at, answered_at=answered_at, now=now
            )
            message = OutboxMessage(ALERTS.name, alert.dedupe_key, encode_alert(alert, event_id))
            if self._store.fire(state, message, now):
                ALERTS_QUEUED.labels("firing").inc()

    def _resolve_quiet_buckets(self, now: datetime) -> None:
        """Resolves alerts of buckets that had no logs for a whole window since the finding."""
        interval = timedelta(seconds=self._settings.analysis_interval)
        grace = timedelta(seconds=self._settings.analysis_grace)
        for alert in self._store.stale_alerts(now - 2 * interval - grace):
            quiet_window = alert.last_window_start + interval
            if self._store.has_backlog(alert.name, quiet_window):
                continue  # that window has logs; its analysis decides
            when = quiet_window + interval
            resolved = resolved_alert(alert, when, "no activity logged for a whole window")
            event_id = event_id_for(alert.alert_id, "resolved", quiet_window)
            encoded = encode_alert(resolved, event_id)
            event = OutboxMessage(ALERTS.name, resolved.dedupe_key, encoded)
            if self._store.resolve_stale(alert, event, now):
                ALERTS_QUEUED.labels("resolved").inc()


def written_analysis(result: AnalysisResult, analysis: WindowAnalysis) -> str:
    """Renders an analysis as the text stored in `log_analysis.log_analysis`."""
    lines = [
        f"Severity: {result.severity.value} (analyser: {analysis.analyser})",
        "",
        result.summary,
    ]
    if analysis.fallback_reason and analysis.analyser == "rules":
        lines += ["", f"Rule-based analysis because: {analysis.fallback_reason}"]
    if result.findings:
        lines += ["", "Findings:"]
        for finding in result.findings:
            lines.append(f"- [{finding.severity.value}] {finding.title} ({finding.key})")
            lines += [f"    {line}" for line in finding.evidence]
    if result.recommended_actions:
        lines += ["", "Recommended actions:"] + [f"- {a}" for a in result.recommended_actions]
    lines += [f"Note: {note}" for note in analysis.notes]
    return "\n".join(lines)

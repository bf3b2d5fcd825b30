"""What the operator API's reads answer and the filters they take (pydantic models).

Text from honeypot logs and from the model is attacker-controlled: it is returned as data,
never as markup; whoever renders it escapes it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from rbr_registrar.models import NAME_PREFIX_PATTERN
from rbr_schemas import BucketState, DeliveryMode
from rbr_schemas.events import BUCKET_NAME_PATTERN


class BucketFilter(BaseModel):
    """Which buckets a list or a bulk action covers (all given filters must hold)."""

    state: BucketState | None = None
    mode: DeliveryMode | None = Field(default=None, description="pull, agent or s3-drop.")
    prefix: str | None = Field(
        default=None,
        pattern=NAME_PREFIX_PATTERN,
        description="Only names starting with this.",
    )


class StatusEntry(BaseModel):
    """One poll outcome of a bucket."""

    polled_at: datetime
    reachable: bool
    error_class: str | None
    latency_ms: float | None


class StatusHistoryPage(BaseModel):
    """A bucket's poll outcomes, newest first."""

    bucket: str
    statuses: list[StatusEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for older entries.")


class LogFilter(BaseModel):
    """What a log search matches; every given filter must hold."""

    bucket: str | None = None
    since: datetime | None = Field(default=None, description="Stored at or after (created_at).")
    until: datetime | None = Field(default=None, description="Stored before (created_at).")
    event_type: str | None = None
    source_ip: str | None = None
    username: str | None = None
    command: str | None = Field(default=None, description="Commands containing this text.")
    text: str | None = Field(default=None, description="Raw records containing this text.")


class LogEntry(BaseModel):
    """One parsed log record (fields are attacker-controlled text)."""

    id: int
    bucket: str
    created_at: datetime
    event_time: datetime | None
    log_format: str
    event_type: str
    source_ip: str | None
    source_port: int | None
    username: str | None
    command: str | None
    url: str | None
    message: str | None
    log: str = Field(description="The raw record, cut to 4,000 characters in lists.")
    log_size: int


class LogPage(BaseModel):
    """Log records newest first."""

    logs: list[LogEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for older records.")
    since: datetime | None = Field(
        default=None, description="The start of the time range searched (set or defaulted)."
    )
    notice: str | None = Field(
        default=None,
        description="Set when the search was narrowed (a text search without a time range "
        "covers the last 24 hours): says how, and how to widen it.",
    )


class AnalysisFilter(BaseModel):
    """Which analyses to list."""

    bucket: str | None = None
    severity: str | None = None
    since: datetime | None = Field(default=None, description="Windows starting at or after.")
    until: datetime | None = Field(default=None, description="Windows starting before.")


class AnalysisSummary(BaseModel):
    """One analysis in a list."""

    id: int
    bucket: str
    window_start: datetime
    window_end: datetime
    severity: str
    analyser: str
    model: str | None
    findings: int
    iocs: int
    log_rows: int
    created_at: datetime


class AnalysisPage(BaseModel):
    """Analyses newest first."""

    analyses: list[AnalysisSummary]
    next_cursor: str | None
    total: int


class AnalysisView(BaseModel):
    """An analysis whole: the text, findings, indicators and recommended actions."""

    id: int
    bucket: str
    ip_address: str
    window_start: datetime
    window_end: datetime
    severity: str
    analyser: str
    model: str | None
    fallback_reason: str | None
    analysis: str
    findings: list[Any]
    iocs: list[Any]
    recommended_actions: list[Any]
    log_rows: int
    created_at: datetime


class AlertFilter(BaseModel):
    """Which alert occurrences to list."""

    state: str | None = Field(default=None, description="firing, acknowledged or resolved.")
    bucket: str | None = None
    severity: str | None = None
    type: str | None = None
    dedupe_key: str | None = None
    since: datetime | None = Field(default=None, description="Fired at or after.")
    until: datetime | None = Field(default=None, description="Fired before.")


class AlertSummary(BaseModel):
    """One alert occurrence in a list."""

    alert_id: str
    dedupe_key: str
    type: str
    severity: str
    state: str
    bucket: str | None
    title: str
    fired_at: datetime
    repeats: int
    acknowledged_by: str | None
    resolved_at: datetime | None


class AlertPage(BaseModel):
    """Alert occurrences newest first."""

    alerts: list[AlertSummary]
    next_cursor: str | None
    total: int


class AlertEvent(BaseModel):
    """One step of an alert's life: fired, repeated, acknowledged, resolved."""

    at: datetime
    event: str
    detail: str | None = None


class DeliveryView(BaseModel):
    """A notification an alert owed a channel, and how it ended."""

    channel: str
    kind: str
    state: str
    attempts: int
    detail: str | None
    created_at: datetime
    updated_at: datetime


class AttemptView(BaseModel):
    """One try to send a notification."""

    at: datetime
    channel: str
    kind: str
    attempt: int
    status: str
    http_status: int | None
    error: str | None


class AlertView(BaseModel):
    """An alert occurrence whole: its text, history and deliveries."""

    alert_id: str
    dedupe_key: str
    type: str
    severity: str
    state: str
    bucket: str | None
    title: str
    detail: str
    source: str
    context: dict[str, Any]
    fired_at: datetime
    last_seen_at: datetime | None
    repeats: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    history: list[AlertEvent]
    deliveries: list[DeliveryView]
    attempts: list[AttemptView]
    other_occurrences: list[str] = Field(
        description="Alert ids of the other occurrences of the same dedupe key."
    )


class ConsumerLag(BaseModel):
    """How far one consumer group is behind on a topic."""

    group: str
    lag: int
    capped: bool = Field(description="The count stopped at its cap: at least `lag`.")


class TopicView(BaseModel):
    """A topic's consumer lag and its dead-letter topic's depth."""

    topic: str
    consumers: list[ConsumerLag]
    dlq: str | None
    dlq_depth: int | None = Field(description="Messages in the DLQ (null: none, or unknown).")


class TopicsView(BaseModel):
    """Lag and DLQ depth per topic; `errors` says what could not be read in time."""

    topics: list[TopicView]
    errors: list[str]


class AuditFilter(BaseModel):
    """Which audit entries to read."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditEntry(BaseModel):
    """One change an operator made."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    """Audit entries newest first."""

    entries: list[AuditEntry]
    next_cursor: str | None


class ExportFormat(StrEnum):
    """How the audit log is exported."""

    CSV = "csv"
    JSON = "json"


class BulkAction(StrEnum):
    """What a bulk request does to each bucket."""

    APPROVE = "approve"
    DISABLE = "disable"
    REMOVE = "remove"
    MERGE = "merge"


class BulkRequest(BaseModel):
    """Buckets to change, by names or by a filter (one of them), and how."""

    action: BulkAction
    names: list[Annotated[str, StringConstraints(pattern=BUCKET_NAME_PATTERN)]] | None = Field(
        default=None, max_length=1000, description="The buckets' names (at most 1,000)."
    )
    filter: BucketFilter | None = Field(
        default=None, description="Every bucket matching it (at most 1,000 may match)."
    )
    into: Annotated[str, StringConstraints(pattern=BUCKET_NAME_PATTERN)] | None = Field(
        default=None, description="For merge: the bucket that stays."
    )


class BulkOutcome(BaseModel):
    """What the action did to one bucket."""

    name: str
    outcome: str = Field(
        description="updated, unchanged, removed, merged, not_found or refused (see detail)."
    )
    state: str | None = None
    detail: str | None = None


class BulkResponse(BaseModel):
    """One outcome per bucket, and how many of each."""

    action: BulkAction
    outcomes: list[BulkOutcome]
    counts: dict[str, int]


class AlertChange(BaseModel):
    """What acknowledging or resolving an alert did."""

    alert_id: str
    outcome: str = Field(
        description="acknowledged, unchanged, or queued (a resolve the notifier applies)."
    )


class ChannelTest(BaseModel):
    """A queued channel test: follow `GET /api/v1/alerts/{alert_id}` for its delivery."""

    channel: str
    alert_id: str


class ChannelView(BaseModel):
    """A notification channel as its deliveries show it."""

    channel: str
    last_delivery_at: datetime | None
    last_state: str | None
    sent_24h: int
    failed_24h: int

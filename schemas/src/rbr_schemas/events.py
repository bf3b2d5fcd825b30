"""The data carried by each topic's events.

These models are the contract between the services and with anyone subscribing from outside
the repo. Change them only in backward-compatible ways (new optional fields); anything else
needs a new event type version (see the schema evolution runbook in docs/operations.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rbr_schemas.envelope import UtcDatetime

BUCKET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

BucketName = Annotated[
    str,
    StringConstraints(pattern=BUCKET_NAME_PATTERN),
    Field(
        description=(
            "The bucket's unique name (letters, digits, '.', '_' and '-'; at most 128); "
            "the Kafka key of its events."
        ),
        examples=["rustbucket-a1B2c3D4"],
    ),
]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(max_length=255)]


class _Data(BaseModel):
    """Base of every event's data: tolerant of fields added by newer producers."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Severity(StrEnum):
    """How urgent an alert or finding is, from least to most."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Returns the position of this severity in the order info < ... < critical."""
        return _SEVERITY_ORDER.index(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank


_SEVERITY_ORDER = list(Severity)


class BucketState(StrEnum):
    """Lifecycle of a registered bucket; only active buckets are polled and pulled."""

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryMode(StrEnum):
    """How a bucket's logs and status reach the registry.

    * `pull`: the registry calls the bucket (`/update_bucket`, `/extract_logs`);
    * `agent`: the same protocol, served by the bucket agent (`rbr-agent`) beside the honeypot;
    * `s3-drop`: the honeypot uploads its log files to an S3 drop location and the registry
      reads them from there; it is never called, and its health is the freshness of its
      uploads.
    """

    PULL = "pull"
    AGENT = "agent"
    S3_DROP = "s3-drop"

    @property
    def polled(self) -> bool:
        """Tells whether buckets of this mode are called (polled, pulled) by the registry."""
        return self is not DeliveryMode.S3_DROP


class BucketMetrics(_Data):
    """Free-text metrics a rustbucket reports about itself; any of them may be absent."""

    cpu_usage: ShortText | None = None
    memory_usage: ShortText | None = None
    disk_space: ShortText | None = None
    uptime: ShortText | None = None
    connections: ShortText | None = None


class S3Source(_Data):
    """Where a bucket writes its own logs, when it does: the registry copies from there."""

    bucket_name: Annotated[str, StringConstraints(min_length=3, max_length=63)]
    region: ShortText = "us-east-1"
    prefix: Annotated[str, StringConstraints(max_length=1024)] = "logs/"


class BucketRegistered(_Data):
    """The registration record of one bucket: the value of `bucket.registered`.

    A new value is published on every change; a tombstone (null value) on removal.
    """

    bucket_id: str = Field(description="Stable id assigned by the registrar.")
    name: BucketName
    state: BucketState
    ip_address: str = Field(description="IP literal the registry calls the bucket at.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Port to call, when not the default 443."
    )
    operating_system: ShortText | None = None
    metrics: BucketMetrics = Field(default_factory=BucketMetrics)
    s3: S3Source | None = Field(
        default=None, description="Present when the bucket writes its logs to its own S3 bucket."
    )
    delivery_mode: DeliveryMode = Field(
        default=DeliveryMode.PULL,
        description=(
            "How the bucket's logs reach the registry: pull (called by the registry), agent "
            "(the same, served by rbr-agent) or s3-drop (uploads to a drop location; never "
            "called). Records from before delivery modes existed are pull."
        ),
    )
    token_ciphertext: str = Field(
        description=(
            "The bucket's token encrypted with the registry's RBR_SECRET_KEY (Fernet). "
            "Never the token in clear."
        )
    )
    tls_cert_sha256: Sha256Hex | None = Field(
        default=None,
        description=(
            "SHA-256 (lowercase hex) of the DER certificate the bucket serves HTTPS with, "
            "pinned at registration (the bucket agent's own self-signed certificate). When "
            "present, the poller and the log-extractor accept exactly this certificate "
            "instead of verifying a CA chain, and call the bucket over HTTPS."
        ),
    )
    registered_at: UtcDatetime
    updated_at: UtcDatetime
    version: int = Field(
        ge=1, description="Increases with every change; a consumer may drop older versions."
    )


class PollErrorClass(StrEnum):
    """Why a poll of a bucket did not give a usable answer."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    AUTH = "auth"
    BAD_RESPONSE = "bad_response"
    TOO_LARGE = "too_large"
    CONFIG = "config"


class BucketUpdate(_Data):
    """The `updates` fields a bucket answers `GET /update_bucket` with."""

    name: ShortText | None = None
    ip_address: ShortText | None = None
    operating_system: ShortText | None = None
    cpu_usage: ShortText | None = None
    memory_usage: ShortText | None = None
    disk_space: ShortText | None = None
    uptime: ShortText | None = None
    connections: ShortText | None = None


class BucketStatus(_Data):
    """One status snapshot per bucket per poll: the value of `bucket.status`."""

    bucket_id: str
    name: BucketName
    polled_at: UtcDatetime
    reachable: bool = Field(description="True when the bucket gave a valid answer.")
    latency_ms: float | None = Field(default=None, ge=0)
    http_status: int | None = None
    error_class: PollErrorClass | None = None
    error: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="Short, sanitised reason when the poll failed."
    )
    status: ShortText | None = Field(default=None, description="The bucket's own status word.")
    updates: BucketUpdate | None = None


class LogSource(StrEnum):
    """How the raw log object reached the registry's S3 bucket."""

    HTTP = "http"
    S3 = "s3"


class LogsExtracted(_Data):
    """A pointer to one raw log object stored in the registry's S3 bucket."""

    object_id: str = Field(description="Unique id of this raw object (part of its key).")
    name: BucketName
    ip_address: str
    s3_bucket: str
    s3_key: str
    size_bytes: int = Field(ge=0)
    sha256: Sha256Hex
    source: LogSource
    source_ref: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="The source object's s3:// URI, or the HTTP pull cursor."
    )
    first_event_at: UtcDatetime | None = None
    last_event_at: UtcDatetime | None = None
    extracted_at: UtcDatetime

    @property
    def uri(self) -> str:
        """Returns the object's s3:// URI."""
        return f"s3://{self.s3_bucket}/{self.s3_key}"


class LogsParsed(_Data):
    """What one raw object became once parsed into the `logs` table."""

    object_id: str
    name: BucketName
    s3_bucket: str
    s3_key: str
    sha256: Sha256Hex
    records: int = Field(ge=0, description="Records found in the object.")
    rows_inserted: int = Field(ge=0)
    duplicates_skipped: int = Field(ge=0, description="Records already in `logs` (re-parse).")
    unparsed_records: int = Field(ge=0, description="Records stored with type `unparsed`.")
    event_counts: dict[str, int] = Field(default_factory=dict)
    first_event_at: UtcDatetime | None = None
    last_event_at: UtcDatetime | None = None
    parsed_at: UtcDatetime


class InstanceStart(_Data):
    """One start of a honeypot that an uploaded log file records (its identity lines)."""

    instance_name: Annotated[str, StringConstraints(max_length=255)] = Field(
        description="The instance name the start logged (the folder it uploads to)."
    )
    registered_name: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None, description="The name it registered with in the same start-up, if logged."
    )


class DropFolderSeen(_Data):
    """What the log-extractor found in one instance folder of a drop location.

    Published when the folder is new, when its files changed, and at every scan while it is
    linked to no bucket (so a bucket registered later is linked at the next scan).
    """

    location: Annotated[str, StringConstraints(max_length=1100)] = Field(
        description="The drop location: `s3://BUCKET/PREFIX/` (PREFIX may be empty).",
        examples=["s3://honeypot-logs/rustbuckets/"],
    )
    region: ShortText = "us-east-1"
    folder: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="The instance folder's name (the honeypot's instance name)."
    )
    objects: int = Field(ge=0, description="Objects in the folder.")
    size_bytes: int = Field(ge=0, description="Their total size.")
    newest_upload_at: UtcDatetime | None = Field(
        default=None, description="The latest LastModified of its objects."
    )
    starts: list[InstanceStart] = Field(
        default_factory=list,
        max_length=100,
        description="Starts of the honeypot its files record (identity lines), oldest first.",
    )
    seen_at: UtcDatetime

    @property
    def uri(self) -> str:
        """Returns the folder's s3:// URI (ending with a slash)."""
        return f"{self.location}{self.folder}/"


class AlertState(StrEnum):
    """Whether the condition an alert describes holds (firing) or has ended (resolved)."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AlertType(StrEnum):
    """Alert types raised inside the registry; other producers may add their own."""

    BUCKET_UNRESPONSIVE = "bucket_unresponsive"
    ANALYSIS_FINDING = "analysis_finding"
    DAILY_SUMMARY = "daily_summary"
    CAMPAIGN = "campaign"
    TEST = "test"


TEST_CHANNEL_CONTEXT = "channel"
"""Context key of a `test` alert addressed to one notification channel (only it gets it)."""


def addressed_channel(alert: Alert) -> str | None:
    """Returns the channel a test alert is addressed to, if it is one addressed to a channel."""
    channel = alert.context.get(TEST_CHANNEL_CONTEXT)
    if alert.type != AlertType.TEST.value or not isinstance(channel, str):
        return None
    return channel


def unresponsive_dedupe_key(bucket: str) -> str:
    """Returns the dedupe key of a bucket's `bucket_unresponsive` alerts."""
    return f"{AlertType.BUCKET_UNRESPONSIVE.value}:{bucket}"


ContextValue = str | int | float | bool | None


class Alert(_Data):
    """An alert: the value of `alerts`, keyed by its dedupe key."""

    alert_id: str = Field(description="Id of this alert occurrence; stable across redelivery.")
    dedupe_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="Groups the firing and resolving events of one condition."
    )
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")] = Field(
        description="See AlertType for the types the registry raises."
    )
    severity: Severity
    state: AlertState
    bucket: BucketName | None = None
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    detail: Annotated[str, StringConstraints(max_length=20_000)] = ""
    source: ShortText = Field(description="The service or system that raised the alert.")
    occurred_at: UtcDatetime = Field(description="When the condition started or ended.")
    context: dict[str, ContextValue] = Field(
        default_factory=dict, description="Structured facts behind the alert."
    )


class IndicatorKind(StrEnum):
    """Kinds of indicator of compromise in the `iocs` feed."""

    IP = "ip"
    DOMAIN = "domain"
    URL = "url"
    SHA256 = "sha256"
    SHA1 = "sha1"
    MD5 = "md5"
    CREDENTIAL = "credential"
    USERNAME = "username"
    PASSWORD = "password"  # noqa: S105 - an indicator kind, not a secret
    COMMAND = "command"


TechniqueId = Annotated[str, StringConstraints(pattern=r"^T[0-9]{4}(\.[0-9]{3})?$")]


class UrlParts(_Data):
    """A URL indicator split into its parts."""

    scheme: ShortText
    host: ShortText
    port: int | None = Field(default=None, ge=0, le=65535)
    path: Annotated[str, StringConstraints(max_length=2048)] = "/"
    query: Annotated[str, StringConstraints(max_length=2048)] = ""


class IocRecord(_Data):
    """An indicator of compromise as the fleet knows it: the value of `iocs`.

    Published every time an analysis sights it (keyed `type:value`, so a compacting consumer
    keeps the latest state of every indicator), with its counts so far.
    """

    id: str = Field(
        description="Stable id of the indicator (uuid5 of type:value): the same in "
        "every event and export, so consumers can poll incrementally."
    )
    type: IndicatorKind
    value: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Normalised: refanged, lower-case host and scheme, hashes in lower-case hex."
    )
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    sightings: int = Field(ge=0, description="(bucket, analysis window) pairs that sighted it.")
    hits: int = Field(ge=0, description="Log records behind those sightings.")
    bucket_count: int = Field(ge=0, description="Distinct buckets that sighted it.")
    buckets: list[BucketName] = Field(default_factory=list, description="The first 50 of them.")
    techniques: list[TechniqueId] = Field(
        default_factory=list, description="MITRE ATT&CK Enterprise technique ids it evidences."
    )
    attack_version: ShortText | None = Field(
        default=None, description="ATT&CK version the technique ids were validated against."
    )
    roles: list[ShortText] = Field(
        default_factory=list, description="What it was seen doing: login, download, command, ..."
    )
    confidence: int = Field(ge=0, le=100, description="How sure the registry is it is hostile.")
    source: ShortText = Field(description="Who first reported it: rules or claude.")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    as_org: ShortText | None = Field(default=None, description="Autonomous system organisation.")
    geo_source: ShortText | None = Field(
        default=None, description="The offline database country and AS come from, with its date."
    )
    url: UrlParts | None = None
    new: bool = Field(description="True on the event of its first sighting in the fleet.")
    bucket: BucketName | None = Field(
        default=None, description="The bucket whose analysis sent this event."
    )
    window_start: UtcDatetime | None = None
    window_end: UtcDatetime | None = None

"""The shapes of the registrar's HTTP API: what buckets and operators send and get back.

Validation happens here, with messages that say what is wrong without repeating what was
sent: a registration carries the bucket's token, which must never be echoed.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from rbr_schemas import BucketState, DeliveryMode
from rbr_schemas.events import BUCKET_NAME_PATTERN

TOKEN_PATTERN = r"^[\x21-\x7e]{16,256}$"  # noqa: S105 - a pattern, not a secret
S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
S3_REGION_PATTERN = r"^[a-z0-9-]{2,32}$"
DROP_FOLDER_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^\x00-\x1f]{0,1024}/)?$"
DEFAULT_S3_REGION = "us-east-1"
UNKNOWN_ADDRESS = "0.0.0.0"  # noqa: S104 - an address nobody calls, not one to bind
"""The address of a bucket made of a drop folder when the operator gives none."""
DEFAULT_S3_PREFIX = "logs/"
NAME_PREFIX_PATTERN = r"^[A-Za-z0-9._-]{0,128}$"
# The notifier's channel names: the bucket names' characters, written differently on purpose
# (PATTERN_RULES is keyed by the pattern's text, and each must say its own message).
CHANNEL_NAME_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9._]{0,127}$"

# What each pattern means, said to whoever sent a value that does not match it.
PATTERN_RULES = {
    BUCKET_NAME_PATTERN: "must be 1 to 128 characters: letters, digits, '.', '_' or '-', "
    "starting with a letter or digit",
    TOKEN_PATTERN: "must be 16 to 256 printable ASCII characters without spaces",
    S3_BUCKET_PATTERN: "must be a valid S3 bucket name (3 to 63 lowercase letters, digits, "
    "'.' or '-')",
    S3_REGION_PATTERN: "must be an AWS region name such as us-east-1",
    NAME_PREFIX_PATTERN: "must be the start of a bucket name: letters, digits, '.', '_' or '-'",
    CHANNEL_NAME_PATTERN: "must be a channel's name as the notifier's channels file gives it: "
    "1 to 128 letters, digits, '.', '_' or '-'",
    DROP_FOLDER_PATTERN: "must be the folder's URI as `rbr sources list` shows it: "
    "s3://BUCKET/PREFIX/FOLDER/",
}


def reject_control_characters(value: str | None) -> str | None:
    """Refuses text with control or format characters (terminal escapes, bidi overrides)."""
    if value is not None and any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise ValueError("must not contain control characters")
    return value


def normalise_ip(value: str) -> str:
    """Returns the canonical form of an IP literal.

    Raises:
        ValueError: not an IPv4 or IPv6 address literal.
    """
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address literal, e.g. 203.0.113.7") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ValueError("must be an address without a zone (%...)")
    return address.compressed


def normalise_fingerprint(value: str) -> str:
    """Returns a SHA-256 fingerprint as 64 lowercase hex digits (colons and case accepted).

    Raises:
        ValueError: not 32 bytes written in hex.
    """
    digits = value.strip().replace(":", "").lower()
    if len(digits) != 64 or any(ch not in "0123456789abcdef" for ch in digits):
        raise ValueError(
            "must be the SHA-256 of the DER certificate: 64 hex digits (colons allowed)"
        )
    return digits


Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(reject_control_characters)]
BucketNameField = Annotated[str, StringConstraints(pattern=BUCKET_NAME_PATTERN)]
IpLiteral = Annotated[str, StringConstraints(max_length=64), AfterValidator(normalise_ip)]
CertFingerprint = Annotated[
    str, StringConstraints(max_length=128), AfterValidator(normalise_fingerprint)
]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
S3BucketName = Annotated[str, StringConstraints(pattern=S3_BUCKET_PATTERN)]
S3Region = Annotated[str, StringConstraints(pattern=S3_REGION_PATTERN)]
S3Prefix = Annotated[
    str, StringConstraints(max_length=1024), AfterValidator(reject_control_characters)
]


class _Request(BaseModel):
    # Unknown fields are ignored: a newer honeypot may send more than we know.
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetricsFields(_Request):
    """The free-text metrics a bucket reports about itself; each may be absent."""

    cpu_usage: Text | None = None
    memory_usage: Text | None = None
    disk_space: Text | None = None
    uptime: Text | None = None
    connections: Text | None = None

    def reported_metrics(self) -> dict[str, str]:
        """Returns the metrics that were sent (absent and null ones left out)."""
        fields = ("cpu_usage", "memory_usage", "disk_space", "uptime", "connections")
        return {name: value for name in fields if (value := getattr(self, name)) is not None}


class RegistrationRequest(MetricsFields):
    """`POST /register_bucket`: what rustbucket sends, plus optional port, S3 source and key."""

    name: BucketNameField = Field(examples=["rustbucket-a1B2c3D4"])
    ip_address: IpLiteral = Field(
        description="IP literal the registry calls the bucket at. The unspecified address "
        "(0.0.0.0 or ::) stands for the address the registration comes from.",
        examples=["203.0.113.7"],
    )
    operating_system: Text = Field(examples=["linux (x86_64)"])
    token: Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)] = Field(
        description="The bucket's own secret; the registry sends it back as "
        "`Authorization: Token <token>` when it calls the bucket. Stored encrypted.",
        json_schema_extra={"writeOnly": True},
    )
    port: Port | None = Field(default=None, description="Port to call when not 443.")
    tls_cert_sha256: CertFingerprint | None = Field(
        default=None,
        description="SHA-256 of the DER certificate the bucket serves HTTPS with (the bucket "
        "agent's own): the registry then accepts exactly that certificate when it calls the "
        "bucket, instead of verifying a CA chain. Leave out to have it verified by "
        "RBR_BUCKET_CA_FILE. A registration without it removes an earlier pin.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    delivery_mode: DeliveryMode | None = Field(
        default=None,
        description="How the bucket's logs reach the registry, when the bucket knows: the "
        "bucket agent sends `agent`. Left out, a new bucket is `pull` (`agent` when it pins "
        "its certificate) until a drop folder is linked to it; a mode an operator set is "
        "never changed by a registration.",
        examples=["agent"],
    )
    s3_bucket_name: S3BucketName | None = Field(
        default=None, description="The bucket's own S3 bucket, when it writes its logs there."
    )
    s3_region: S3Region | None = Field(default=None, description="Default us-east-1.")
    s3_prefix: S3Prefix | None = Field(default=None, description="Default logs/.")
    registration_key: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None,
        description="Enrollment key, when the registry requires one (or Authorization: Bearer).",
        json_schema_extra={"writeOnly": True},
    )


class SelfUpdateRequest(MetricsFields):
    """`PATCH /api/v1/buckets/{name}/self`: a bucket updates its metrics and S3 source.

    Fields left out keep their value. `s3_bucket_name: null` removes the S3 source.
    """

    operating_system: Text | None = None
    s3_bucket_name: S3BucketName | None = None
    s3_region: S3Region | None = None
    s3_prefix: S3Prefix | None = None


class RegistrationStatus(StrEnum):
    """What a registration did."""

    REGISTERED = "registered"
    UPDATED = "updated"
    PENDING = "pending"


class RegistrationResponse(BaseModel):
    """The answer to a registration."""

    status: RegistrationStatus = Field(
        description="registered: new and active; pending: waiting for an operator's approval; "
        "updated: the bucket was already registered with this token."
    )
    id: str = Field(description="The bucket's id in the registry.")


class FieldError(BaseModel):
    """What is wrong with one field of a request."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer: a one-line summary, and the fields at fault for a 422."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class S3View(BaseModel):
    """Where a bucket writes its own logs."""

    bucket_name: str
    region: str
    prefix: str


class BucketView(BaseModel):
    """A bucket as operators see it (never its token)."""

    id: str
    name: str
    state: BucketState
    delivery_mode: DeliveryMode = Field(
        description="pull, agent or s3-drop (never polled; judged by its uploads)."
    )
    delivery_mode_pinned: bool = Field(
        description="An operator set the mode: it is not inferred any more."
    )
    ip_address: str
    port: int | None
    tls_cert_sha256: str | None = Field(
        description="The pinned certificate's SHA-256, or null when verified by CA."
    )
    operating_system: str | None
    metrics: dict[str, str | None]
    s3: S3View | None
    version: int
    registered_at: datetime
    updated_at: datetime
    approved_at: datetime | None
    last_seen: datetime | None = Field(description="Last successful poll.")
    last_status_at: datetime | None = Field(description="Last poll, successful or not.")
    last_reachable: bool | None
    last_error_class: str | None
    last_latency_ms: float | None
    replaces: str | None = Field(
        default=None,
        description="The silent bucket this pending registration evidently replaces (same "
        "address and operating system): merge it into that bucket, or approve it as its own.",
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="Names of registrations merged into this bucket; they designate it.",
    )


class BucketPage(BaseModel):
    """One page of the bucket list."""

    buckets: list[BucketView]
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )
    total: int = Field(description="Buckets matching the filter, over all pages.")


class ChangeResponse(BaseModel):
    """The answer to an operator action or a bucket's own update."""

    status: str
    id: str
    name: str
    state: BucketState | None = None
    version: int | None = None


class RekeyResponse(BaseModel):
    """What re-keying one page of buckets found and did (no tokens, only names)."""

    dry_run: bool = Field(description="Only counted; nothing was stored.")
    checked: int = Field(description="Buckets looked at on this page.")
    current: int = Field(description="Already stored under the current (first) secret key.")
    stale: int = Field(
        description="Found stored under an older secret key (on a dry run: still to re-key)."
    )
    rekeyed: int = Field(
        description="Stored again under the current key and re-published (0 on a dry run)."
    )
    undecryptable: list[str] = Field(
        description="Names of buckets whose token no configured secret key decrypts."
    )
    next_after: str | None = Field(
        description="Pass as `after` to continue with the next page; null on the last page."
    )


DropFolderUri = Annotated[str, StringConstraints(max_length=1400, pattern=DROP_FOLDER_PATTERN)]


class DeliveryModeRequest(_Request):
    """`PUT /api/v1/buckets/{name}/delivery-mode`: how the bucket's logs reach the registry."""

    mode: DeliveryMode = Field(
        description="pull (the registry calls the bucket), agent (the same, served by "
        "rbr-agent) or s3-drop (the bucket uploads to a drop location; never called)."
    )


class S3SourceRequest(_Request):
    """`PUT /api/v1/buckets/{name}/s3-source`: where the bucket writes its own logs.

    The registry copies the objects under `{prefix}{bucket name}/` of that S3 bucket.
    """

    bucket_name: S3BucketName
    region: S3Region = DEFAULT_S3_REGION
    prefix: S3Prefix = DEFAULT_S3_PREFIX


class AdoptRequest(_Request):
    """`POST /api/v1/sources/adopt`: a drop folder is to feed an existing bucket."""

    source: DropFolderUri = Field(examples=["s3://honeypot-logs/rustbuckets/rustbucket-Q7r2Zk1p/"])
    bucket: BucketNameField = Field(examples=["rustbucket-a1B2c3D4"])
    move: bool = Field(default=False, description="Link it even if it feeds another bucket now.")


class NewBucketRequest(_Request):
    """`POST /api/v1/sources/new-bucket`: an unclaimed drop folder becomes a new bucket."""

    source: DropFolderUri = Field(examples=["s3://honeypot-logs/rustbuckets/rustbucket-Q7r2Zk1p/"])
    name: BucketNameField | None = Field(
        default=None, description="The new bucket's name; default: the folder's name."
    )
    ip_address: IpLiteral = Field(
        default=UNKNOWN_ADDRESS,
        description="The honeypot's address, if known (an s3-drop bucket is never called).",
    )
    operating_system: Text | None = None


class StartView(BaseModel):
    """A start of the honeypot recorded in a folder's files."""

    instance_name: str
    registered_name: str | None


class SourceView(BaseModel):
    """An instance folder of a drop location, and the bucket it feeds."""

    id: int
    uri: str = Field(description="s3://BUCKET/PREFIX/FOLDER/")
    location: str
    region: str
    folder: str
    bucket: str | None = Field(description="The bucket it feeds; null: unclaimed.")
    linked_by: str | None = Field(description="name, identity, restart or operator.")
    linked_at: datetime | None
    objects: int
    size_bytes: int
    newest_upload_at: datetime | None
    starts: list[StartView] = Field(description="Starts its files record (identity lines).")
    first_seen_at: datetime
    last_seen_at: datetime


class SourcePage(BaseModel):
    """One page of drop sources."""

    sources: list[SourceView]
    next_after: int | None = Field(description="Pass as `after` for the next page.")
    total: int


class NewBucketResponse(BaseModel):
    """The bucket made of a drop folder, and the folder."""

    bucket: ChangeResponse
    source: SourceView


class ReseedResponse(BaseModel):
    """How bucket.registered differed from the buckets table, and what was queued."""

    dry_run: bool = Field(description="Only compared; nothing was queued.")
    registered: int = Field(description="Buckets in the registry (the buckets table).")
    on_topic: int = Field(description="Buckets bucket.registered holds a record of.")
    topic_missing: bool = Field(
        description="The topic did not exist (created now, unless a dry run)."
    )
    missing: list[str] = Field(description="Buckets the topic holds no record of.")
    stale: list[str] = Field(
        description="Buckets the topic holds under another id or version (or invalid)."
    )
    removed: list[str] = Field(
        description="Names the topic still holds that are no longer registered (tombstoned)."
    )
    waiting: list[str] = Field(
        description="Names left alone: their announcement is waiting in the outbox."
    )
    records_queued: int = Field(
        description="Current records queued for publishing (0 on a dry run)."
    )
    tombstones_queued: int = Field(description="Tombstones queued for publishing (0 on a dry run).")


class MergeRequest(_Request):
    """`POST /api/v1/buckets/{name}/merge`: the bucket the registration is merged into."""

    into: BucketNameField = Field(
        description="The bucket that stays (keeps its name and history).",
        examples=["rustbucket-a1B2c3D4"],
    )


class MergeResponse(BaseModel):
    """The answer to a merge."""

    status: str = Field(description="merged, or unchanged (it had been merged before).")
    merged: str = Field(description="The name merged: now an alias of the bucket.")
    id: str = Field(description="The bucket's id (unchanged by the merge).")
    name: str = Field(description="The bucket's name (unchanged by the merge).")
    state: BucketState
    version: int
    identity_taken: bool = Field(
        description="The bucket took the registration's token and address (false: the "
        "registration was older than the one whose token the bucket holds, or merged before)."
    )

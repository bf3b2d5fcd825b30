"""The registrar's decisions, as pure functions over bucket rows.

What a registration, a bucket's own update or an operator's action does to a bucket is
decided here without a database, so the rules can be tested alone; `store.py` loads the
rows, applies these decisions and writes the results with their outbox events.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.secrets import constant_time_in
from rbr_schemas import (
    ALERTS,
    BUCKET_REGISTERED,
    Alert,
    AlertState,
    AlertType,
    BucketMetrics,
    BucketRegistered,
    BucketState,
    DeliveryMode,
    S3Source,
    Severity,
    unresponsive_dedupe_key,
)

SOURCE = "/rbr/registrar"
EVENT_NAMESPACE = uuid.UUID("5b0e7a4e-58b6-4a57-9a43-2f7c1d0b6c11")
METRIC_FIELDS = ("cpu_usage", "memory_usage", "disk_space", "uptime", "connections")


@dataclass(frozen=True)
class BucketRow:
    """One row of the `buckets` table."""

    id: str
    name: str
    state: str
    ip_address: str
    port: int | None
    operating_system: str | None
    cpu_usage: str | None
    memory_usage: str | None
    disk_space: str | None
    uptime: str | None
    connections: str | None
    s3_bucket_name: str | None
    s3_region: str | None
    s3_prefix: str | None
    token_hash: str = field(repr=False)
    token_ciphertext: str = field(repr=False)
    version: int
    registered_at: datetime
    updated_at: datetime
    approved_at: datetime | None = None
    replaces_id: str | None = None
    """The silent bucket this pending registration evidently replaces (`lineage.py`)."""
    last_seen: datetime | None = None
    last_status_at: datetime | None = None
    last_reachable: bool | None = None
    last_error_class: str | None = None
    last_latency_ms: float | None = None
    tls_cert_sha256: str | None = None
    """The certificate pinned at registration (sha256 of its DER form, hex), if any."""
    delivery_mode: str = DeliveryMode.PULL.value
    delivery_mode_pinned: bool = False
    """An operator chose the mode: it is never inferred again."""

    @classmethod
    def from_mapping(cls, mapping: Any) -> BucketRow:
        """Builds a row from a SQLAlchemy row mapping."""
        return cls(**{f.name: mapping[f.name] for f in fields(cls)})

    def values(self) -> dict[str, Any]:
        """Returns the row as column values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def metrics(self) -> dict[str, str | None]:
        """Returns the latest metrics."""
        return {name: getattr(self, name) for name in METRIC_FIELDS}

    @property
    def s3(self) -> S3Config | None:
        """Returns the bucket's own S3 source, if it has one."""
        if self.s3_bucket_name is None:
            return None
        return S3Config(self.s3_bucket_name, self.s3_region or "", self.s3_prefix or "")


@dataclass(frozen=True)
class S3Config:
    """Where a bucket writes its own logs."""

    bucket_name: str
    region: str
    prefix: str


@dataclass(frozen=True)
class Registration:
    """A validated registration, its token already hashed and encrypted."""

    name: str
    ip_address: str
    port: int | None
    operating_system: str
    metrics: dict[str, str]
    s3: S3Config | None
    token_hash: str = field(repr=False)
    token_ciphertext: str = field(repr=False)
    tls_cert_sha256: str | None = None
    """The certificate the bucket serves with, pinned (sha256 of its DER form, hex)."""
    delivery_mode: DeliveryMode | None = None
    """The delivery mode the registration states (the bucket agent says `agent`), if any."""
    enrolled: bool = False
    """Carried a valid enrollment key: a new bucket is active at once."""
    earlier_token_hashes: tuple[str, ...] = field(default=(), repr=False)
    """The token's hashes under the older secret keys still configured (key rotation)."""


@dataclass(frozen=True)
class SelfUpdate:
    """A bucket's own update: only the fields it sent (an absent field keeps its value)."""

    metrics: dict[str, str]
    operating_system: str | None = None
    s3: S3Config | None = None
    remove_s3: bool = False
    token_hash: str | None = field(default=None, repr=False)
    """The presented token's hash under the current secret key."""
    token_ciphertext: str | None = field(default=None, repr=False)
    """The presented token encrypted under the current secret key."""


class Verdict(StrEnum):
    """What a registration did to the registry."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Decision:
    """A verdict and the bucket row it leaves (None when nothing may change)."""

    verdict: Verdict
    row: BucketRow | None

    @property
    def writes(self) -> bool:
        """Tells whether the row must be written (and re-published)."""
        return self.verdict in (Verdict.CREATED, Verdict.UPDATED)


def stated_delivery_mode(registration: Registration) -> DeliveryMode | None:
    """Returns the delivery mode a registration tells of, if it tells of one.

    The mode it states wins (the bucket agent sends `delivery_mode: agent`); a registration
    that pins its certificate (`tls_cert_sha256`) comes from the bucket agent, which serves
    the pull protocol over its own certificate: `agent`. Anything else tells nothing.
    """
    if registration.delivery_mode is not None:
        return registration.delivery_mode
    if registration.tls_cert_sha256 is not None:
        return DeliveryMode.AGENT
    return None


def inferred_delivery_mode(registration: Registration) -> DeliveryMode:
    """Returns the delivery mode of a bucket registering for the first time.

    A mode the registration tells of (`stated_delivery_mode`: the bucket agent) is taken.
    Otherwise it says nothing of how logs are delivered: the real rustbucket sends neither a
    port nor an S3 source and serves nothing, and a registration with an S3 source (the original
    protocol, the simulator) comes from a bucket that answers polls and has its logs copied
    from its own S3 folder, as before. So such a new bucket is `pull`; it becomes `s3-drop`
    when a drop folder is linked to it while it has never answered a poll (see
    `mode_after_link`), or when an operator says so.
    """
    return stated_delivery_mode(registration) or DeliveryMode.PULL


def new_bucket(registration: Registration, bucket_id: str, now: datetime) -> BucketRow:
    """Returns the row of a bucket registering for the first time."""
    active = registration.enrolled
    s3 = registration.s3
    return BucketRow(
        id=bucket_id,
        name=registration.name,
        state=BucketState.ACTIVE if active else BucketState.PENDING,
        ip_address=registration.ip_address,
        port=registration.port,
        operating_system=registration.operating_system,
        cpu_usage=registration.metrics.get("cpu_usage"),
        memory_usage=registration.metrics.get("memory_usage"),
        disk_space=registration.metrics.get("disk_space"),
        uptime=registration.metrics.get("uptime"),
        connections=registration.metrics.get("connections"),
        s3_bucket_name=s3.bucket_name if s3 else None,
        s3_region=s3.region if s3 else None,
        s3_prefix=s3.prefix if s3 else None,
        token_hash=registration.token_hash,
        token_ciphertext=registration.token_ciphertext,
        version=1,
        registered_at=now,
        updated_at=now,
        approved_at=now if active else None,
        tls_cert_sha256=registration.tls_cert_sha256,
        delivery_mode=inferred_delivery_mode(registration).value,
    )


def decide_registration(
    existing: BucketRow | None, registration: Registration, bucket_id: str, now: datetime
) -> Decision:
    """Decides what a registration does.

    * a new name creates the bucket: active with a valid enrollment key, pending without;
    * the same name with the same token updates what changed (address, port, pinned
      certificate, operating system, the metrics sent, the S3 source if sent, the delivery
      mode it tells of unless an operator set one); with nothing changed it is a no-op;
    * the same name with another token is a conflict and changes nothing (no hijacking);
    * the same token stored under an older secret key (rotation) is stored again under the
      current key (an update, re-published so every service gets the new ciphertext);
    * a bucket an operator disabled stays disabled and unchanged.

    Args:
        existing: the stored bucket of that name, if any.
        registration: the validated registration.
        bucket_id: the id a new bucket gets.
        now: the time of the change.
    """
    if existing is None:
        return Decision(Verdict.CREATED, new_bucket(registration, bucket_id, now))
    current = hmac.compare_digest(existing.token_hash, registration.token_hash)
    earlier = constant_time_in(existing.token_hash, registration.earlier_token_hashes)
    if not current and not earlier:
        return Decision(Verdict.CONFLICT, None)
    if existing.state == BucketState.DISABLED:
        return Decision(Verdict.DISABLED, existing)
    changes: dict[str, Any] = {
        "ip_address": registration.ip_address,
        "port": registration.port,
        "tls_cert_sha256": registration.tls_cert_sha256,
        "operating_system": registration.operating_system,
        **registration.metrics,
    }
    if registration.s3 is not None:
        changes |= _s3_columns(registration.s3)
    stated = stated_delivery_mode(registration)
    if stated is not None and not existing.delivery_mode_pinned:
        # What the bucket says now wins over what was inferred; an operator's choice stays.
        changes["delivery_mode"] = stated.value
    if not current:
        # Stored under a secret key being rotated out: store it again under the current one.
        changes |= _token_columns(registration.token_hash, registration.token_ciphertext)
    return _changed(existing, changes, now)


def decide_self_update(existing: BucketRow, update: SelfUpdate, now: datetime) -> Decision:
    """Decides what a bucket's own update (metrics, operating system, S3 source) does.

    The caller has checked the token. When the stored hash is not the token's under the
    current key (it was accepted under an older one), the token is stored again under it.
    """
    changes: dict[str, Any] = dict(update.metrics)
    if update.operating_system is not None:
        changes["operating_system"] = update.operating_system
    if update.remove_s3:
        changes |= {"s3_bucket_name": None, "s3_region": None, "s3_prefix": None}
    elif update.s3 is not None:
        changes |= _s3_columns(update.s3)
    token_hash, ciphertext = update.token_hash, update.token_ciphertext
    if (
        token_hash is not None
        and ciphertext is not None
        and not hmac.compare_digest(existing.token_hash, token_hash)
    ):
        # The token was accepted under a secret key being rotated out: store it again under
        # the current one.
        changes |= _token_columns(token_hash, ciphertext)
    return _changed(existing, changes, now)


def decide_approval(existing: BucketRow, now: datetime) -> Decision:
    """Makes a pending or disabled bucket active (a no-op when it already is).

    Approving a registration marked as replacing another says it is a bucket of its own (a
    second honeypot on the same host): the mark is dropped.
    """
    if existing.state == BucketState.ACTIVE:
        return Decision(Verdict.UNCHANGED, existing)
    changes = {"state": BucketState.ACTIVE.value, "approved_at": now, "replaces_id": None}
    return _changed(existing, changes, now)


def decide_disable(existing: BucketRow, now: datetime) -> Decision:
    """Disables a bucket: it is no longer polled nor pulled (a no-op when it already is)."""
    return _changed(existing, {"state": BucketState.DISABLED.value}, now)


def decide_delivery_mode(existing: BucketRow, mode: DeliveryMode, now: datetime) -> Decision:
    """Sets the delivery mode an operator chose; pinned, so it is never inferred again."""
    return _changed(existing, {"delivery_mode": mode.value, "delivery_mode_pinned": True}, now)


def decide_s3_source(existing: BucketRow, s3: S3Config | None, now: datetime) -> Decision:
    """Sets (or with None removes) a bucket's own S3 source, as an operator asked."""
    if s3 is None:
        return _changed(
            existing, {"s3_bucket_name": None, "s3_region": None, "s3_prefix": None}, now
        )
    return _changed(existing, _s3_columns(s3), now)


def mode_after_link(existing: BucketRow, now: datetime) -> Decision:
    """Decides the delivery mode of a bucket a drop folder was just linked to.

    A `pull` bucket that has never answered a poll (the real rustbucket serves nothing) and
    whose logs turn up in a drop location is an `s3-drop` bucket: it is no longer polled and
    is judged by its uploads. A bucket that answers polls stays `pull` (its logs are then
    read from the folder, and it is still polled); a mode an operator chose is kept.
    """
    if (
        existing.delivery_mode != DeliveryMode.PULL.value
        or existing.delivery_mode_pinned
        or existing.last_seen is not None
    ):
        return Decision(Verdict.UNCHANGED, existing)
    return _changed(existing, {"delivery_mode": DeliveryMode.S3_DROP.value}, now)


def decide_rekey(
    existing: BucketRow, token_hash: str, token_ciphertext: str, now: datetime
) -> Decision:
    """Stores a bucket's token again under the current secret key (an operator's re-key).

    The caller made the hash and ciphertext from the stored token; the change is a new
    version, re-published like any update, so every service gets the new ciphertext.
    """
    return _changed(existing, _token_columns(token_hash, token_ciphertext), now)


def _s3_columns(s3: S3Config) -> dict[str, str]:
    return {"s3_bucket_name": s3.bucket_name, "s3_region": s3.region, "s3_prefix": s3.prefix}


def _token_columns(token_hash: str, token_ciphertext: str) -> dict[str, str]:
    return {"token_hash": token_hash, "token_ciphertext": token_ciphertext}


def _changed(existing: BucketRow, changes: dict[str, Any], now: datetime) -> Decision:
    differs = {
        name: value
        for name, value in changes.items()
        if name != "approved_at" and getattr(existing, name) != value
    }
    if not differs:
        return Decision(Verdict.UNCHANGED, existing)
    updated = replace(existing, **changes, version=existing.version + 1, updated_at=now)
    return Decision(Verdict.UPDATED, updated)


def registration_record(row: BucketRow) -> BucketRegistered:
    """Returns the bucket's `bucket.registered` record (the token only as ciphertext)."""
    s3 = row.s3
    return BucketRegistered(
        bucket_id=row.id,
        name=row.name,
        state=BucketState(row.state),
        ip_address=row.ip_address,
        port=row.port,
        operating_system=row.operating_system,
        metrics=BucketMetrics(**row.metrics),
        s3=S3Source(bucket_name=s3.bucket_name, region=s3.region, prefix=s3.prefix) if s3 else None,
        delivery_mode=DeliveryMode(row.delivery_mode),
        token_ciphertext=row.token_ciphertext,
        tls_cert_sha256=row.tls_cert_sha256,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def event_id(row: BucketRow) -> str:
    """Returns the id of the event of one version of a bucket: the same on every resend."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{row.id}:{row.version}"))


def removal_resolution(row: BucketRow, removed_at: datetime) -> tuple[str, bytes]:
    """Returns the (key, value) of the alert that closes a removed bucket's unresponsive alert.

    The poller stops looking at a removed bucket, so it would never resolve an alert left
    open; this resolve, keyed by the dedupe key, closes it. If none was open, consumers record
    a resolve of nothing (the notifier sends it to no channel).
    """
    key = unresponsive_dedupe_key(row.name)
    alert = Alert(
        alert_id=str(uuid.uuid5(EVENT_NAMESPACE, f"{key}:removed:{row.id}")),
        dedupe_key=key,
        type=AlertType.BUCKET_UNRESPONSIVE.value,
        severity=Severity.HIGH,
        state=AlertState.RESOLVED,
        bucket=row.name,
        title=f"Bucket {row.name} was removed from the registry",
        detail=f"Bucket {row.name} was removed by an operator; it is no longer polled.",
        source=SOURCE,
        occurred_at=removed_at,
        context={"reason": "removed"},
    )
    event = make_event(ALERTS, alert, source=SOURCE, subject=row.name, event_id=alert.alert_id)
    return key, encode(event)


def registration_message(row: BucketRow) -> bytes:
    """Returns the `bucket.registered` message value for the row's version."""
    event = make_event(
        BUCKET_REGISTERED,
        registration_record(row),
        source=SOURCE,
        subject=row.name,
        event_id=event_id(row),
        time=row.updated_at,
    )
    return encode(event)

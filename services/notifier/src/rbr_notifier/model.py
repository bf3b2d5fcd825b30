"""What the notifier sends: one alert's trigger or resolve, a digest of folded alerts, a test."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rbr_schemas import Severity

DELIVERY_NAMESPACE = uuid.UUID("5f3b8a1e-2d4c-4e6f-9a0b-7c1d2e3f4a5b")
_NAMESPACE_BYTES = DELIVERY_NAMESPACE.bytes


class Kind(StrEnum):
    """Why a message is sent."""

    TRIGGER = "trigger"
    RESOLVE = "resolve"
    DIGEST = "digest"
    TEST = "test"


class AlertState(StrEnum):
    """An alert occurrence's state in the `alerts` table."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"


class DeliveryState(StrEnum):
    """Where one (alert, channel, kind) delivery stands in `notifier_deliveries`."""

    PENDING = "pending"
    SENDING = "sending"
    WAITING = "waiting"  # for the retry sweeper: its first tries failed, or an earlier one waits
    SENT = "sent"
    THROTTLED = "throttled"
    DIGESTED = "digested"
    FAILED = "failed"
    REJECTED = "rejected"
    SKIPPED = "skipped"


NOTIFIED_STATES = frozenset({DeliveryState.SENT, DeliveryState.DIGESTED, DeliveryState.THROTTLED})
"""A trigger in one of these states reached (or will reach, in a digest) the channel."""


@dataclass(frozen=True)
class AlertView:
    """An alert occurrence as the channels render it (from the `alerts` table)."""

    alert_id: str
    dedupe_key: str
    type: str
    severity: Severity
    state: AlertState
    title: str
    detail: str
    source: str
    fired_at: datetime
    bucket: str | None = None
    resolved_at: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)
    acknowledged_at: datetime | None = None  # kept once resolved; not rendered

    def as_json(self) -> dict[str, Any]:
        """Returns the alert as a JSON-ready object (webhook bodies, custom details)."""
        return {
            "alert_id": self.alert_id,
            "dedupe_key": self.dedupe_key,
            "type": self.type,
            "severity": self.severity.value,
            "state": self.state.value,
            "bucket": self.bucket,
            "title": self.title,
            "detail": self.detail,
            "source": self.source,
            "fired_at": self.fired_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "context": dict(self.context),
        }


DIGEST_KEY_PREFIX = "rbr-digest:"


def digest_key(window_start: datetime) -> str:
    """Returns the key of a window's digests; the channel's name follows it on the wire."""
    return f"{DIGEST_KEY_PREFIX}{window_start.isoformat()}"


@dataclass(frozen=True)
class DigestItem:
    """One folded notification in a digest."""

    kind: Kind
    alert: AlertView


@dataclass(frozen=True)
class Digest:
    """The notifications one channel's throttle folded during one window."""

    window_start: datetime
    window_end: datetime
    items: tuple[DigestItem, ...]
    total: int

    @property
    def dedupe_key(self) -> str:
        """Returns the key identifying this digest (PagerDuty dedup_key, Opsgenie alias)."""
        return digest_key(self.window_start)

    @property
    def highest_severity(self) -> Severity:
        """Returns the most severe alert in the digest."""
        return max((item.alert.severity for item in self.items), default=Severity.INFO)


@dataclass(frozen=True)
class Notification:
    """One message to one channel."""

    kind: Kind
    channel: str
    alert: AlertView | None = None
    digest: Digest | None = None

    @property
    def delivery_id(self) -> str:
        """Returns an id stable across retries and redeliveries (receivers may dedupe on it)."""
        subject = self.alert.alert_id if self.alert else ""
        if self.digest is not None:
            subject = self.digest.dedupe_key
        return name_uuid(f"{subject}|{self.channel}|{self.kind}")

    @property
    def dedupe_key(self) -> str:
        """Returns the key the provider correlates trigger and resolve by."""
        if self.digest is not None:
            return f"{self.digest.dedupe_key}:{self.channel}"
        assert self.alert is not None
        return self.alert.dedupe_key

    def require_alert(self) -> AlertView:
        """Returns the alert of a trigger, resolve or test notification."""
        if self.alert is None:
            raise ValueError(f"a {self.kind} notification carries an alert")
        return self.alert

    def require_digest(self) -> Digest:
        """Returns the digest of a digest notification."""
        if self.digest is None:
            raise ValueError("a digest notification carries a digest")
        return self.digest


def name_uuid(name: str) -> str:
    """Returns `str(uuid.uuid5(DELIVERY_NAMESPACE, name))`, written from the SHA-1 digest.

    The same text for a quarter of the CPU time: `uuid.UUID` checks and converts its
    argument through an integer, and each webhook send makes one.
    """
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False)
    text = digest.hexdigest()
    # RFC 4122: version 5 in the 13th digit, the variant's two top bits 10 in the 17th.
    variant = "89ab"[int(text[16], 16) & 3]
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{variant}{text[17:20]}-{text[20:32]}"


def message_id(alert_id: str, channel: str, kind: Kind, domain: str) -> str:
    """Returns a stable RFC 5322 Message-ID, so a resolve can thread under its trigger."""
    token = uuid.uuid5(DELIVERY_NAMESPACE, f"{alert_id}|{channel}|{kind}")
    return f"<{token}@{domain}>"

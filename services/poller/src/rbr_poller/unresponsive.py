"""When a bucket's `bucket_unresponsive` alert fires and resolves, and what it says.

Pure functions of the bucket's poll (or upload) state, so every replica decides alike; the
rules are in the README's "Health alerts".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rbr_schemas import Alert, AlertState, AlertType, Severity, unresponsive_dedupe_key

ALERT_NAMESPACE = uuid.UUID("0b8f2a52-0d59-4c55-9d1c-7a6e3f1e9b41")
SOURCE = "poller"


@dataclass(frozen=True)
class HealthRow:
    """What the poller knows about one bucket's health (a row of `poller_state`)."""

    name: str
    first_seen_at: datetime
    last_success_at: datetime | None
    consecutive_failures: int
    last_error_class: str | None
    last_error: str | None
    alert_open: bool
    alert_id: str | None
    alert_opened_at: datetime | None
    last_attempt_at: datetime | None = None
    """When the latest recorded poll (success or failure) was made."""
    polling_since: datetime | None = None
    """When the current run of polls began (the first poll after a gap in polling)."""
    alert_basis: str | None = None
    """What the open alert judged: polls (None) or uploads (an s3-drop bucket)."""

    @property
    def silent_since(self) -> datetime:
        """Returns the start of the current silence, as seen by polls.

        The last success (or first sight), but never before the current run of polls began:
        the time before it nobody polled the bucket, so it proves nothing about the bucket.
        """
        since = self.last_success_at or self.first_seen_at
        polling = self.polling_since
        return max(since, polling) if polling is not None else since

    @property
    def latest_check_failed(self) -> bool:
        """Tells whether the latest recorded poll (or listing) found the bucket silent."""
        if self.last_success_at is None:
            return True
        attempt = self.last_attempt_at
        return attempt is not None and attempt > self.last_success_at

    def polled_recently(self, now: datetime, polling_gap: float) -> bool:
        """Tells whether a poll outcome was recorded within the polling gap (it is polled)."""
        attempt = self.last_attempt_at
        return attempt is not None and now - attempt <= timedelta(seconds=polling_gap)


def polling_gap(poll_interval: float, bucket_timeout: float) -> float:
    """Returns the longest normal time between two recorded polls of a bucket, in seconds.

    A bucket is polled once per slot at its own phase; a change of owner can make one poll
    due at once and the next at its phase in the following slot, so two polls can be up to
    two intervals apart, plus the poll's own time. A longer pause means polling stopped.
    """
    return 2 * poll_interval + bucket_timeout


class Transition(StrEnum):
    """A change of a bucket's alert."""

    FIRE = "fire"
    RESOLVE = "resolve"


def transition(
    row: HealthRow, now: datetime, unresponsive_after: float, polling_gap: float
) -> Transition | None:
    """Returns what must happen to the bucket's alert now, if anything.

    Args:
        row: the bucket's poll state.
        now: the time of the check.
        unresponsive_after: seconds of polling without a success before the alert fires.
        polling_gap: seconds without a recorded poll after which the bucket counts as not
            being polled (then nothing fires: the silence is the poller's).
    """
    if row.alert_open:
        opened = row.alert_opened_at
        if row.last_success_at is not None and (opened is None or row.last_success_at > opened):
            return Transition.RESOLVE
        return None
    if not row.polled_recently(now, polling_gap):
        return None
    if not row.latest_check_failed:
        return None  # it answered its latest poll: a late next poll is the poller's delay
    if now - row.silent_since >= timedelta(seconds=unresponsive_after):
        return Transition.FIRE
    return None


dedupe_key = unresponsive_dedupe_key


class Basis(StrEnum):
    """What a bucket is judged by: its polls, or (s3-drop buckets) the freshness of its uploads."""

    POLLS = "polls"
    UPLOADS = "uploads"


def basis_of(row: HealthRow) -> Basis:
    """Returns what the bucket's open alert (if any) judged."""
    return Basis.UPLOADS if row.alert_basis == Basis.UPLOADS.value else Basis.POLLS


def alert_id_for(name: str, silent_since: datetime, basis: Basis = Basis.POLLS) -> str:
    """Returns the stable id of the occurrence that began with the silence."""
    kind = "" if basis is Basis.POLLS else f"{basis.value}:"
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{dedupe_key(name)}:{kind}{silent_since.isoformat()}"))


def alert_event_id(alert_id: str, state: AlertState) -> str:
    """Returns the deterministic event id of an alert's firing or resolving event."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{alert_id}:{state.value}"))


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"


def firing_alert(row: HealthRow, now: datetime, unresponsive_after: float) -> Alert:
    """Returns the firing alert of a bucket gone silent."""
    since = row.silent_since
    minutes = (now - since).total_seconds() / 60
    if row.last_success_at is None:
        history = f"answered no poll since {_when(since)} (never answered one)"
    elif row.last_success_at < since:
        history = (
            f"answered no poll since polling resumed at {_when(since)} (last success "
            f"{_when(row.last_success_at)})"
        )
    else:
        history = f"no successful poll since {_when(since)}"
    last = f"{row.last_error_class}: {row.last_error}" if row.last_error_class else "none recorded"
    return Alert(
        alert_id=alert_id_for(row.name, since),
        dedupe_key=dedupe_key(row.name),
        type=AlertType.BUCKET_UNRESPONSIVE.value,
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket=row.name,
        title=f"Bucket {row.name} is unresponsive",
        detail=(
            f"Bucket {row.name} {history} ({minutes:.1f} min; threshold "
            f"{unresponsive_after / 60:g} min). Failed polls in a row: "
            f"{row.consecutive_failures}. Last error: {last}."
        ),
        source=SOURCE,
        occurred_at=now,
        context={
            "last_success_at": row.last_success_at.isoformat() if row.last_success_at else None,
            "first_seen_at": row.first_seen_at.isoformat(),
            "silent_since": since.isoformat(),
            "consecutive_failures": row.consecutive_failures,
            "last_error_class": row.last_error_class,
            "unresponsive_after_seconds": unresponsive_after,
        },
    )


def resolved_alert(row: HealthRow, occurred_at: datetime, reason: str | None = None) -> Alert:
    """Returns the resolving alert of an open occurrence (same dedupe key and alert id).

    Args:
        row: the bucket's state, with the open alert.
        occurred_at: when the condition ended (the successful poll, or now).
        reason: why it closes when not because the bucket answered (e.g. it was disabled).
    """
    assert row.alert_id is not None
    if reason is None:
        title = f"Bucket {row.name} is responding again"
        detail = (
            f"Bucket {row.name} answered a poll at {_when(row.last_success_at)}; the alert "
            f"opened at {_when(row.alert_opened_at)} is resolved."
        )
    else:
        title = f"Bucket {row.name}: unresponsive alert closed"
        detail = reason
    return Alert(
        alert_id=row.alert_id,
        dedupe_key=dedupe_key(row.name),
        type=AlertType.BUCKET_UNRESPONSIVE.value,
        severity=Severity.HIGH,
        state=AlertState.RESOLVED,
        bucket=row.name,
        title=title,
        detail=detail,
        source=SOURCE,
        occurred_at=occurred_at,
        context={
            "last_success_at": row.last_success_at.isoformat() if row.last_success_at else None
        },
    )


# -- s3-drop buckets: the freshness of their uploads -----------------------------------------------
#
# An s3-drop bucket is never polled. The log-extractor lists its folders every extraction and
# records the newest upload seen (S3's LastModified) and when it listed; a listing proves that
# nothing newer was uploaded before it. The same rules then apply with the listing as the
# "poll": the silence runs from the newest upload (or from the first listing, if none) to
# the latest listing, so an extractor that stops listing never makes a bucket look silent,
# and an upload newer than the listing that fired the alert resolves it.


def upload_transition(row: HealthRow, stale_after: float) -> Transition | None:
    """Returns what must happen to an s3-drop bucket's alert, judged at its latest listing.

    The row carries the newest upload as `last_success_at`, the latest listing as
    `last_attempt_at` and the first listing as `first_seen_at`.
    """
    checked = row.last_attempt_at
    if checked is None:
        return None
    return transition(row, checked, stale_after, polling_gap=0.0)


def stale_uploads_alert(row: HealthRow, stale_after: float) -> Alert:
    """Returns the firing alert of an s3-drop bucket whose uploads stopped."""
    checked = row.last_attempt_at
    assert checked is not None
    since = row.silent_since
    hours = (checked - since).total_seconds() / 3600
    history = (
        f"uploaded nothing since {_when(since)}"
        if row.last_success_at is not None
        else f"uploaded nothing since its folders were first listed at {_when(since)}"
    )
    last = row.last_error or "none recorded"
    return Alert(
        alert_id=alert_id_for(row.name, since, Basis.UPLOADS),
        dedupe_key=dedupe_key(row.name),
        type=AlertType.BUCKET_UNRESPONSIVE.value,
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket=row.name,
        title=f"Bucket {row.name} is unresponsive: no uploads for {hours:.1f} h",
        detail=(
            f"Bucket {row.name} (delivery mode s3-drop) {history}, as its folders listed at "
            f"{_when(checked)} show ({hours:.1f} h; threshold {stale_after / 3600:g} h). Last "
            f"extraction error: {last}."
        ),
        source=SOURCE,
        occurred_at=checked,
        context={
            "delivery_mode": "s3-drop",
            "last_upload_at": row.last_success_at.isoformat() if row.last_success_at else None,
            "checked_at": checked.isoformat(),
            "silent_since": since.isoformat(),
            "upload_stale_after_seconds": stale_after,
        },
    )


def uploads_resumed_alert(row: HealthRow) -> Alert:
    """Returns the resolving alert of an s3-drop bucket that uploaded again."""
    assert row.alert_id is not None
    assert row.last_success_at is not None
    return Alert(
        alert_id=row.alert_id,
        dedupe_key=dedupe_key(row.name),
        type=AlertType.BUCKET_UNRESPONSIVE.value,
        severity=Severity.HIGH,
        state=AlertState.RESOLVED,
        bucket=row.name,
        title=f"Bucket {row.name} is uploading again",
        detail=(
            f"Bucket {row.name} uploaded at {_when(row.last_success_at)}; the alert opened at "
            f"{_when(row.alert_opened_at)} is resolved."
        ),
        source=SOURCE,
        occurred_at=row.last_success_at,
        context={"delivery_mode": "s3-drop", "last_upload_at": row.last_success_at.isoformat()},
    )

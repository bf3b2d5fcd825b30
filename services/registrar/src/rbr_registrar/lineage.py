"""A honeypot's restarts under new names: which registration replaces which bucket, merging.

The real rustbucket registers under a fresh name at every start. A new pending registration
with the address and operating system of exactly one silent bucket's lineage is marked as
replacing it (`replaces_id`), a hint for an operator, never acted on alone (several honeypots
can share a host). Pure functions over bucket rows; `merges.py` applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

from rbr_registrar.domain import METRIC_FIELDS, BucketRow, Decision, _changed
from rbr_schemas import DeliveryMode

CROWDED_HOST = 64
"""Beyond this many registrations from one address and operating system (a simulated fleet on
one host, honeypots behind one NAT), no registration is marked as replacing another."""


IDENTITY_COLUMNS = (
    "token_hash",
    "token_ciphertext",
    "ip_address",
    "port",
    "tls_cert_sha256",
    "operating_system",
)
"""What a merge takes from the registration whatever it is: its token and where and how the
registry reaches it. The certificate pinned at registration (`tls_cert_sha256`, where buckets
have one) goes with the address it is served at."""
_ROW_COLUMNS = frozenset(f.name for f in fields(BucketRow))


class Lineaged(Protocol):
    """What the lineage rules read of a registration (a `BucketRow` or a `HostRow`)."""

    @property
    def id(self) -> str: ...  # noqa: D102 - the fields of `BucketRow`
    @property
    def ip_address(self) -> str: ...  # noqa: D102
    @property
    def operating_system(self) -> str | None: ...  # noqa: D102
    @property
    def replaces_id(self) -> str | None: ...  # noqa: D102
    @property
    def last_seen(self) -> datetime | None: ...  # noqa: D102
    @property
    def delivery_mode(self) -> str: ...  # noqa: D102


@dataclass(frozen=True)
class HostRow:
    """The columns of a host's registration the lineage rules read, and no more.

    A registration reads every earlier one of its host: their few columns, not whole rows
    with tokens and metrics, keep that read cheap.
    """

    id: str
    ip_address: str
    operating_system: str | None
    replaces_id: str | None
    last_seen: datetime | None
    delivery_mode: str


HOST_ROW_COLUMNS = tuple(f.name for f in fields(HostRow))


def last_sign_of_life(row: Lineaged, newest_upload: datetime | None = None) -> datetime | None:
    """Returns when the bucket's honeypot was last known to be alive, if ever.

    Args:
        row: the bucket.
        newest_upload: the newest upload the log-extractor saw in the S3 drop folders linked
            to the bucket (`drop_sources.newest_upload_at`), if any.

    Its last successful poll, or for an `s3-drop` bucket (never polled: the real rustbucket
    serves nothing) the newest upload to its drop folders, whichever is later. A bucket
    never polled that uploaded nothing (a pending registration, say) has none.
    """
    signs = [row.last_seen]
    if row.delivery_mode == DeliveryMode.S3_DROP.value:
        signs.append(newest_upload)
    return max((sign for sign in signs if sign is not None), default=None)


def is_silent(
    row: Lineaged, now: datetime, silence: timedelta, newest_upload: datetime | None = None
) -> bool:
    """Tells whether a bucket showed no sign of life in the last `silence`."""
    alive_at = last_sign_of_life(row, newest_upload)
    return alive_at is None or alive_at <= now - silence


def same_host(row: Lineaged, other: Lineaged) -> bool:
    """Tells whether two registrations come from the same address and operating system."""
    return (row.ip_address, row.operating_system) == (other.ip_address, other.operating_system)


def replaced_bucket(
    new: Lineaged,
    registered: Sequence[Lineaged],
    now: datetime,
    silence: timedelta,
    newest_uploads: Mapping[str, datetime] | None = None,
) -> str | None:
    """Returns the id of the bucket a new pending registration evidently replaces, or None.

    Args:
        new: the new registration's row.
        registered: the buckets already registered from its host (others are ignored).
        now: the time of the registration.
        silence: how long a bucket must have shown no sign of life to be replaced.
        newest_uploads: by bucket id, the newest upload to the drop folders linked to it
            (an `s3-drop` bucket's sign of life, `last_sign_of_life`).

    The host's buckets form lineages: a bucket, and the registrations marked as replacing it.
    With exactly one lineage whose bucket is silent, the new registration replaces that
    bucket. None with no lineage, with several (several honeypots on the host: which one
    restarted cannot be told), with a live bucket, or on a crowded host.
    """
    host = [r for r in registered if r.id != new.id and same_host(r, new)]
    if not host or len(host) > CROWDED_HOST:
        return None
    by_id = {r.id: r for r in host}
    lineages = {r.replaces_id if r.replaces_id in by_id else r.id for r in host}
    if len(lineages) != 1:
        return None
    bucket = by_id[lineages.pop()]
    newest_upload = (newest_uploads or {}).get(bucket.id)
    return bucket.id if is_silent(bucket, now, silence, newest_upload) else None


@dataclass(frozen=True)
class MergePlan:
    """What merging a registration into a bucket does to the bucket."""

    decision: Decision
    """The bucket after the merge (UPDATED: a new version to write and publish)."""
    identity_taken: bool
    """The bucket took the registration's token and address (else only its name)."""


def plan_merge(
    merged: BucketRow,
    into: BucketRow,
    merged_since: datetime,
    into_since: datetime,
    now: datetime,
) -> MergePlan:
    """Decides what merging registration `merged` into bucket `into` does to the bucket.

    Args:
        merged: the registration folded in (removed afterwards; its name becomes an alias).
        into: the bucket that stays.
        merged_since: when the registration whose token `merged` holds was made.
        into_since: when the registration whose token `into` holds was made.
        now: the time of the merge.

    A bucket holds the token of its own registration, or of the latest registration merged
    into it whose token it took (`identity_since`). The bucket takes the token, address,
    port and operating system of the merged registration, the metrics it reported and its S3
    source if it sent one; its id, name, state, history and poll records stay. A registration
    older than the one whose token the bucket holds (an earlier restart, merged late) gives
    only its name: its token died with its process. The drop folders linked to the
    registration feed the bucket afterwards, and its delivery mode may follow them
    (`delivery_mode_after_merge`).
    """
    if merged_since < into_since:
        mode = delivery_mode_after_merge(merged, into, identity_taken=False)
        return MergePlan(_changed(into, mode, now), identity_taken=False)
    changes: dict[str, Any] = {
        name: getattr(merged, name) for name in IDENTITY_COLUMNS if name in _ROW_COLUMNS
    }
    changes |= delivery_mode_after_merge(merged, into, identity_taken=True)
    changes |= {
        name: value for name in METRIC_FIELDS if (value := getattr(merged, name)) is not None
    }
    if merged.s3_bucket_name is not None:
        changes |= {
            "s3_bucket_name": merged.s3_bucket_name,
            "s3_region": merged.s3_region,
            "s3_prefix": merged.s3_prefix,
        }
    return MergePlan(_changed(into, changes, now), identity_taken=True)


def delivery_mode_after_merge(
    merged: BucketRow, into: BucketRow, *, identity_taken: bool
) -> dict[str, str]:
    """Returns the delivery mode change merging `merged` into `into` makes, if any.

    A mode an operator set on the bucket stays. A registration that became `s3-drop` (a
    drop folder was linked to it: the folder feeds the bucket after the merge) makes a
    bucket that never answered a poll `s3-drop`, as linking that folder to it would have
    (`domain.mode_after_link`). A registration of the bucket agent (`agent`) makes the bucket
    `agent` when the bucket takes its identity: its pinned certificate goes with it.
    """
    if into.delivery_mode_pinned or merged.delivery_mode == into.delivery_mode:
        return {}
    if merged.delivery_mode == DeliveryMode.S3_DROP.value and into.last_seen is None:
        return {"delivery_mode": merged.delivery_mode}
    if merged.delivery_mode == DeliveryMode.AGENT.value and identity_taken:
        return {"delivery_mode": merged.delivery_mode}
    return {}


def identity_since(row: BucketRow, merged_registrations: Sequence[datetime]) -> datetime:
    """Returns when the registration whose token a bucket holds was made.

    Args:
        row: the bucket.
        merged_registrations: when each registration merged into it was made.

    A merge takes the token of a registration only when it is the newest (`plan_merge`), so
    the newest of the bucket's own registration and those merged into it holds the token.
    """
    return max([row.registered_at, *merged_registrations])

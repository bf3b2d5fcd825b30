"""Consumer handlers of the registrar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from rbr_registrar.repository import BucketRepository, status_updates
from rbr_runtime.kafka import Inbound, Rejection
from rbr_schemas import BucketStatus

STATUSES_APPLIED = Counter(
    "rbr_bucket_statuses_applied_total",
    "bucket.status events that changed a bucket's last status (older or unknown: ignored).",
)


def apply_statuses(repository: BucketRepository, batch: Sequence[Inbound[Any]]) -> list[Rejection]:
    """Keeps `last_seen`, the last poll's outcome and the latest metrics of each bucket.

    Idempotent: an older status never overwrites a newer one, statuses of unknown buckets are
    ignored, so a redelivered or replayed batch changes nothing.

    Returns:
        The statuses whose key is not the bucket they describe (dead-lettered; the others of
        the batch are applied).
    """
    statuses: list[BucketStatus] = []
    rejections: list[Rejection] = []
    for message in batch:
        if message.is_tombstone:
            continue
        status: BucketStatus = message.data
        if message.key_text != status.name:
            reason = (
                f"bucket.status keyed {str(message.key_text)[:130]!r} describes bucket "
                f"{status.name!r}; the key must be the bucket's name"
            )
            rejections.append(Rejection(message, reason))
            continue
        statuses.append(status)
    if statuses:
        STATUSES_APPLIED.inc(repository.apply_statuses(status_updates(statuses)))
    return rejections

"""Consumer handlers of the registrar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter

from rbr_registrar.sources import DropSources
from rbr_registrar.store import BucketRepository, status_updates
from rbr_runtime.kafka import Inbound, Rejection
from rbr_schemas import BucketStatus, DropFolderSeen

log = logging.getLogger(__name__)

STATUSES_APPLIED = Counter(
    "rbr_bucket_statuses_applied_total",
    "bucket.status events that changed a bucket's last status (older or unknown: ignored).",
)


def apply_statuses(repository: BucketRepository, batch: Sequence[Inbound[Any]]) -> list[Rejection]:
    """Keeps `last_seen`, the last poll's outcome, the latest metrics and the status history.

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
        STATUSES_APPLIED.inc(repository.apply_statuses(status_updates(statuses), statuses))
    return rejections


DROP_REPORTS = Counter(
    "rbr_registrar_drop_reports_total",
    "drop.discovered reports recorded (recorded) and folders they linked (linked).",
    ["outcome"],
)


def apply_discoveries(
    sources: DropSources, on_commit: Callable[[], None], batch: Sequence[Inbound[Any]]
) -> list[Rejection]:
    """Records the drop folders the log-extractor found and links them to buckets.

    Idempotent: a report only sets facts (the latest wins) and links a folder that is not
    linked yet, so a redelivered batch changes nothing more.

    Returns:
        The reports whose key is not the folder they describe (dead-lettered; the others of
        the batch are recorded).
    """
    reports: list[DropFolderSeen] = []
    rejections: list[Rejection] = []
    for message in batch:
        if message.is_tombstone:
            continue
        seen: DropFolderSeen = message.data
        if message.key_text != seen.uri:
            reason = (
                f"drop.discovered keyed {str(message.key_text)[:300]!r} describes "
                f"{seen.uri[:300]!r}; the key must be the folder's URI"
            )
            rejections.append(Rejection(message, reason))
            continue
        reports.append(seen)
    if not reports:
        return rejections
    linked = sources.record(reports)
    DROP_REPORTS.labels("recorded").inc(len(reports))
    DROP_REPORTS.labels("linked").inc(len(linked))
    for uri in linked:
        log.info("drop folder %s linked to its bucket", uri)
    if linked:
        on_commit()
    return rejections

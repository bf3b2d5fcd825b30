"""Consumer handlers of the registrar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter

from rbr_registrar.repository import BucketRepository, status_updates
from rbr_registrar.sources import DropSources
from rbr_runtime.kafka import Inbound, PermanentError
from rbr_schemas import BucketStatus, DropFolderSeen

log = logging.getLogger(__name__)

STATUSES_APPLIED = Counter(
    "rbr_bucket_statuses_applied_total",
    "bucket.status events that changed a bucket's last status (older or unknown: ignored).",
)


def apply_statuses(repository: BucketRepository, batch: Sequence[Inbound[Any]]) -> None:
    """Keeps `last_seen`, the last poll's outcome and the latest metrics of each bucket.

    Idempotent: an older status never overwrites a newer one, statuses of unknown buckets are
    ignored, so a redelivered or replayed batch changes nothing.

    Raises:
        PermanentError: a status whose key is not the bucket it describes (dead-lettered).
    """
    statuses: list[BucketStatus] = []
    for message in batch:
        if message.is_tombstone:
            continue
        status: BucketStatus = message.data
        if message.key_text != status.name:
            raise PermanentError(
                f"bucket.status keyed {str(message.key_text)[:130]!r} describes bucket "
                f"{status.name!r}; the key must be the bucket's name"
            )
        statuses.append(status)
    if statuses:
        STATUSES_APPLIED.inc(repository.apply_statuses(status_updates(statuses)))


DROP_REPORTS = Counter(
    "rbr_registrar_drop_reports_total",
    "drop.discovered reports recorded (recorded) and folders they linked (linked).",
    ["outcome"],
)


def apply_discoveries(
    sources: DropSources, on_commit: Callable[[], None], batch: Sequence[Inbound[Any]]
) -> None:
    """Records the drop folders the log-extractor found and links them to buckets.

    Idempotent: a report only sets facts (the latest wins) and links a folder that is not
    linked yet, so a redelivered batch changes nothing more.

    Raises:
        PermanentError: a report whose key is not the folder it describes (dead-lettered).
    """
    reports: list[DropFolderSeen] = []
    for message in batch:
        if message.is_tombstone:
            continue
        seen: DropFolderSeen = message.data
        if message.key_text != seen.uri:
            raise PermanentError(
                f"drop.discovered keyed {str(message.key_text)[:300]!r} describes "
                f"{seen.uri[:300]!r}; the key must be the folder's URI"
            )
        reports.append(seen)
    if not reports:
        return
    linked = sources.record(reports)
    DROP_REPORTS.labels("recorded").inc(len(reports))
    DROP_REPORTS.labels("linked").inc(len(linked))
    for uri in linked:
        log.info("drop folder %s linked to its bucket", uri)
    if linked:
        on_commit()

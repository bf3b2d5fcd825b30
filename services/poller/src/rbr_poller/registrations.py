"""Reading every bucket's registration from `bucket.registered`, without joining a group.

`rbr run-task pull_updates` and `health_check` act on the whole fleet, not on a replica's
share: they read every partition from the beginning to its end, keeping the latest record
per bucket (a tombstone removes it). The reading itself is the runtime's `read_registry`.
"""

from __future__ import annotations

from rbr_runtime.kafka.directory import read_registry
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BucketRegistered


def read_registrations(
    settings: CommonSettings, timeout: float = 60.0
) -> dict[str, BucketRegistered]:
    """Returns the current registration of every bucket, by name.

    Raises:
        TopicMissing: bucket.registered does not exist.
        TimeoutError: the topic could not be read to its end in time (broker down?).
    """
    records = read_registry(settings, timeout)
    return {name: record for name, record in records.items() if record is not None}

"""Analysis windows: fixed slots of ingestion time (`logs.created_at`) per bucket.

A window's content is fixed once it has ended (rows are stamped with the time they were
inserted), so analysing it later, or again after a replay, sees the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rbr_runtime.schedule import slot_of, slot_start


@dataclass(frozen=True)
class Window:
    """One bucket's logs inserted in [start, end)."""

    bucket: str
    start: datetime
    end: datetime

    @classmethod
    def containing(cls, bucket: str, moment: datetime, interval: float) -> Window:
        """Returns the bucket's window that contains the moment."""
        start = slot_start(slot_of(moment, interval), interval)
        return cls(bucket, start, start + timedelta(seconds=interval))

    @classmethod
    def starting(cls, bucket: str, start: datetime, interval: float) -> Window:
        """Returns the bucket's window that starts at `start`."""
        return cls(bucket, start, start + timedelta(seconds=interval))

    def label(self) -> str:
        """Returns a short human-readable name: bucket and UTC range."""
        return f"{self.bucket} {self.start:%Y-%m-%d %H:%M} to {self.end:%H:%M} UTC"


def window_starts_between(first: datetime, last: datetime, interval: float) -> list[datetime]:
    """Returns the start of every window from the one holding `first` to the one holding `last`."""
    first_slot, last_slot = slot_of(first, interval), slot_of(last, interval)
    return [slot_start(slot, interval) for slot in range(first_slot, last_slot + 1)]

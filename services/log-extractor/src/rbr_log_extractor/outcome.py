"""How one extraction ends, whichever way the logs came: what it stored, or why it failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rbr_log_extractor.storage import StoredObject


class ExtractionError(Exception):
    """The bucket's logs could not be extracted this time.

    Attributes:
        reason: a short description, free of secrets (stored as `last_error`).
        outage: the registry's own dependency that was down ("database", "S3", "broker"),
            or None when the bucket failed (or the data was bad): an outage is retried as
            soon as the dependency is back, a bucket's failure at its next slot.
        recorded: whether the failure made it into `extract_cursors` (not while the
            database is down: the scheduler records it when the database is back).
    """

    def __init__(self, reason: str, *, outage: str | None = None, recorded: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outage = outage
        self.recorded = recorded


class Interrupted(Exception):
    """The service is stopping; the transfer was abandoned and nothing was announced."""


@dataclass
class Outcome:
    """What one extraction stored (and, from S3, the newest upload its listings showed)."""

    objects: int = 0
    bytes: int = 0
    newest_upload_at: datetime | None = None

    def add(self, stored: StoredObject | None) -> None:
        """Counts a stored object."""
        if stored is not None:
            self.objects += 1
            self.bytes += stored.size

    def saw(self, item: Any) -> None:
        """Takes note of a listed source object's upload time."""
        modified = item.get("LastModified")
        if modified is not None and (
            self.newest_upload_at is None or modified > self.newest_upload_at
        ):
            self.newest_upload_at = modified


def check_stopping(stopping: Callable[[], bool]) -> None:
    """Raises Interrupted if the service is stopping."""
    if stopping():
        raise Interrupted("stopping")


def describe(error: BaseException) -> str:
    """Returns a short reason for a failure, free of secrets (tokens travel in headers only)."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"S3 {details.get('Code', '?')}: {details.get('Message', '')}"[:500]
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]

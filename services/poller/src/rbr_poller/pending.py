"""Poll results waiting to be published and recorded, in a buffer of bounded size."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import Counter

from rbr_schemas import BucketStatus

log = logging.getLogger(__name__)

STATUSES_DROPPED = Counter(
    "rbr_statuses_dropped_total",
    "Poll results dropped unpublished because too many waited (broker or database down).",
)
LOG_EVERY = 30.0

Result = tuple[BucketStatus, str | None]
"""A polled status and the id of its event."""


class PendingResults:
    """The results not yet recorded, oldest first, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[Result] = deque()
        self._dropped_unlogged = 0
        self._next_log = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, result: Result) -> None:
        """Adds a new result (the oldest is dropped if the buffer is full)."""
        self._items.append(result)
        self._bound()

    def take(self) -> list[Result]:
        """Removes and returns every waiting result, oldest first."""
        batch = list(self._items)
        self._items.clear()
        return batch

    def put_back(self, batch: Iterable[Result]) -> None:
        """Returns results that could not be recorded, ahead of those added since."""
        self._items.extendleft(reversed(list(batch)))
        self._bound()

    def _bound(self) -> None:
        excess = len(self._items) - self._limit
        for _ in range(max(0, excess)):
            self._items.popleft()
        if excess <= 0:
            return
        STATUSES_DROPPED.inc(excess)
        self._dropped_unlogged += excess
        if time.monotonic() < self._next_log:
            return
        self._next_log = time.monotonic() + LOG_EVERY
        log.warning(
            "dropped the %d oldest unpublished poll result(s): more than %d waited for the "
            "broker or database",
            self._dropped_unlogged,
            self._limit,
        )
        self._dropped_unlogged = 0

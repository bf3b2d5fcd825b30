"""The `logs.parsed` handler: tally the object's rows, and note which windows await analysis.

The object's rows go into its windows' tallies (`window_tallies`). A replay of `logs.parsed`
adds nothing: the object is folded, and the entry exists or the window's analysis is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from rbr_analyst.store import AnalystStore
from rbr_analyst.windows import window_starts_between
from rbr_runtime.kafka import Inbound
from rbr_schemas import LogsParsed, utcnow

log = logging.getLogger(__name__)

WINDOWS_NOTED = Counter("rbr_analyst_windows_noted_total", "Windows added to the analysis backlog.")
LATE_ROWS = Counter(
    "rbr_analyst_late_rows_total",
    "Rows found in a window after its analysis was stored (not analysed).",
)
MAX_WINDOWS_PER_OBJECT = 48
"""An object's rows are inserted within seconds; more windows than this means a clock problem."""


def make_parsed_handler(
    store: AnalystStore, interval: float, clock: Callable[[], datetime] = utcnow
) -> Callable[[Sequence[Inbound[Any]]], None]:
    """Returns the `logs.parsed` batch handler."""

    def handle(batch: Sequence[Inbound[Any]]) -> None:
        for message in batch:
            note_object(store, message.data, interval, clock())

    return handle


def note_object(store: AnalystStore, parsed: LogsParsed, interval: float, now: datetime) -> int:
    """Adds the windows holding one parsed object's rows to the backlog; returns how many."""
    found = store.object_rows(parsed.name, parsed.sha256)
    if found is None:
        return 0  # no rows (an empty object, or removed by retention): nothing to analyse
    ip_address, first, last = found
    store.fold_object(parsed.name, parsed.sha256, interval)
    starts = window_starts_between(first, last, interval)[-MAX_WINDOWS_PER_OBJECT:]
    noted, analysed = store.note_windows(parsed.name, ip_address, starts, interval, now)
    WINDOWS_NOTED.inc(noted)
    for window in analysed:
        # A replay finds its rows covered; rows inserted after the analysis ran are not.
        missed = store.rows_missed(window)
        if missed:
            LATE_ROWS.inc(missed)
            log.warning(
                "%d row(s) of %s arrived after its analysis and are not analysed "
                "(raise RBR_ANALYSIS_GRACE if this recurs)",
                missed,
                window.label(),
                extra={"object_id": parsed.object_id},
            )
    return noted

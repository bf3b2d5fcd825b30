"""Gauges of a queue table (an outbox), measured from the table on a timer of their own.

An outbox relay that measured its backlog between sends stopped measuring while blocked in
one, so the gauges froze at their last values while the rows piled up behind a frozen broker.
Measuring the table on a separate thread keeps them true whatever the relay is doing.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Gauge
from sqlalchemy import ColumnElement, Engine, Table, func, select, true
from sqlalchemy.exc import DBAPIError

from rbr_runtime.errors import describe_error
from rbr_schemas import utcnow

log = logging.getLogger(__name__)


class BacklogGauges:
    """Sets `rows` to the table's row count and `oldest_seconds` to its oldest row's age.

    A component with `run` and `stop`. The table needs a `created_at` column; `where` limits
    the count to some rows (one service's in a shared table). While the database is down the
    gauges keep their last values (the database dependency reports the outage).
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        rows: Gauge,
        oldest_seconds: Gauge,
        interval: float,
        where: ColumnElement[bool] | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._where = true() if where is None else where
        self._rows = rows
        self._oldest_seconds = oldest_seconds
        self._interval = interval
        self._stop = threading.Event()

    def measure(self) -> None:
        """Reads the table once and sets the gauges.

        Raises:
            DBAPIError: the database failed.
        """
        with self._engine.connect() as connection:
            count, oldest = connection.execute(
                select(func.count(), func.min(self._table.c.created_at)).where(self._where)
            ).one()
        self._rows.set(count)
        self._oldest_seconds.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)

    def run(self) -> None:
        """Measures every interval until stop()."""
        while not self._stop.is_set():
            self._measure_quietly()
            self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stops measuring."""
        self._stop.set()

    def _measure_quietly(self) -> None:
        try:
            self.measure()
        except DBAPIError as error:
            log.debug("cannot measure %s: %s", self._table.name, describe_error(error))

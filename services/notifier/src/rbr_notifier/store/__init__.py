"""The notifier's tables, one store per aggregate: alerts, deliveries, windows.

Everything is written before anything is sent, so a crash loses nothing and handling an
event again finds its plan made. Core SQL only (MariaDB/MySQL and SQLite).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from rbr_notifier.store import retention
from rbr_notifier.store.alerts import AlertStore
from rbr_notifier.store.deliveries import DeliveryStore
from rbr_notifier.store.windows import WindowStore


class NotifierStore:
    """The notifier's stores on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.alerts = AlertStore(engine)
        self.deliveries = DeliveryStore(engine)
        self.windows = WindowStore(engine)

    def purge(self, cutoff: datetime, chunk: int = 1000) -> dict[str, int]:
        """Deletes what ended before `cutoff` (see `retention.purge`); returns counts by kind."""
        return retention.purge(self.engine, cutoff, chunk)

"""The `logs` table: batched idempotent inserts and bounded deletes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select

from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import logs

log = logging.getLogger(__name__)


class LogRows:
    """Writes parsed records to `logs` and deletes old ones."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = insert_ignore(engine, logs)

    def insert(self, rows: Sequence[dict[str, Any]]) -> int:
        """Inserts rows in one transaction, skipping those already present.

        Rows are identified by (source_sha256, record_no), so inserting the records of an
        object twice stores them once.

        Returns:
            How many rows were new.
        """
        if not rows:
            return 0
        with self._engine.begin() as connection:
            result = connection.execute(self._insert, list(rows))
        return max(0, result.rowcount)

    def delete_older_than(self, cutoff: datetime, chunk: int) -> Iterator[int]:
        """Deletes rows created before cutoff, chunk by chunk, one transaction each.

        Yields:
            The number of rows each chunk deleted (so the caller can report progress).
        """
        while True:
            with self._engine.begin() as connection:
                ids = (
                    connection.execute(
                        select(logs.c.id)
                        .where(logs.c.created_at < cutoff)
                        .order_by(logs.c.created_at)
                        .limit(chunk)
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    return
                deleted = connection.execute(delete(logs).where(logs.c.id.in_(ids))).rowcount
            yield deleted

    def count_for_object(self, source_sha256: str) -> int:
        """Returns how many rows came from the object with this sha256."""
        with self._engine.connect() as connection:
            count: int = connection.execute(
                select(func.count()).select_from(logs).where(logs.c.source_sha256 == source_sha256)
            ).scalar_one()
        return count

    def ping(self) -> str | None:
        """Readiness check: None when the database answers."""
        with self._engine.connect() as connection:
            connection.execute(select(1))
        return None

"""The audit log: every change an operator makes, written by `record_audit`, read and exported."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from rbr_registrar.operator.auth import Actor
from rbr_registrar.operator.views import AuditEntry, AuditFilter, AuditPage
from rbr_runtime.db.audit import write_audit
from rbr_runtime.db.tables import audit_log

EXPORT_PAGE = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("id", "at", "actor", "role", "action", "target", "outcome", "detail")


def record_audit(
    bind: Engine | Connection,
    actor: Actor,
    action: str,
    target: str | None,
    outcome: str,
    *,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Writes one audit entry (in the caller's transaction when given a connection).

    `detail` must hold no secret: it is shown to every operator who reads the log.
    """
    write_audit(
        bind,
        actor=actor.name,
        role=actor.role.value,
        action=action,
        target=target,
        outcome=outcome,
        detail=detail,
        at=at,
    )


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        detail=dict(row.detail or {}),
    )


def audit_page(engine: Engine, where: AuditFilter, cursor: int | None, limit: int) -> AuditPage:
    """Returns audit entries newest first; `cursor` is the id to continue below."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if where.actor is not None:
        query = query.where(audit_log.c.actor == where.actor)
    if where.action is not None:
        query = query.where(audit_log.c.action == where.action)
    if where.since is not None:
        query = query.where(audit_log.c.at >= where.since)
    if where.until is not None:
        query = query.where(audit_log.c.at < where.until)
    if cursor is not None:
        query = query.where(audit_log.c.id < cursor)
    with engine.connect() as connection:
        entries = [_entry(row) for row in connection.execute(query)]
    next_cursor = str(entries[-1].id) if len(entries) == limit else None
    return AuditPage(entries=entries, next_cursor=next_cursor)


def all_entries(engine: Engine, where: AuditFilter) -> Iterator[AuditEntry]:
    """Yields every matching entry, newest first, a page at a time."""
    cursor: int | None = None
    while True:
        page = audit_page(engine, where, cursor, EXPORT_PAGE)
        yield from page.entries
        if page.next_cursor is None:
            return
        cursor = int(page.next_cursor)


def inert_cell(value: str) -> str:
    """Returns a CSV cell a spreadsheet will not run as a formula (a quote before it)."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def export_csv(entries: Iterator[AuditEntry]) -> Iterator[str]:
    """Yields the entries as CSV, a header line first (detail as a JSON column)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.id,
                entry.at.isoformat(),
                inert_cell(entry.actor),
                entry.role,
                entry.action,
                inert_cell(entry.target or ""),
                entry.outcome,
                json.dumps(entry.detail, sort_keys=True),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def export_json_lines(entries: Iterator[AuditEntry]) -> Iterator[str]:
    """Yields the entries as JSON, one object per line."""
    for entry in entries:
        yield entry.model_dump_json() + "\n"

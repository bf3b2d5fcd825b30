"""The analyst's database access: backlog, analyses, alert state, and alert events queued."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from rbr_analyst.window_tallies import fold_object, forget_window
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import (
    analysis_alert_state,
    analysis_backlog,
    log_analysis,
    logs,
    poller_state,
)
from rbr_runtime.outbox import Outbox, OutboxMessage

CAMPAIGNS = "*"
"""The `analysis_alert_state` name of campaign alerts (fleet-wide: no bucket is named `*`)."""
OUTBOX = Outbox("analyst")
"""The analyst's outbox: alert events, published after the transaction that decided them."""


@dataclass
class Decision:
    """What storing an analysis decided: alert state changes and messages to publish."""

    states: list[dict[str, Any]] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    detail: Any = None
    """Whatever the decider wants back (the alert plan, what was new)."""


@dataclass(frozen=True)
class BacklogEntry:
    """A (bucket, window) with rows not analysed yet."""

    name: str
    window_start: datetime
    ip_address: str
    attempts: int


@dataclass(frozen=True)
class OpenAlert:
    """An analysis-finding alert of a bucket that is firing."""

    name: str
    finding_key: str
    alert_id: str
    severity: str
    title: str
    opened_window_start: datetime
    last_window_start: datetime


class AnalystStore:
    """Reads and writes the analyst's tables (and reads `logs`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- learning about new rows -----------------------------------------------------------------

    def object_rows(self, name: str, sha256: str) -> tuple[str, datetime, datetime] | None:
        """Returns (bucket ip, first, last ingestion time) of one raw object's rows, if any."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(
                    func.max(logs.c.ip_address),
                    func.min(logs.c.created_at),
                    func.max(logs.c.created_at),
                ).where(logs.c.source_sha256 == sha256, logs.c.name == name)
            ).one()
        if row[1] is None:
            return None
        return str(row[0]), row[1], row[2]

    def fold_object(self, name: str, sha256: str, interval: float) -> int:
        """Folds a parsed object's rows into the tallies of its windows not analysed yet.

        Returns the rows folded (0 for a replay: each object is folded once).
        """
        with self.engine.begin() as connection:
            return fold_object(
                connection,
                name,
                sha256,
                interval,
                lambda window: self._analysed(connection, window),
            )

    def note_windows(
        self, name: str, ip_address: str, starts: Sequence[datetime], interval: float, now: datetime
    ) -> tuple[int, list[Window]]:
        """Adds backlog entries for windows not analysed yet.

        Returns how many entries were added, and the windows that were analysed already.
        """
        noted = 0
        analysed: list[Window] = []
        with self.engine.begin() as connection:
            for start in starts:
                window = Window.starting(name, start, interval)
                if self._analysed(connection, window):
                    analysed.append(window)
                    continue
                values = {
                    "name": name,
                    "window_start": start,
                    "ip_address": ip_address,
                    "first_noted_at": now,
                    "attempts": 0,
                }
                noted += connection.execute(
                    insert_ignore(connection, analysis_backlog).values(values)
                ).rowcount
        return noted, analysed

    def rows_missed(self, window: Window) -> int:
        """Returns how many rows the window holds beyond those its stored analysis covered."""
        with self.engine.connect() as connection:
            covered = connection.execute(
                select(func.max(log_analysis.c.log_rows)).where(
                    log_analysis.c.name == window.bucket,
                    log_analysis.c.window_start == window.start,
                    log_analysis.c.window_end == window.end,
                )
            ).scalar()
            now_in_window = connection.execute(
                select(func.count()).where(
                    logs.c.name == window.bucket,
                    logs.c.created_at >= window.start,
                    logs.c.created_at < window.end,
                )
            ).scalar_one()
        return max(0, int(now_in_window) - int(covered or 0))

    @staticmethod
    def _analysed(connection: Connection, window: Window) -> bool:
        return bool(
            connection.execute(
                select(
                    exists().where(
                        log_analysis.c.name == window.bucket,
                        log_analysis.c.window_start == window.start,
                        log_analysis.c.window_end == window.end,
                    )
                )
            ).scalar()
        )

    # -- the backlog -----------------------------------------------------------------------------

    def due(self, started_by: datetime, now: datetime) -> list[BacklogEntry]:
        """Returns, per bucket, its oldest entry if that window started by `started_by`.

        Only the oldest: a bucket's windows are analysed in order, so that its alerts open and
        resolve in order. A bucket whose oldest entry another replica holds (unexpired lease)
        is left out.
        """
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(analysis_backlog).order_by(
                    analysis_backlog.c.name, analysis_backlog.c.window_start
                )
            ).all()
        seen: set[str] = set()
        entries: list[BacklogEntry] = []
        for row in rows:
            if row.name in seen:
                continue
            seen.add(row.name)
            leased = row.claimed_until is not None and row.claimed_until > now
            if row.window_start <= started_by and not leased:
                entries.append(
                    BacklogEntry(row.name, row.window_start, row.ip_address, row.attempts)
                )
        return entries

    def pending_count(self) -> int:
        """Returns how many windows wait in the backlog."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(analysis_backlog)).scalar_one()
            )

    def claim(self, entry: BacklogEntry, owner: str, now: datetime, lease: float) -> bool:
        """Takes the entry for `lease` seconds; False if another replica holds it."""
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(analysis_backlog)
                .where(
                    analysis_backlog.c.name == entry.name,
                    analysis_backlog.c.window_start == entry.window_start,
                    or_(
                        analysis_backlog.c.claimed_until.is_(None),
                        analysis_backlog.c.claimed_until <= now,
                    ),
                )
                .values(claimed_by=owner, claimed_until=now + timedelta(seconds=lease))
            ).rowcount
        return bool(claimed)

    def release(self, entry: BacklogEntry, error: str) -> None:
        """Gives a claimed entry back after a failed attempt, recording why."""
        with self.engine.begin() as connection:
            connection.execute(
                update(analysis_backlog)
                .where(
                    analysis_backlog.c.name == entry.name,
                    analysis_backlog.c.window_start == entry.window_start,
                )
                .values(
                    claimed_by=None,
                    claimed_until=None,
                    attempts=analysis_backlog.c.attempts + 1,
                    last_error=error[:500],
                )
            )

    # -- saving an analysis ----------------------------------------------------------------------

    def open_alerts(self, name: str) -> dict[str, OpenAlert]:
        """Returns the bucket's firing analysis alerts by finding key."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(analysis_alert_state).where(
                    analysis_alert_state.c.name == name, analysis_alert_state.c.state == "firing"
                )
            ).all()
        return {row.finding_key: _open_alert(row) for row in rows}

    def save(
        self,
        window: Window,
        record: dict[str, Any],
        now: datetime,
        decide: Callable[[Connection, int | None], Decision],
    ) -> Decision | None:
        """Stores an analysis and what it decides, in one transaction.

        `decide` runs in the transaction once the analysis row is in (given the connection and
        the row's id): it records the analysis's intelligence and returns the alert state
        changes and the outbox messages to store with it. Removes the window's backlog entry.
        Returns the decision, or None (storing nothing) when the window's analysis was already
        stored (a replay, or another replica was faster).
        """
        with self.engine.begin() as connection:
            result = connection.execute(insert_ignore(connection, log_analysis).values(record))
            decision = None
            if result.rowcount:
                decision = decide(connection, result.lastrowid)
                for state in decision.states:
                    self._put_alert_state(connection, state)
                OUTBOX.add(connection, decision.messages, now)
            connection.execute(
                delete(analysis_backlog).where(
                    analysis_backlog.c.name == window.bucket,
                    analysis_backlog.c.window_start == window.start,
                )
            )
        with self.engine.begin() as connection:
            forget_window(connection, window)
        return decision

    def recent_log_rows(self, window: Window, limit: int) -> list[int]:
        """Returns the record counts of the bucket's analysed windows before this one."""
        with self.engine.connect() as connection:
            return [
                int(rows)
                for rows in connection.execute(
                    select(log_analysis.c.log_rows)
                    .where(
                        log_analysis.c.name == window.bucket,
                        log_analysis.c.window_start < window.start,
                    )
                    .order_by(log_analysis.c.window_start.desc())
                    .limit(limit)
                ).scalars()
            ]

    @staticmethod
    def _put_alert_state(connection: Connection, state: dict[str, Any]) -> None:
        key = and_(
            analysis_alert_state.c.name == state["name"],
            analysis_alert_state.c.finding_key == state["finding_key"],
        )
        changed = connection.execute(update(analysis_alert_state).where(key).values(state)).rowcount
        if not changed:
            connection.execute(insert(analysis_alert_state).values(state))

    # -- quiet buckets ---------------------------------------------------------------------------

    def stale_alerts(self, last_window_before: datetime) -> list[OpenAlert]:
        """Returns firing alerts last reported by a window that started before the moment.

        `logs_silent` is left out: a bucket logging nothing is its condition, not its end.
        """
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(analysis_alert_state).where(
                    analysis_alert_state.c.state == "firing",
                    analysis_alert_state.c.last_window_start < last_window_before,
                    analysis_alert_state.c.finding_key != "logs_silent",
                    analysis_alert_state.c.name != CAMPAIGNS,
                )
            ).all()
        return [_open_alert(row) for row in rows]

    def stale_campaigns(self, opened_before: datetime) -> list[OpenAlert]:
        """Returns firing campaign alerts of windows that started before the moment."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(analysis_alert_state).where(
                    analysis_alert_state.c.name == CAMPAIGNS,
                    analysis_alert_state.c.state == "firing",
                    analysis_alert_state.c.opened_window_start < opened_before,
                )
            ).all()
        return [_open_alert(row) for row in rows]

    def silent_buckets(
        self, answered_since: datetime, quiet_before: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        """Returns buckets the poller reached lately whose last log row is older than a time.

        Each as (name, last log row's ingestion time, last successful poll). Buckets that
        never logged are left out (a new honeypot may take a while to be attacked).
        """
        last_log = func.max(logs.c.created_at)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(poller_state.c.name, last_log, poller_state.c.last_success_at)
                .join(logs, logs.c.name == poller_state.c.name)
                .where(poller_state.c.last_success_at >= answered_since)
                .group_by(poller_state.c.name, poller_state.c.last_success_at)
                .having(last_log < quiet_before)
            ).all()
        return [(str(row[0]), row[1], row[2]) for row in rows]

    def fire(self, state: dict[str, Any], event: OutboxMessage, now: datetime) -> bool:
        """Opens an alert (state and event) unless one is firing already for its key."""
        with self.engine.begin() as connection:
            firing = connection.execute(
                select(analysis_alert_state.c.state)
                .where(
                    analysis_alert_state.c.name == state["name"],
                    analysis_alert_state.c.finding_key == state["finding_key"],
                )
                .with_for_update()
            ).scalar()
            if firing == "firing":
                return False
            self._put_alert_state(connection, state)
            OUTBOX.add(connection, [event], now)
        return True

    def has_backlog(self, name: str, window_start: datetime) -> bool:
        """Tells whether the bucket has a pending window starting at or before the moment."""
        with self.engine.connect() as connection:
            return bool(
                connection.execute(
                    select(
                        exists().where(
                            analysis_backlog.c.name == name,
                            analysis_backlog.c.window_start <= window_start,
                        )
                    )
                ).scalar()
            )

    def resolve_stale(self, alert: OpenAlert, event: OutboxMessage, now: datetime) -> bool:
        """Marks a quiet bucket's alert resolved and queues its event; False if it moved on."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(analysis_alert_state)
                .where(
                    analysis_alert_state.c.name == alert.name,
                    analysis_alert_state.c.finding_key == alert.finding_key,
                    analysis_alert_state.c.alert_id == alert.alert_id,
                    analysis_alert_state.c.state == "firing",
                )
                .values(state="resolved", updated_at=now)
            ).rowcount
            if changed:
                OUTBOX.add(connection, [event], now)
        return bool(changed)


def _open_alert(row: Any) -> OpenAlert:
    return OpenAlert(
        name=row.name,
        finding_key=row.finding_key,
        alert_id=row.alert_id,
        severity=row.severity,
        title=row.title,
        opened_window_start=row.opened_window_start,
        last_window_start=row.last_window_start,
    )

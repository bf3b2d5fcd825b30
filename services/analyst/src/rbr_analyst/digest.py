"""The digest of one window: what happened, in a size that grows with distinct values only.

Built with SQL aggregates over the window's rows in `logs` (counts by event type, top source
IPs, usernames and passwords tried, successful logins, commands, downloads, HTTP paths, IPs
never seen before, a few sampled raw records). Each list keeps its top N entries and says how
many more there were; every value is cleaned (secrets redacted, controls removed, capped), so
the digest of a million-row window is no bigger than that of a thousand rows with the same
variety.

Commands are the one list read in full (grouped by distinct command, streamed): the attack
rules must see every distinct command, since one `curl ... | sh` among a million lines is the
line that matters. The digest keeps the top N plus the commands the rules flagged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, and_, case, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from rbr_analyst.redact import clean
from rbr_analyst.rules import CommandRule, command_techniques, match_command
from rbr_analyst.windows import Window
from rbr_runtime.db.tables import logs

# Event types: the parser's normalised vocabulary (`login_failed`, `command`, ...), plus the
# source-specific names (Cowrie event ids, sshd messages) in case a parser stores those.
SUCCESS_TYPES = (
    "login_success",
    "cowrie.login.success",
    "sshd.accepted_password",
    "sshd.accepted_publickey",
)
FAILURE_TYPES = (
    "login_failed",
    "invalid_user",
    "cowrie.login.failed",
    "sshd.failed_password",
    "sshd.invalid_user",
)
COMMAND_TYPES = ("command", "command_failed", "cowrie.command.input", "cowrie.command.failed")
DOWNLOAD_TYPES = (
    "download",
    "download_failed",
    "upload",
    "cowrie.session.file_download",
    "cowrie.session.file_download.failed",
    "cowrie.session.file_upload",
)
HTTP_TYPES = ("http_request", "http.access")
# Event types sampled first: the rarer and more telling, the earlier.
SAMPLE_PRIORITY = (*DOWNLOAD_TYPES, *SUCCESS_TYPES, *COMMAND_TYPES, "unparsed", *HTTP_TYPES)

IP_CHARS = 45
NAME_CHARS = 64
COMMAND_CHARS = 300
URL_CHARS = 300
SAMPLE_CHARS = 400
TYPE_CHARS = 64
CHARS_PER_TOKEN = 3.5
"""A conservative characters-per-token ratio for JSON-heavy text (English prose is ~4)."""


def estimate_tokens(text: str) -> int:
    """Estimates the tokens of a text without calling the API."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass
class TopList:
    """The top entries of a distribution, and how many distinct values there were in all."""

    items: list[dict[str, Any]] = field(default_factory=list)
    distinct: int = 0

    @property
    def more(self) -> int:
        """Returns how many distinct values the list leaves out."""
        return max(0, self.distinct - len(self.items))

    def as_json(self) -> dict[str, Any]:
        """Returns the list with its 'and N more'."""
        return {"top": self.items, "distinct": self.distinct, "and_more": self.more}


@dataclass(frozen=True)
class FlaggedCommand:
    """A command an attack rule recognised, with how often it ran."""

    command: str
    count: int
    rule: CommandRule
    techniques: tuple[str, ...] = ()
    """ATT&CK techniques the command evidences (read from the full command)."""


@dataclass
class Digest:
    """Everything the analysers see of one window."""

    window: Window
    ip_address: str
    total_rows: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    distinct_source_ips: int = 0
    distinct_sessions: int = 0
    bytes_total: int = 0
    event_counts: TopList = field(default_factory=TopList)
    source_ips: TopList = field(default_factory=TopList)
    new_source_ips: TopList = field(default_factory=TopList)
    usernames: TopList = field(default_factory=TopList)
    passwords: TopList = field(default_factory=TopList)
    successful_logins: TopList = field(default_factory=TopList)
    login_failures: int = 0
    login_successes: int = 0
    commands: TopList = field(default_factory=TopList)
    command_count: int = 0
    flagged_commands: list[FlaggedCommand] = field(default_factory=list)
    flagged_distinct: int = 0
    downloads: TopList = field(default_factory=TopList)
    download_count: int = 0
    http_paths: TopList = field(default_factory=TopList)
    unparsed: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def sections(self) -> list[tuple[str, Any]]:
        """Returns the digest as (section, JSON value) pairs, most important first."""
        flagged = [
            {"command": f.command, "count": f.count, "rule": f.rule.key}
            for f in self.flagged_commands
        ]
        return [
            ("window", self._header()),
            ("event_counts", self.event_counts.as_json()),
            ("flagged_commands", {"top": flagged, "distinct": self.flagged_distinct}),
            ("successful_logins", self.successful_logins.as_json()),
            ("downloads", self.downloads.as_json()),
            ("new_source_ips", self.new_source_ips.as_json()),
            ("source_ips", self.source_ips.as_json()),
            ("commands", self.commands.as_json()),
            ("usernames", self.usernames.as_json()),
            ("passwords", self.passwords.as_json()),
            ("http_paths", self.http_paths.as_json()),
            ("samples", self.samples),
        ]

    def _header(self) -> dict[str, Any]:
        return {
            "bucket": self.window.bucket,
            "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(),
            "records": self.total_rows,
            "bytes": self.bytes_total,
            "first_event_at": _iso(self.first_event_at),
            "last_event_at": _iso(self.last_event_at),
            "distinct_source_ips": self.distinct_source_ips,
            "distinct_sessions": self.distinct_sessions,
            "login_failures": self.login_failures,
            "login_successes": self.login_successes,
            "commands_run": self.command_count,
            "downloads": self.download_count,
            "unparsed_records": self.unparsed,
        }

    def as_json(self) -> dict[str, Any]:
        """Returns the whole digest as one JSON object."""
        return dict(self.sections())

    def render(self) -> str:
        """Returns the digest as compact JSON text (what goes into a prompt)."""
        return orjson.dumps(self.as_json()).decode()

    def estimated_tokens(self) -> int:
        """Estimates the tokens of the rendered digest."""
        return estimate_tokens(self.render())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class DigestBuilder:
    """Builds digests from the `logs` table."""

    def __init__(self, engine: Engine, *, top_n: int = 25, samples: int = 8) -> None:
        self._engine = engine
        self._top_n = top_n
        self._samples = samples

    def build(self, window: Window, ip_address: str) -> Digest:
        """Returns the digest of the window."""
        digest = Digest(window=window, ip_address=ip_address)
        with self._engine.connect() as connection:
            self._totals(connection, window, digest)
            if digest.total_rows == 0:
                return digest
            digest.event_counts = self._top(connection, window, logs.c.event_type, TYPE_CHARS)
            digest.source_ips = self._top(connection, window, logs.c.source_ip, IP_CHARS)
            digest.new_source_ips = self._new_ips(connection, window)
            digest.usernames = self._top(connection, window, logs.c.username, NAME_CHARS)
            digest.passwords = self._top(connection, window, logs.c.password, NAME_CHARS)
            digest.successful_logins = self._logins(connection, window)
            digest.downloads = self._downloads(connection, window)
            digest.http_paths = self._top(
                connection,
                window,
                logs.c.url,
                URL_CHARS,
                logs.c.event_type.in_(HTTP_TYPES),
            )
            self._commands(connection, window, digest)
            digest.samples = self._sample(connection, window)
        return digest

    def _in_window(self, window: Window) -> ColumnElement[bool]:
        return and_(
            logs.c.name == window.bucket,
            logs.c.created_at >= window.start,
            logs.c.created_at < window.end,
        )

    def _totals(self, connection: Connection, window: Window, digest: Digest) -> None:
        kind = logs.c.event_type
        row = connection.execute(
            select(
                func.count(),
                func.min(logs.c.event_time),
                func.max(logs.c.event_time),
                func.count(logs.c.source_ip.distinct()),
                func.count(logs.c.session.distinct()),
                func.coalesce(func.sum(logs.c.log_size), 0),
                func.sum(_flag(kind.in_(FAILURE_TYPES))),
                func.sum(_flag(kind.in_(SUCCESS_TYPES))),
                func.sum(_flag(kind.in_(COMMAND_TYPES))),
                func.sum(_flag(kind.in_(DOWNLOAD_TYPES))),
                func.sum(_flag(kind == "unparsed")),
            ).where(self._in_window(window))
        ).one()
        digest.total_rows = int(row[0])
        digest.first_event_at, digest.last_event_at = row[1], row[2]
        digest.distinct_source_ips, digest.distinct_sessions = int(row[3]), int(row[4])
        digest.bytes_total = int(row[5] or 0)
        digest.login_failures, digest.login_successes = int(row[6] or 0), int(row[7] or 0)
        digest.command_count, digest.download_count = int(row[8] or 0), int(row[9] or 0)
        digest.unparsed = int(row[10] or 0)

    def _top(
        self,
        connection: Connection,
        window: Window,
        column: Any,
        limit_chars: int,
        *conditions: ColumnElement[bool],
    ) -> TopList:
        hits = func.count().label("hits")
        statement = (
            select(column, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(window), column.is_not(None), *conditions)
            .group_by(column)
            .order_by(hits.desc(), column)
            .limit(self._top_n)
        )
        rows = connection.execute(statement).all()
        items = [{"value": clean(row[0], limit_chars), "count": int(row[1])} for row in rows]
        return TopList(items, int(rows[0][2]) if rows else 0)

    def _new_ips(self, connection: Connection, window: Window) -> TopList:
        """Source IPs of the window that no earlier window of this bucket saw."""
        earlier = logs.alias("earlier")
        seen_before = exists().where(
            earlier.c.source_ip == logs.c.source_ip,
            earlier.c.name == window.bucket,
            earlier.c.created_at < window.start,
        )
        hits = func.count().label("hits")
        statement = (
            select(logs.c.source_ip, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(window), logs.c.source_ip.is_not(None), ~seen_before)
            .group_by(logs.c.source_ip)
            .order_by(hits.desc(), logs.c.source_ip)
            .limit(self._top_n)
        )
        rows = connection.execute(statement).all()
        items = [{"value": clean(row[0], IP_CHARS), "count": int(row[1])} for row in rows]
        return TopList(items, int(rows[0][2]) if rows else 0)

    def _logins(self, connection: Connection, window: Window) -> TopList:
        hits = func.count().label("hits")
        columns = (logs.c.source_ip, logs.c.username, logs.c.password)
        rows = connection.execute(
            select(*columns, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(window), logs.c.event_type.in_(SUCCESS_TYPES))
            .group_by(*columns)
            .order_by(hits.desc(), *columns)
            .limit(self._top_n)
        ).all()
        items = [
            {
                "source_ip": clean(row[0], IP_CHARS),
                "username": clean(row[1], NAME_CHARS),
                "password": clean(row[2], NAME_CHARS),
                "count": int(row[3]),
            }
            for row in rows
        ]
        return TopList(items, int(rows[0][4]) if rows else 0)

    def _downloads(self, connection: Connection, window: Window) -> TopList:
        hits = func.count().label("hits")
        columns = (logs.c.url, logs.c.file_sha256)
        is_download = logs.c.event_type.in_(DOWNLOAD_TYPES) | (
            logs.c.file_sha256.is_not(None) & logs.c.event_type.not_in(HTTP_TYPES)
        )
        rows = connection.execute(
            select(*columns, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(window), is_download)
            .group_by(*columns)
            .order_by(hits.desc(), *columns)
            .limit(self._top_n)
        ).all()
        items = [
            {
                "url": clean(row[0], URL_CHARS) if row[0] else None,
                "sha256": clean(row[1], 64) if row[1] else None,
                "count": int(row[2]),
            }
            for row in rows
        ]
        return TopList(items, int(rows[0][3]) if rows else 0)

    def _commands(self, connection: Connection, window: Window, digest: Digest) -> None:
        """Streams every distinct command once: top N by count, plus every rule hit."""
        top: list[tuple[int, str]] = []
        flagged: list[FlaggedCommand] = []
        distinct = flagged_distinct = 0
        for command, count in self._distinct_commands(connection, window):
            distinct += 1
            rule = match_command(command)
            if rule is not None:
                flagged_distinct += 1
                techniques = tuple(command_techniques(command, rule))
                flagged.append(
                    FlaggedCommand(clean(command, COMMAND_CHARS), count, rule, techniques)
                )
                flagged = _most_severe(flagged, self._top_n)
            entry = (count, command)
            if len(top) < self._top_n:
                heapq.heappush(top, entry)
            elif entry > top[0]:
                heapq.heapreplace(top, entry)
        ranked = sorted(top, key=lambda item: (-item[0], item[1]))
        digest.commands = TopList(
            [{"value": clean(cmd, COMMAND_CHARS), "count": n} for n, cmd in ranked], distinct
        )
        digest.flagged_commands = flagged
        digest.flagged_distinct = flagged_distinct

    def _distinct_commands(
        self, connection: Connection, window: Window
    ) -> Iterator[tuple[str, int]]:
        statement = (
            select(logs.c.command, func.count())
            .where(self._in_window(window), logs.c.command.is_not(None))
            .group_by(logs.c.command)
        )
        result = connection.execution_options(stream_results=True, yield_per=2000).execute(
            statement
        )
        for command, count in result:
            yield str(command), int(count)

    def _sample(self, connection: Connection, window: Window) -> list[dict[str, Any]]:
        """One raw record per event type, the most telling types first (deterministic)."""
        if self._samples == 0:
            return []
        rows = connection.execute(
            select(logs.c.event_type, func.min(logs.c.id), func.count())
            .where(self._in_window(window))
            .group_by(logs.c.event_type)
        ).all()
        ordered = sorted(rows, key=lambda row: (_sample_rank(row[0]), row[2], row[0]))
        chosen = {int(row[1]): str(row[0]) for row in ordered[: self._samples]}
        if not chosen:
            return []
        records = connection.execute(
            select(logs.c.id, logs.c.log).where(logs.c.id.in_(list(chosen)))
        ).all()
        texts = {int(row[0]): row[1] for row in records}
        return [
            {
                "event_type": clean(kind, TYPE_CHARS),
                "record": clean(texts.get(row_id), SAMPLE_CHARS),
            }
            for row_id, kind in chosen.items()
        ]


def _flag(condition: ColumnElement[bool]) -> Any:
    return case((condition, 1), else_=0)


def _sample_rank(event_type: str) -> int:
    try:
        return SAMPLE_PRIORITY.index(event_type)
    except ValueError:
        return len(SAMPLE_PRIORITY)


def _most_severe(flagged: Sequence[FlaggedCommand], limit: int) -> list[FlaggedCommand]:
    if len(flagged) <= limit:
        return list(flagged)
    ranked = sorted(flagged, key=lambda f: (-f.rule.severity.rank, -f.count, f.command))
    return ranked[:limit]

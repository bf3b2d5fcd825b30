"""The digest of one window: totals and capped top-N lists, sized by distinct values, not rows.

Read from the window's tallies when they hold it whole, else from its rows (the same digest).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from rbr_analyst.event_kinds import SAMPLE_PRIORITY
from rbr_analyst.redact import clean
from rbr_analyst.rules import CommandRule, command_techniques
from rbr_analyst.window_rows import Facet, Ranked, Totals, WindowRows, raw_records
from rbr_analyst.window_tallies import WindowTallies
from rbr_analyst.windows import Window

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
    read_from: str = "rows"
    """Where the figures came from: `tallies` or `rows` (not part of the digest's content)."""

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


class DigestSource(Protocol):
    """Where a digest's figures are read from: the window's rows or its tallies."""

    def totals(self) -> Totals:
        """Returns the window's header figures."""
        ...

    def top(self, facet: Facet) -> Ranked:
        """Returns the facet's most frequent values, ties in value order."""
        ...

    def new_source_ips(self) -> Ranked:
        """Returns the window's source IPs the bucket had not seen before, most frequent first."""
        ...

    def commands(self) -> Iterator[tuple[str, int, CommandRule | None]]:
        """Yields every distinct command of the window with its count and the rule it matches."""
        ...

    def event_types(self) -> list[tuple[str, int, int]]:
        """Returns (event type, lowest row id, rows) for every event type of the window."""
        ...


class DigestBuilder:
    """Builds window digests from the database."""

    def __init__(
        self, engine: Engine, *, top_n: int = 25, samples: int = 8, use_tallies: bool = True
    ) -> None:
        self._engine = engine
        self._top_n = top_n
        self._samples = samples
        self._use_tallies = use_tallies

    def build(self, window: Window, ip_address: str) -> Digest:
        """Returns the digest of the window."""
        with self._engine.connect() as connection:
            source, read_from = self._source(connection, window)
            digest = Digest(window=window, ip_address=ip_address, read_from=read_from)
            _fill_totals(digest, source.totals())
            if digest.total_rows == 0:
                return digest
            digest.event_counts = _values(source.top(Facet.EVENT_TYPE), TYPE_CHARS)
            digest.source_ips = _values(source.top(Facet.SOURCE_IP), IP_CHARS)
            digest.new_source_ips = _values(source.new_source_ips(), IP_CHARS)
            digest.usernames = _values(source.top(Facet.USERNAME), NAME_CHARS)
            digest.passwords = _values(source.top(Facet.PASSWORD), NAME_CHARS)
            digest.successful_logins = _logins(source.top(Facet.LOGIN))
            digest.downloads = _downloads(source.top(Facet.DOWNLOAD))
            digest.http_paths = _values(source.top(Facet.HTTP_PATH), URL_CHARS)
            self._commands(source.commands(), digest)
            digest.samples = self._sample(connection, source.event_types())
        return digest

    def _source(self, connection: Connection, window: Window) -> tuple[DigestSource, str]:
        tallies = WindowTallies(connection, window, self._top_n)
        if self._use_tallies and tallies.complete():
            return tallies, "tallies"
        return WindowRows(connection, window, self._top_n), "rows"

    def _commands(
        self, commands: Iterator[tuple[str, int, CommandRule | None]], digest: Digest
    ) -> None:
        """Reads every distinct command once: top N by count, plus every rule hit."""
        top: list[tuple[int, str]] = []
        flagged: list[FlaggedCommand] = []
        distinct = flagged_distinct = 0
        for command, count, rule in commands:
            distinct += 1
            if rule is not None:
                flagged_distinct += 1
                techniques = tuple(command_techniques(command, rule))
                flagged.append(FlaggedCommand(command, count, rule, techniques))
                if len(flagged) > 2 * self._top_n:
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
        digest.flagged_commands = [
            FlaggedCommand(clean(f.command, COMMAND_CHARS), f.count, f.rule, f.techniques)
            for f in _most_severe(flagged, self._top_n)
        ]
        digest.flagged_distinct = flagged_distinct

    def _sample(
        self, connection: Connection, event_types: list[tuple[str, int, int]]
    ) -> list[dict[str, Any]]:
        """One raw record per event type, the most telling types first (deterministic)."""
        if self._samples == 0:
            return []
        ordered = sorted(event_types, key=lambda row: (_sample_rank(row[0]), row[2], row[0]))
        chosen = {row_id: kind for kind, row_id, _ in ordered[: self._samples]}
        texts = raw_records(connection, list(chosen))
        return [
            {
                "event_type": clean(kind, TYPE_CHARS),
                "record": clean(texts.get(row_id), SAMPLE_CHARS),
            }
            for row_id, kind in chosen.items()
        ]


def _fill_totals(digest: Digest, totals: Totals) -> None:
    digest.total_rows = totals.rows
    digest.first_event_at, digest.last_event_at = totals.first_event_at, totals.last_event_at
    digest.distinct_source_ips = totals.distinct_source_ips
    digest.distinct_sessions = totals.distinct_sessions
    digest.bytes_total = totals.bytes
    digest.login_failures, digest.login_successes = totals.login_failures, totals.login_successes
    digest.command_count, digest.download_count = totals.commands, totals.downloads
    digest.unparsed = totals.unparsed


def _values(ranked: Ranked, limit_chars: int) -> TopList:
    items = [{"value": clean(row[0], limit_chars), "count": int(row[1])} for row in ranked.rows]
    return TopList(items, ranked.distinct)


def _logins(ranked: Ranked) -> TopList:
    items = [
        {
            "source_ip": clean(row[0], IP_CHARS),
            "username": clean(row[1], NAME_CHARS),
            "password": clean(row[2], NAME_CHARS),
            "count": int(row[3]),
        }
        for row in ranked.rows
    ]
    return TopList(items, ranked.distinct)


def _downloads(ranked: Ranked) -> TopList:
    items = [
        {
            "url": clean(row[0], URL_CHARS) if row[0] else None,
            "sha256": clean(row[1], 64) if row[1] else None,
            "count": int(row[2]),
        }
        for row in ranked.rows
    ]
    return TopList(items, ranked.distinct)


def _sample_rank(event_type: str) -> int:
    try:
        return SAMPLE_PRIORITY.index(event_type)
    except ValueError:
        return len(SAMPLE_PRIORITY)


def _most_severe(flagged: list[FlaggedCommand], limit: int) -> list[FlaggedCommand]:
    """The most severe rule hits, then the most frequent, then in command order."""
    ranked = sorted(flagged, key=lambda f: (-f.rule.severity.rank, -f.count, f.command))
    return ranked[:limit]

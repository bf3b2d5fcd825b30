"""Cutting a stream of lines into records and parsing each one.

A record is one line, except in rustbucket's text log, where a line that starts no record of
any known format continues the rustbucket record before it (a payload with newlines spans
several lines). A line that continues nothing and matches no format is a record of its own,
typed `unparsed`: nothing is dropped but blank lines between records.

Every line first loses the honeypot's own secrets (its registration token: see
`sanitize.SecretRedactor`), so they reach neither the parsed fields nor the raw record.

Parsing one record never fails the object: a record whose parsing raises (attacker bytes
finding a corner no format foresaw) becomes an `unparsed` record with its raw text kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Counter

from rbr_parser import formats, rustbucket
from rbr_parser.formats import Fields, ParseContext
from rbr_parser.lines import Line
from rbr_parser.sanitize import SecretRedactor, cut_utf8

log = logging.getLogger(__name__)

RECORD_ERRORS = Counter(
    "rbr_parser_record_errors_total",
    "Records whose parsing raised and which were kept as unparsed instead.",
)

_ANSI_PREFIX = re.compile(r"(?:\x1b\[[0-?]*[ -/]*[@-~])+")

_Start = tuple[str, Any]
"""How a line starts a record: (format, its match or decoded event)."""
_UNKNOWN_START: _Start = (formats.UNKNOWN, None)
_RUSTBUCKET_JSON = "rustbucket-json"
"""The start of a rustbucket JSON record (one line, the decoded event); stored as rustbucket."""

_T = TypeVar("_T")
_D = TypeVar("_D")


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed record.

    Attributes:
        fields: the `logs` columns parsing found (see formats.PARSED_COLUMNS).
        raw: the record as written (invalid UTF-8 shown as U+FFFD), cut to the raw limit,
            without its final newline.
        size: the record's true size in bytes, newlines included.
    """

    fields: Fields
    raw: str
    size: int


class _Pending:
    """A rustbucket record whose continuation lines are still being read."""

    __slots__ = ("header", "kept", "parts", "size")

    def __init__(self, header: re.Match[str], text: str, size: int) -> None:
        self.header = header
        self.parts = [text]
        self.kept = len(text)
        self.size = size

    def add(self, text: str, size: int, max_chars: int) -> None:
        self.size += size
        if self.kept < max_chars:
            self.parts.append(text)
            self.kept += len(text) + 1


class RecordReader:
    """Turns lines into parsed records, with bounded memory per record."""

    def __init__(
        self,
        context: ParseContext,
        *,
        max_record_chars: int = 1 << 20,
        max_raw_bytes: int = 65_536,
    ) -> None:
        """Prepares a reader.

        Args:
            context: what the parser knows about the object (reference time, zones).
            max_record_chars: the most characters of one record parsed; beyond that the
                record's lines are counted, not kept.
            max_raw_bytes: the most bytes of a record kept in `raw` (the `log` column).
        """
        self._context = context
        self._max_record_chars = max_record_chars
        self._max_raw_bytes = max_raw_bytes
        self.errors = 0
        """Records a format's code failed on (kept as unparsed); read by the parse process."""

    def records(self, lines: Iterable[Line]) -> Iterator[Record]:
        """Yields the records of the lines, in order."""
        pending: _Pending | None = None
        redactor = SecretRedactor()
        for line in lines:
            text = redactor.redact(line.data.decode("utf-8", "replace"))
            start = self._guarded(self._classify, _UNKNOWN_START, text)
            if start is None and pending is not None:
                pending.add(text, line.size, self._max_record_chars)
                continue
            if pending is not None:
                yield self._finish(pending)
                pending = None
            if start is not None and start[0] == formats.RUSTBUCKET:
                pending = _Pending(start[1], text, line.size)
            elif start is not None:
                fields = self._guarded(self._fields, None, start, text)
                yield Record(fields or formats.unparsed(text), self._raw(text), line.size)
            elif text.strip():  # a blank line outside a record is skipped
                yield Record(formats.unparsed(text), self._raw(text), line.size)
        if pending is not None:
            yield self._finish(pending)

    def _classify(self, text: str) -> _Start | None:
        """Returns how the line starts a record of a known format, or None if it does not."""
        first = text[:1]
        if first == "{":
            return self._json_start(text)
        if first.isdigit():
            found = rustbucket.match_header(text)
            if found is not None:
                return formats.RUSTBUCKET, found
            return self._coloured(text) or self._syslog_or_http(text)
        if first == "\x1b":
            # A terminal-coloured log (ANSI off is the default for files, but not always).
            return self._coloured(text)
        if not first or first.isspace():
            return None
        return self._syslog_or_http(text)

    @staticmethod
    def _json_start(text: str) -> _Start | None:
        event = formats.load_json_object(text)
        if event is not None and formats.is_cowrie(event):
            return formats.COWRIE, event
        if event is not None and rustbucket.is_tracing_json(event):
            return _RUSTBUCKET_JSON, event
        # A line of either cut short still starts a record (an unparsed one); any other JSON
        # continues the record before it (a request body in the text log).
        if formats.looks_like_cowrie(text) or (
            event is None and rustbucket.looks_like_tracing_json(text)
        ):
            return _UNKNOWN_START
        return None

    @staticmethod
    def _coloured(text: str) -> _Start | None:
        if "\x1b" not in text:
            return None
        found = rustbucket.match_header(_ANSI_PREFIX.sub("", text))
        return (formats.RUSTBUCKET, found) if found is not None else None

    @staticmethod
    def _syslog_or_http(text: str) -> _Start | None:
        found = formats.match_syslog(text)
        if found is not None:
            return formats.SYSLOG, found
        found = formats.match_http(text)
        if found is not None:
            return formats.HTTP, found
        return None

    def _fields(self, start: _Start, text: str) -> Fields:
        kind, payload = start
        if kind == formats.COWRIE:
            return formats.parse_cowrie(payload)
        if kind == _RUSTBUCKET_JSON:
            return rustbucket.parse_json(payload)
        if kind == formats.SYSLOG:
            return formats.parse_syslog(payload, self._context)
        if kind == formats.HTTP:
            return formats.parse_http(payload)
        return formats.unparsed(text)

    def _finish(self, pending: _Pending) -> Record:
        header = pending.header
        lines = pending.parts
        first_message = header["message"]
        message = first_message if len(lines) == 1 else "\n".join([first_message, *lines[1:]])
        raw = lines[0] if len(lines) == 1 else "\n".join(lines)
        fields = self._guarded(rustbucket.parse_text, None, header, message)
        return Record(fields or formats.unparsed(raw), self._raw(raw), pending.size)

    def _raw(self, text: str) -> str:
        return cut_utf8(text, self._max_raw_bytes)

    def _guarded(self, step: Callable[..., _T], default: _D, *args: Any) -> _T | _D:
        """Returns step(*args), or default when it raises: one record never fails its object.

        Only the exception's type is logged: the record is attacker-controlled text. Counted
        in `errors`; the service adds them to `rbr_parser_record_errors_total` (the parse
        runs in a process of its own, whose metrics nobody scrapes).
        """
        try:
            return step(*args)
        except Exception as error:  # noqa: BLE001 - any parsing failure is the record's alone
            self.errors += 1
            log.debug("a record could not be parsed (%s); kept as unparsed", type(error).__name__)
            return default

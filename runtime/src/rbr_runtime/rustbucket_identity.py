"""Which honeypot wrote a rustbucket log file: the names its start-ups log.

Each start of the real rustbucket logs its instance name (the folder its S3 uploads go to)
and the name it registered as. `read_identities` reads both from a log file's lines, so an
uploaded file can tie its S3 folder to a registered bucket. Lines after the first connection
can be forged by an attacker: believe only a start whose instance name is the folder the file
was uploaded to. The formats and the trust rules: runtime/README.md, "Rustbucket identity".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

MAX_LINES: Final = 10_000
"""The most lines read by default: start-ups are a few dozen lines each."""

_MAIN: Final = "rustbucket"
_REGISTRATION: Final = "rustbucket::registration"
# Records after which the start-up is over: the honeypot listens, attackers may write.
_LISTENING_MESSAGE: Final = "All listeners started."
_ATTACKER_TARGETS: Final = ("rustbucket::protocols", "rustbucket::handler")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}")
_TEXT_RECORD = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+"
    r"(?:TRACE|DEBUG|INFO|WARN|ERROR)\s+(?P<target>[^\s{}]+): (?P<message>.*)"
)
_TEXT_INSTANCE = re.compile(r"Instance name: (?P<name>\S+)\s*")
_TEXT_REGISTERED = re.compile(r"Generated instance name: (?P<name>\S+)\s*")
_JSON_REGISTERED_MESSAGES: Final = frozenset(
    {"Using instance identity", "Using cached S3 config from previous registration"}
)


@dataclass(frozen=True, slots=True)
class InstanceStart:
    """One start of the honeypot that the log records.

    Attributes:
        instance_name: its instance name (its S3 folder).
        registered_name: the name it registered with in the same start-up, or None (it did
            not register: no registry configured, or the file does not hold its start-up).
        line_no: the line (from 0) that names the instance.
    """

    instance_name: str
    registered_name: str | None
    line_no: int


@dataclass(frozen=True, slots=True)
class RustbucketIdentity:
    """The starts a rustbucket log names, in the order they were logged."""

    starts: tuple[InstanceStart, ...]

    @property
    def instance_names(self) -> tuple[str, ...]:
        """Returns every instance name, each once, in order."""
        return tuple(dict.fromkeys(start.instance_name for start in self.starts))

    @property
    def registered_names(self) -> tuple[str, ...]:
        """Returns every registered name, each once, in order."""
        names = (start.registered_name for start in self.starts if start.registered_name)
        return tuple(dict.fromkeys(names))

    def registered_name_for(self, instance_name: str) -> str | None:
        """Returns the name the instance registered with (its last start's), if logged."""
        names = [s.registered_name for s in self.starts if s.instance_name == instance_name]
        found = [name for name in names if name]
        return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class _Record:
    target: str
    message: str
    fields: dict[str, Any]


class _Reader:
    """Follows the start-ups of a log, one record at a time."""

    def __init__(self) -> None:
        self.starts: list[InstanceStart] = []
        self._in_start_up = False

    def add(self, record: _Record, line_no: int) -> None:
        if record.target.startswith(_ATTACKER_TARGETS) or record.message.startswith(
            _LISTENING_MESSAGE
        ):
            self._in_start_up = False
            return
        instance = _instance_name(record)
        if instance is not None:
            self.starts.append(InstanceStart(instance, None, line_no))
            self._in_start_up = True
            return
        registered = _registered_name(record)
        if registered is not None and self._in_start_up and self.starts:
            current = self.starts[-1]
            if current.registered_name is None:
                self.starts[-1] = InstanceStart(current.instance_name, registered, current.line_no)


def read_identities(
    lines: Iterable[str | bytes], *, max_lines: int = MAX_LINES
) -> RustbucketIdentity:
    """Returns the starts the first `max_lines` lines of a rustbucket log record.

    Args:
        lines: the file's lines (text or JSON layout), with or without their newlines.
        max_lines: the most lines read.
    """
    reader = _Reader()
    for line_no, line in enumerate(lines):
        if line_no >= max_lines:
            break
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        record = _parse(text.rstrip("\r\n"))
        if record is not None:
            reader.add(record, line_no)
    return RustbucketIdentity(tuple(reader.starts))


def _parse(line: str) -> _Record | None:
    """Returns the record a line starts (text or JSON layout), or None for any other line."""
    if line.startswith("{"):
        return _parse_json(line)
    found = _TEXT_RECORD.fullmatch(line)
    if found is None:
        return None
    return _Record(found["target"], found["message"], {})


def _parse_json(line: str) -> _Record | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    fields, target = event.get("fields"), event.get("target")
    if not isinstance(fields, dict) or not isinstance(target, str):
        return None
    message = fields.get("message")
    return _Record(target, message if isinstance(message, str) else "", fields)


def _instance_name(record: _Record) -> str | None:
    if record.target == _MAIN:
        if record.message == "Instance started":
            return _valid(record.fields.get("instance_name"))
        return _text_name(_TEXT_INSTANCE, record.message)
    return None


def _registered_name(record: _Record) -> str | None:
    if record.target != _REGISTRATION:
        return None
    if record.message in _JSON_REGISTERED_MESSAGES:
        return _valid(record.fields.get("name"))
    return _text_name(_TEXT_REGISTERED, record.message)


def _text_name(pattern: re.Pattern[str], message: str) -> str | None:
    found = pattern.fullmatch(message)
    return _valid(found["name"]) if found else None


def _valid(name: object) -> str | None:
    """Returns the name when it is one the honeypot can have made, else None."""
    return name if isinstance(name, str) and _NAME.fullmatch(name) else None

"""The cursor ledger: how far the registry has confirmed each log file, kept across restarts.

The registry confirms a pull by sending its cursor back as `since`; the ledger keeps, per log
file, the offset the registry confirmed and the offsets of each pull not yet confirmed. It is
written (0600, atomically, synced) before an answer's headers leave, so the agent neither
skips nor repeats a line whenever it stops. A cursor is `<epoch>-<pull>`, so one from another
ledger is recognised. agent/README.md, "How every line goes once", tells more.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from rbr_agent.files import StateError, read_private_json, write_private_json

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.json"
MAX_UNCONFIRMED = 16
"""Pulls issued and not confirmed that are remembered (a registry retries the latest)."""
_CURSOR = re.compile(r"^([0-9a-f]{8})-([0-9]{1,18})$")


class BadCursor(ValueError):
    """`since` is not a cursor this agent could have issued."""


class Confirmation(Enum):
    """What the `since` of a pull said about the previous ones."""

    NONE = "none"
    """No cursor: the registry has none stored (first pull, or it forgot)."""
    CURRENT = "current"
    """The latest confirmed pull: the pulls after it failed; their lines are sent again."""
    CONFIRMED = "confirmed"
    """A pull issued and now confirmed."""
    UNKNOWN = "unknown"
    """A cursor of this ledger no longer remembered (older than the confirmed one)."""
    OTHER_LEDGER = "other_ledger"
    """A cursor of another ledger: the state directory was replaced."""


@dataclass
class FileRecord:
    """What the ledger knows of one log file's content."""

    seq: int
    """Order of discovery: files are served oldest first."""
    generation: int = 0
    """Bumped when the file was truncated and begins again (offsets start anew)."""
    acked: int = 0
    """Content offset up to which the registry confirmed it stored the lines."""
    name: str = ""
    seen: float = 0.0
    """When a file with this content was last in the directory (unix time)."""
    archive: list[int] | None = None
    """A compressed copy measured: [size, mtime_ns, content length, ends with newline]."""

    def to_json(self) -> dict[str, Any]:
        """Returns the record as stored."""
        document: dict[str, Any] = {
            "seq": self.seq,
            "gen": self.generation,
            "acked": self.acked,
            "name": self.name,
            "seen": round(self.seen, 3),
        }
        if self.archive is not None:
            document["archive"] = self.archive
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> FileRecord:
        """Reads a stored record."""
        archive = document.get("archive")
        return cls(
            seq=int(document["seq"]),
            generation=int(document.get("gen", 0)),
            acked=int(document.get("acked", 0)),
            name=str(document.get("name", "")),
            seen=float(document.get("seen", 0.0)),
            archive=[int(v) for v in archive] if isinstance(archive, list) else None,
        )


@dataclass
class Issued:
    """A pull sent and not yet confirmed: the offset each file's lines went up to."""

    pull: int
    ends: dict[str, list[int]]
    """fingerprint -> [generation, end offset]."""


@dataclass
class Ledger:
    """The cursor ledger (see the module's docstring); not thread-safe: one pull at a time."""

    path: Path
    epoch: str
    acked_pull: int = 0
    next_pull: int = 1
    next_seq: int = 1
    files: dict[str, FileRecord] = field(default_factory=dict)
    issued: list[Issued] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Reads the ledger, or starts a new one (written at the first pull).

        Raises:
            StateError: the file exists but is unreadable or malformed.
        """
        document = read_private_json(path)
        if document is None:
            return cls(path=path, epoch=secrets.token_hex(4))
        try:
            return cls(
                path=path,
                epoch=str(document["epoch"]),
                acked_pull=int(document["acked_pull"]),
                next_pull=int(document["next_pull"]),
                next_seq=int(document["next_seq"]),
                files={fp: FileRecord.from_json(r) for fp, r in document["files"].items()},
                issued=[
                    Issued(int(i["pull"]), {fp: list(end) for fp, end in i["ends"].items()})
                    for i in document["issued"]
                ],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise StateError(f"{path} is malformed ({type(error).__name__}: {error})") from error

    def save(self) -> None:
        """Writes the ledger durably (0600, atomic)."""
        write_private_json(
            self.path,
            {
                "version": 1,
                "epoch": self.epoch,
                "acked_pull": self.acked_pull,
                "next_pull": self.next_pull,
                "next_seq": self.next_seq,
                "files": {fp: record.to_json() for fp, record in self.files.items()},
                "issued": [{"pull": i.pull, "ends": i.ends} for i in self.issued],
            },
        )

    # -- cursors --------------------------------------------------------------------------------

    def cursor(self, pull: int | None = None) -> str:
        """Returns the text of a pull's cursor (the latest confirmed one by default)."""
        return f"{self.epoch}-{self.acked_pull if pull is None else pull}"

    def confirm(self, since: str | None) -> Confirmation:
        """Applies what `since` confirms.

        Raises:
            BadCursor: `since` is not of the form of a cursor.
        """
        if since is None:
            return Confirmation.NONE
        match = _CURSOR.fullmatch(since)
        if match is None:
            raise BadCursor("since must be a cursor this agent issued (X-Log-Cursor)")
        epoch, pull = match.group(1), int(match.group(2))
        if epoch != self.epoch:
            log.warning("cursor of another ledger (%s); serving from what this one knows", since)
            return Confirmation.OTHER_LEDGER
        if pull == self.acked_pull:
            return Confirmation.CURRENT
        issued = next((i for i in self.issued if i.pull == pull), None)
        if issued is None:
            log.warning("cursor %s is not remembered; serving from the last confirmed", since)
            return Confirmation.UNKNOWN
        for fingerprint, (generation, end) in issued.ends.items():
            record = self.files.get(fingerprint)
            if record is not None and record.generation == generation:
                record.acked = max(record.acked, end)
        self.acked_pull = pull
        self.issued = [i for i in self.issued if i.pull > pull]
        return Confirmation.CONFIRMED

    def issue(self, ends: dict[str, list[int]]) -> str:
        """Records a new pull going up to `ends` and returns its cursor."""
        pull = self.next_pull
        self.next_pull += 1
        self.issued.append(Issued(pull, ends))
        self.issued = self.issued[-MAX_UNCONFIRMED:]
        return self.cursor(pull)

    # -- files ----------------------------------------------------------------------------------

    def record(self, fingerprint: str) -> FileRecord:
        """Returns a file's record, made (next in order) if it is new."""
        record = self.files.get(fingerprint)
        if record is None:
            record = FileRecord(seq=self.next_seq)
            self.next_seq += 1
            self.files[fingerprint] = record
        return record

    def forget(self, present: set[str], now: float, after: float) -> None:
        """Drops the records of files gone from the directory for longer than `after` seconds.

        Kept meanwhile: a file compressed by a tool that removes it before the archive
        appears is still recognised, and not sent again.
        """
        for fingerprint, record in list(self.files.items()):
            if fingerprint not in present and now - record.seen > after:
                del self.files[fingerprint]

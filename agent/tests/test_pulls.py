"""The pull protocol over a real log directory that rotates: every line once, in every case.

`Registry` plays the log-extractor's part: it sends its stored cursor as `since`, reads the
whole answer, and stores the answer's cursor only when it got all of it. A restart of the
agent is a new `LogService` over the ledger read back from disk.
"""

from __future__ import annotations

import gzip
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rbr_agent.ledger import LEDGER_FILE, BadCursor, Ledger
from rbr_agent.pulls import LogService, Pull, PullSettings, TransferCut

RUSTBUCKET = ("rustbucket.log", "rustbucket.log.*")
AUTH = ("auth.log", "auth.log.*")


def service(
    tmp_path: Path, patterns: tuple[str, ...] = RUSTBUCKET, **settings: object
) -> LogService:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    values: dict[str, object] = {"directory": logs, "patterns": patterns}
    values.update(settings)
    return LogService(PullSettings(**values), Ledger.open(state / LEDGER_FILE))  # type: ignore[arg-type]


@dataclass
class Registry:
    """The registry's side of the protocol: a stored cursor and every line it stored."""

    logs: LogService
    cursor: str | None = None
    lines: list[bytes] = field(default_factory=list)
    answers: list[Pull] = field(default_factory=list)

    def pull(self) -> list[bytes]:
        """One whole pull: stored, then its cursor stored."""
        pull = self.logs.begin(self.cursor)
        body = b"".join(self.logs.body(pull))
        got = body.splitlines(keepends=True)
        assert all(line.endswith(b"\n") for line in got), "only whole lines are sent"
        self.lines.extend(got)
        self.cursor = pull.cursor
        self.answers.append(pull)
        return got

    def failed_pull(self) -> None:
        """A transfer that broke after its first chunk: nothing stored, cursor kept."""
        pull = self.logs.begin(self.cursor)
        next(iter(self.logs.body(pull)), None)

    def drain(self) -> list[bytes]:
        """Pulls until nothing new comes."""
        got: list[bytes] = []
        while new := self.pull():
            got.extend(new)
        return got


def write(path: Path, *lines: str, mtime: float | None = None) -> list[bytes]:
    data = [f"{line}\n".encode() for line in lines]
    with path.open("ab") as handle:
        handle.write(b"".join(data))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return data


def once_each(lines: list[bytes]) -> bool:
    return all(count == 1 for count in Counter(lines).values())


def test_daily_and_hourly_files_are_served_oldest_first_and_each_line_once(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    logs = tmp_path / "logs"
    old = time.time() - 3 * 86400
    expected = write(logs / "rustbucket.log.2024-05-01", "d1 a", "d1 b", mtime=old)
    expected += write(logs / "rustbucket.log.2024-05-02", "d2 a", mtime=old + 86400)
    (logs / "unrelated.txt").write_text("not a log\n")
    assert registry.pull() == expected
    expected_more = write(logs / "rustbucket.log.2024-05-02", "d2 b")
    expected_more += write(logs / "rustbucket.log.2024-05-03-00", "h0 a")
    expected_more += write(logs / "rustbucket.log.2024-05-03-01", "h1 a")
    assert registry.drain() == expected_more
    assert registry.pull() == []
    assert registry.answers[-1].cursor == registry.answers[-2].cursor  # nothing new: same cursor


def test_a_rename_and_compression_continue_where_the_file_was(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path, AUTH))
    logs = tmp_path / "logs"
    expected = write(logs / "auth.log", "Jan 1 sshd: first", "Jan 1 sshd: second")
    registry.pull()
    expected += write(logs / "auth.log", "Jan 1 sshd: third (after the pull)")
    # logrotate (create, delaycompress): auth.log -> auth.log.1, a new auth.log ...
    (logs / "auth.log").rename(logs / "auth.log.1")
    expected += write(logs / "auth.log", "Jan 2 sshd: new file")
    registry.pull()
    expected += write(logs / "auth.log", "Jan 2 sshd: more")
    # ... and at the next rotation auth.log.1 -> auth.log.2.gz, auth.log -> auth.log.1.
    with (logs / "auth.log.1").open("rb") as source, gzip.open(logs / "auth.log.2.gz", "wb") as gz:
        gz.write(source.read())
    (logs / "auth.log.1").unlink()
    (logs / "auth.log").rename(logs / "auth.log.1")
    expected += write(logs / "auth.log", "Jan 3 sshd: newest")
    registry.drain()
    assert sorted(registry.lines) == sorted(expected)
    assert once_each(registry.lines)


def test_a_compressed_archive_adds_what_was_written_after_the_last_pull(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path, AUTH))
    logs = tmp_path / "logs"
    expected = write(logs / "auth.log", "one", "two")
    registry.pull()
    expected += write(logs / "auth.log", "three: written before rotation, never pulled plain")
    with (logs / "auth.log").open("rb") as source, gzip.open(logs / "auth.log.1.gz", "wb") as gz:
        gz.write(source.read())
    (logs / "auth.log").unlink()
    assert registry.pull() == expected[2:]
    assert registry.pull() == []


def test_copytruncate_keeps_both_the_copy_and_the_new_content(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    logs = tmp_path / "logs"
    current = logs / "rustbucket.log"
    expected = write(current, "2024-05-01T00:00 first", "2024-05-01T00:01 pulled")
    registry.pull()
    expected += write(current, "2024-05-01T23:59 written after the pull")
    # logrotate copytruncate: copied aside, then truncated in place and written again.
    (logs / "rustbucket.log.1").write_bytes(current.read_bytes())
    current.write_bytes(b"")
    expected += write(current, "2024-05-02T00:00 after truncation")
    registry.drain()
    assert sorted(registry.lines) == sorted(expected)
    assert once_each(registry.lines)


def test_a_file_truncated_in_place_is_served_again_from_its_start(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    logs = tmp_path / "logs"
    current = logs / "rustbucket.log"
    expected = write(current, "header", "before truncation 1", "before truncation 2")
    registry.pull()
    # Emptied in place (`: > rustbucket.log`) and written again, beginning with the same line:
    # only its shrinking tells it apart.
    current.write_bytes(b"")
    expected += write(current, "header")
    assert registry.pull() == [b"header\n"]
    expected += write(current, "after truncation")
    registry.drain()
    assert registry.lines == expected


def test_a_failed_transfer_is_sent_again_and_a_stored_one_never(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    logs = tmp_path / "logs"
    expected = write(logs / "rustbucket.log.2024-05-01", *(f"line {i}" for i in range(100)))
    registry.failed_pull()
    registry.failed_pull()
    expected += write(logs / "rustbucket.log.2024-05-01", "written between the failures")
    assert registry.pull() == expected
    assert registry.pull() == []
    assert registry.lines == expected


def test_restarts_at_any_moment_neither_skip_nor_repeat_a_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    expected: list[bytes] = []
    registry = Registry(service(tmp_path))
    for restart in range(4):
        expected += write(logs / "rustbucket.log.2024-05-01", f"before pull {restart}")
        # The agent stops after sending a pull the registry stored, before the registry
        # confirmed it: the confirmation reaches the next agent process.
        registry.pull()
        expected += write(logs / "rustbucket.log.2024-05-01", f"after pull {restart}")
        registry.failed_pull()
        registry.logs = service(tmp_path)  # restart: the ledger is read back from disk
    registry.drain()
    assert registry.lines == expected


def test_an_unfinished_last_line_waits_until_the_file_is_idle(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path, partial_line_after=60.0))
    logs = tmp_path / "logs"
    day = logs / "rustbucket.log.2024-05-01"
    write(day, "whole")
    with day.open("ab") as handle:
        handle.write(b"half a li")
    assert registry.pull() == [b"whole\n"]
    with day.open("ab") as handle:
        handle.write(b"ne\n")
    assert registry.pull() == [b"half a line\n"]
    with day.open("ab") as handle:
        handle.write(b"the honeypot died mid-line")
    assert registry.pull() == []
    long_ago = time.time() - 3600
    os.utime(day, (long_ago, long_ago))
    assert registry.pull() == [b"the honeypot died mid-line\n"]  # a newline is added
    assert registry.pull() == []


def test_the_budget_splits_a_backlog_at_line_boundaries(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path, max_pull_bytes=4096))
    logs = tmp_path / "logs"
    expected = write(
        logs / "rustbucket.log.2024-05-01", *(f"line {i:05d} " + "x" * 50 for i in range(500))
    )
    registry.drain()
    assert registry.lines == expected
    assert len(registry.answers) > 5
    assert all(answer.size <= 4096 for answer in registry.answers)


def test_an_archive_still_being_written_waits_until_it_is_whole(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path, AUTH))
    logs = tmp_path / "logs"
    lines = [f"archived {i} " + "y" * 40 for i in range(2000)]
    whole = gzip.compress("".join(f"{line}\n" for line in lines).encode())
    (logs / "auth.log.2.gz").write_bytes(whole[: len(whole) // 2])
    assert registry.pull() == []
    (logs / "auth.log.2.gz").write_bytes(whole)
    assert registry.pull() == [f"{line}\n".encode() for line in lines]


def test_a_file_renamed_during_a_transfer_is_followed(tmp_path: Path) -> None:
    logs_service = service(tmp_path, AUTH)
    logs = tmp_path / "logs"
    expected = write(logs / "auth.log", *(f"line {i}" for i in range(10)))
    pull = logs_service.begin(None)
    (logs / "auth.log").rename(logs / "auth.log.1")
    write(logs / "auth.log", "a new file with another first line")
    assert b"".join(logs_service.body(pull)) == b"".join(expected)


def test_a_file_truncated_during_a_transfer_cuts_it_short(tmp_path: Path) -> None:
    logs_service = service(tmp_path, AUTH)
    logs = tmp_path / "logs"
    write(logs / "auth.log", *(f"line {i}" for i in range(10)))
    pull = logs_service.begin(None)
    with (logs / "auth.log").open("r+b") as handle:
        handle.truncate(20)
    with pytest.raises(TransferCut):
        b"".join(logs_service.body(pull))


def test_links_out_of_the_log_directory_are_not_followed(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    secret = tmp_path / "secret"
    secret.write_text("root:hash:...\n")
    (tmp_path / "logs" / "rustbucket.log.2024-05-01").symlink_to(secret)
    assert registry.pull() == []


def test_cursors_of_another_ledger_reset_and_malformed_ones_are_refused(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    expected = write(tmp_path / "logs" / "rustbucket.log", "a")
    registry.cursor = "0badc0de-7"
    assert registry.pull() == expected
    assert registry.answers[-1].reset
    with pytest.raises(BadCursor):
        registry.logs.begin("../../etc/passwd")


def test_the_ledger_is_private(tmp_path: Path) -> None:
    registry = Registry(service(tmp_path))
    write(tmp_path / "logs" / "rustbucket.log", "a")
    registry.pull()
    mode = stat.S_IMODE((tmp_path / "state" / LEDGER_FILE).stat().st_mode)
    assert mode == 0o600

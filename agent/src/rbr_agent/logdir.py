"""The honeypot's log directory: which files are logs, what each one is, how long it is.

A log file is known by its first line (a SHA-256 of it, up to 4 KiB), not by its name or
inode: the line survives a rename (`auth.log` -> `auth.log.1`), a copy and a compression
(`auth.log.1` -> `auth.log.2.gz`), so the agent goes on from where it was in the content
whatever rotation did to the file. A file whose first line is not complete yet is not a log
file yet. Compressed files (.gz, .bz2, .xz) are read through their decompressor; their
content length is measured once (they do not change) and remembered.

Symbolic links are not followed: whatever writes into the log directory (a honeypot, and so
perhaps an attacker) must not make the agent read files elsewhere on the host.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import logging
import lzma
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_LINE_MAX = 4096
READ_CHUNK = 256 * 1024
_OPENERS: dict[str, Callable[[Path], BufferedIOBase]] = {
    ".gz": lambda path: gzip.GzipFile(path, "rb"),
    ".bz2": lambda path: bz2.BZ2File(path, "rb"),
    ".xz": lambda path: lzma.LZMAFile(path, "rb"),  # noqa: SIM115 - the caller closes it
}
_UNSUPPORTED = (".zst", ".zip", ".lz4", ".Z", ".br")
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


@dataclass(frozen=True)
class LogFile:
    """One file of the log directory, as it was when the directory was read."""

    path: Path
    codec: str | None
    """The compression suffix (".gz", ".bz2", ".xz"), or None for a plain file."""
    size: int
    """Bytes on disk (compressed bytes for an archive)."""
    mtime_ns: int
    fingerprint: str

    @property
    def compressed(self) -> bool:
        """Tells whether the file is read through a decompressor."""
        return self.codec is not None

    @property
    def signature(self) -> tuple[int, int]:
        """Returns what tells two versions of an archive apart: its size and mtime."""
        return (self.size, self.mtime_ns)


def codec_of(path: Path) -> str | None:
    """Returns the compression suffix of a file name, or None for a plain file."""
    return path.suffix if path.suffix in _OPENERS else None


def open_content(path: Path, codec: str | None) -> BufferedIOBase:
    """Opens a log file for reading its content (decompressed when it is an archive)."""
    if codec is None:
        return path.open("rb")
    return _OPENERS[codec](path)


def fingerprint_of(head: bytes) -> str | None:
    """Returns the identity of a file from its first bytes, or None until its first line ends."""
    newline = head.find(b"\n", 0, FIRST_LINE_MAX)
    if newline >= 0:
        return hashlib.sha256(head[: newline + 1]).hexdigest()[:32]
    if len(head) >= FIRST_LINE_MAX:
        return hashlib.sha256(head[:FIRST_LINE_MAX]).hexdigest()[:32]
    return None


def read_head(path: Path, codec: str | None) -> bytes | None:
    """Returns the first FIRST_LINE_MAX bytes of a file's content, or None if unreadable."""
    try:
        with open_content(path, codec) as handle:
            return read_exactly(handle, FIRST_LINE_MAX)
    except DECOMPRESSION_ERRORS as error:
        log.debug("cannot read the start of %s: %s", path.name, error)
        return None


def read_exactly(handle: BufferedIOBase, count: int) -> bytes:
    """Reads up to `count` bytes, fewer only at the end of the content."""
    pieces: list[bytes] = []
    wanted = count
    while wanted > 0:
        piece = handle.read(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Tells whether a file name is one of the log files (dot files never are)."""
    return not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def scan(directory: Path, patterns: tuple[str, ...]) -> list[LogFile]:
    """Returns the log files of the directory that have a complete first line.

    Raises:
        OSError: the directory cannot be listed.
    """
    found: list[LogFile] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not matches(entry.name, patterns) or not entry.is_file(follow_symlinks=False):
                continue
            log_file = identify(Path(entry.path))
            if log_file is not None:
                found.append(log_file)
    return found


_warned_unsupported: set[str] = set()


def identify(path: Path) -> LogFile | None:
    """Returns what a file is, or None when it is not (yet) a readable log file."""
    if path.suffix in _UNSUPPORTED:
        if path.name not in _warned_unsupported:
            _warned_unsupported.add(path.name)
            log.warning("%s: %s archives are not read (gz, bz2, xz are)", path.name, path.suffix)
        return None
    codec = codec_of(path)
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    head = read_head(path, codec)
    fingerprint = fingerprint_of(head) if head is not None else None
    if fingerprint is None:
        return None
    return LogFile(path, codec, info.st_size, info.st_mtime_ns, fingerprint)


@dataclass(frozen=True)
class ContentLength:
    """An archive's decompressed length, and whether its content ends with a newline."""

    length: int
    ends_with_newline: bool


def measure(path: Path, codec: str | None) -> ContentLength | None:
    """Decompresses an archive to its end (bounded memory) and returns its content's length.

    None when the archive is damaged or still being written (it ends early).
    """
    length, last = 0, b""
    try:
        with open_content(path, codec) as handle:
            while chunk := handle.read(READ_CHUNK):
                length += len(chunk)
                last = chunk[-1:]
    except DECOMPRESSION_ERRORS as error:
        log.info("%s cannot be read to its end yet (%s); trying again later", path.name, error)
        return None
    return ContentLength(length, last in (b"", b"\n"))


def last_line_end(path: Path, start: int, limit: int) -> int | None:
    """Returns the offset just after the last newline in [start, limit) of a plain file."""
    block = 64 * 1024
    with path.open("rb") as handle:
        position = limit
        while position > start:
            begin = max(start, position - block)
            handle.seek(begin)
            data = handle.read(position - begin)
            newline = data.rfind(b"\n")
            if newline >= 0:
                return begin + newline + 1
            position = begin
    return None


def next_line_end(path: Path, start: int, limit: int) -> int | None:
    """Returns the offset just after the first newline in [start, limit) of a plain file."""
    with path.open("rb") as handle:
        handle.seek(start)
        position = start
        while position < limit:
            data = handle.read(min(READ_CHUNK, limit - position))
            if not data:
                return None
            newline = data.find(b"\n")
            if newline >= 0:
                return position + newline + 1
            position += len(data)
    return None


def directory_bytes(files: Iterable[LogFile]) -> int:
    """Returns the bytes the log files take on disk."""
    return sum(f.size for f in files)

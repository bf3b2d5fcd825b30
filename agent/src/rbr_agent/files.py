"""Writing the agent's own files: private (0600), atomic and durable."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class StateError(Exception):
    """A state file exists but cannot be used; the message says which and why."""


def ensure_private_dir(path: Path) -> None:
    """Creates the directory (0700) if needed; tightens its mode if others may read it."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0700", path, mode)
        path.chmod(PRIVATE_DIR)


def write_private(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` atomically: readable by the owner only, on disk on return.

    Written to a temporary file created 0600 (never wider, not even for a moment), flushed
    and synced, renamed over the old file, and the directory synced, so a crash at any point
    leaves either the old or the new content.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_private_json(path: Path, document: dict[str, Any]) -> None:
    """Writes a JSON document with `write_private`."""
    write_private(path, json.dumps(document, indent=1, sort_keys=True).encode() + b"\n")


def read_private_json(path: Path) -> dict[str, Any] | None:
    """Returns the JSON object in `path`, or None when there is no such file.

    A file others may read is made 0600 (with a warning) before it is read.

    Raises:
        StateError: the file is unreadable or not a JSON object.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(PRIVATE_FILE)
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise StateError(f"{path} cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(document, dict):
        raise StateError(f"{path} is not a JSON object")
    return document

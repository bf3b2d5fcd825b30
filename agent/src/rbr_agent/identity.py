"""The agent's persistent identity: its bucket name and token, kept in a 0600 state file.

The identity is made once, on the first start, and read on every later one, so a restart
registers the same bucket again (the registrar answers "updated" or leaves it unchanged)
instead of leaving one more pending bucket behind. A state file that exists but cannot be
read stops the agent: making a new identity then would register a second bucket.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rbr_agent.files import StateError, read_private_json, write_private_json

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Identity:
    """Who the agent is to the registry."""

    name: str
    token: str
    created_at: str

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, created_at={self.created_at!r})"  # no token


def default_name(preset: str) -> str:
    """Returns `<preset>-<host>-<6 random characters>`, within the registry's name rules."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]).strip("-")
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(6))
    return "-".join(part for part in (preset, host[:40], suffix) if part)


def load_or_create(state_dir: Path, *, wanted_name: str | None, preset: str) -> Identity:
    """Returns the stored identity, or makes, stores and returns a new one.

    Args:
        state_dir: the agent's private directory.
        wanted_name: the name to take on the first start (RBR_AGENT_NAME); later ignored.
        preset: names a new identity when no name is wanted.

    Raises:
        StateError: the state file is unreadable, or holds no usable name and token.
        ValueError: the wanted name breaks the registry's name rules.
    """
    path = state_dir / STATE_FILE
    document = read_private_json(path)
    if document is not None:
        identity = _parse(document, path)
        if wanted_name and wanted_name != identity.name:
            log.warning(
                "keeping the stored name %s (RBR_AGENT_NAME=%s is only used on the first "
                "start; remove %s to take a new identity, which registers a new bucket)",
                identity.name,
                wanted_name,
                path,
            )
        return identity
    name = wanted_name or default_name(preset)
    if NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"agent name {name!r} is not a valid bucket name: 1 to 128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    identity = Identity(
        name=name,
        token=secrets.token_urlsafe(32),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_private_json(
        path, {"name": identity.name, "token": identity.token, "created_at": identity.created_at}
    )
    log.info("new identity %s stored in %s", identity.name, path)
    return identity


def _parse(document: dict[str, object], path: Path) -> Identity:
    name, token = document.get("name"), document.get("token")
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise StateError(f"{path} holds no valid name")
    if not isinstance(token, str) or not 16 <= len(token) <= 256:
        raise StateError(f"{path} holds no valid token")
    created = document.get("created_at")
    return Identity(name=name, token=token, created_at=str(created or ""))

"""The local stack's settings file (`var/rbr.env`), written by `rbr stack`, read by `rbr`.

`rbr stack` writes what it gave its services (ports, database, operator key ...) at each
start. Every other `rbr` command loads that file when it exists, so `rbr buckets list` or
`rbr simulate` run from the repository talk to the local stack with no `source`: a variable
already set in the environment wins, `RBR_ENV_FILE` names another file, and `RBR_ENV_FILE=`
(empty) turns the loading off.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

DEFAULT_PATH = Path("var") / "rbr.env"
PATH_VARIABLE = "RBR_ENV_FILE"
HEADER = "# Written by rbr stack at each start; secrets inside. Read by rbr: docs/local-stack.md\n"


def write(path: Path, env: Mapping[str, str]) -> None:
    """Writes settings as a shell can source them (`set -a; source ...`), readable by its owner."""
    lines = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    path.chmod(0o600)


def read(path: Path) -> dict[str, str]:
    """Returns the settings in a file written by `write`."""
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, quoted = line.partition("=")
        words = shlex.split(quoted)
        settings[key.strip()] = words[0] if words else ""
    return settings


def load(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Adds the stack's settings to the environment (what is set already wins).

    Returns:
        The file loaded, or None when there is none (or loading is turned off).
    """
    target = os.environ if environ is None else environ
    path = Path(target.get(PATH_VARIABLE, str(DEFAULT_PATH)))
    if not str(path) or str(path) == "." or not path.is_file():
        return None
    for key, value in read(path).items():
        target.setdefault(key, value)
    return path

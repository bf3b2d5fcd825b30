"""Runs a command tied to the process that started it: when that process dies, so does this.

`python -m rbr_cli.tether PARENT_PID COMMAND [ARGS...]` asks the kernel to SIGKILL it when its
parent goes (PR_SET_PDEATHSIG, kept across exec), then becomes COMMAND. `rbr stack` starts
every child this way, in its own session so that a Ctrl-C at the terminal reaches only the
stack, which stops them in order; and however the stack itself dies (SIGKILL, OOM killer), its
children go with it and a fresh start finds its ports free.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def tie_to_parent(parent_pid: int) -> None:
    """Asks for SIGKILL when the parent dies; exits at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took hold
        os._exit(1)


def command(parent_pid: int, argv: list[str]) -> list[str]:
    """Returns the command line that runs argv tied to parent_pid."""
    return [sys.executable, "-m", "rbr_cli.tether", str(parent_pid), *argv]


def main() -> None:
    """Ties itself to the given parent, then execs the rest of the command line."""
    parent_pid, argv = int(sys.argv[1]), sys.argv[2:]
    tie_to_parent(parent_pid)
    os.execvp(argv[0], argv)  # noqa: S606 - the stack's own command lines


if __name__ == "__main__":
    main()

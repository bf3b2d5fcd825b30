"""Keeps the local stack's processes running: one that exits on its own is restarted.

A process that exits while the stack is not stopping is reported (one line naming it, how it
ended and how many restarts it has had) and started again after a backoff that doubles with
each quick failure (1 s, 2 s, 4 s ... up to 30 s) and starts over once a run lasted a minute.
Only `stop` ends a process for good: it sends SIGTERM, waits for the process to drain, then
SIGKILLs what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from rbr_cli import tether


@dataclass(frozen=True)
class Program:
    """One process of the stack: what to run, with what environment, and where its output goes.

    Attributes:
        name: What the stack calls it in its output.
        argv: The command line.
        env: Its whole environment.
        log_path: A file its output is appended to; None prints it in the stack's output, each
            line prefixed with the name.
        gated: Its standard input is a pipe that `open_gate` writes "go" to: a program that
            reads it before starting its work can load while what it needs is still starting.
    """

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log_path: Path | None = None
    gated: bool = False


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a process that keeps failing.

    Attributes:
        initial: The wait after a first quick failure.
        maximum: The longest wait.
        stable_after: A run this long counts as healthy: the next failure waits `initial` again.
    """

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        """Returns the wait before the restart following `failures` quick failures in a row."""
        return float(min(self.maximum, self.initial * 2 ** max(failures - 1, 0)))


@dataclass
class _Child:
    program: Program
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    failures: int = 0
    restart_at: float | None = None
    stopped: bool = False
    gate_open: bool = False
    pumps: list[threading.Thread] = field(default_factory=list)


def describe_exit(returncode: int) -> str:
    """Returns how a process ended, in words ("killed by SIGKILL", "exit code 1")."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Starts programs, restarts the ones that exit, and stops them in the order asked."""

    def __init__(
        self, say: Callable[[str], None], output: IO[str], backoff: Backoff | None = None
    ) -> None:
        """Creates a supervisor.

        Args:
            say: Prints one line of the stack's own news.
            output: Where the programs' prefixed output lines go.
            backoff: The restart policy.
        """
        self._say = say
        self._output = output
        self._output_lock = threading.Lock()
        self._backoff = backoff or Backoff()
        self._children: dict[str, _Child] = {}
        self._width = 14

    def start(self, program: Program) -> subprocess.Popen[bytes]:
        """Starts a program (the first time) and returns its process."""
        self._width = max(self._width, len(program.name))
        process, pumps = self._spawn(program)
        self._children[program.name] = _Child(program, process, time.monotonic(), pumps=pumps)
        self._say(f"{program.name} started (pid={process.pid})")
        return process

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """Returns the current process of a program."""
        return self._children[name].process

    def open_gate(self, name: str) -> None:
        """Lets a gated program start its work, now and after every restart."""
        child = self._children[name]
        child.gate_open = True
        _send_go(child.process)

    def restart_counts(self) -> dict[str, int]:
        """Returns how many times each program was restarted."""
        return {name: child.restarts for name, child in self._children.items()}

    def tend(self) -> None:
        """Notices programs that exited and restarts the ones whose backoff is over."""
        now = time.monotonic()
        for child in self._children.values():
            if child.stopped:
                continue
            if child.restart_at is None and child.process.poll() is not None:
                self._schedule_restart(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._restart(child, now)

    def stop(self, names: Iterable[str], timeout: float) -> None:
        """Stops these programs for good: SIGTERM together, then SIGKILL after `timeout`."""
        children = [self._children[name] for name in names if name in self._children]
        for child in children:
            child.stopped = True
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            self._reap(child, deadline)

    def _reap(self, child: _Child, deadline: float) -> None:
        try:
            child.process.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self._say(f"{child.program.name} did not stop in time; sending SIGKILL")
            child.process.kill()
            child.process.wait()
        for pump in child.pumps:
            pump.join(timeout=5)
        restarts = f" after {child.restarts} restart(s)" if child.restarts else ""
        self._say(f"{child.program.name} stopped (rc={child.process.returncode}){restarts}")

    def _schedule_restart(self, child: _Child, now: float) -> None:
        if now - child.started_at >= self._backoff.stable_after:
            child.failures = 0
        child.failures += 1
        delay = self._backoff.delay(child.failures)
        child.restart_at = now + delay
        how = describe_exit(child.process.returncode)
        self._say(
            f"{child.program.name} exited unexpectedly ({how}); restarting in {delay:.0f}s "
            f"(restart #{child.restarts + 1})"
        )

    def _restart(self, child: _Child, now: float) -> None:
        child.process, child.pumps = self._spawn(child.program)
        if child.gate_open:
            _send_go(child.process)
        child.started_at = now
        child.restart_at = None
        child.restarts += 1
        self._say(
            f"{child.program.name} restarted (pid={child.process.pid}; "
            f"{child.restarts} restart(s) so far)"
        )

    def _spawn(self, program: Program) -> tuple[subprocess.Popen[bytes], list[threading.Thread]]:
        # Its own session: a Ctrl-C at the terminal reaches only the stack, which stops the
        # children in order (services drain before the broker goes). The tether kills it if
        # the stack dies without doing so.
        argv = tether.command(os.getpid(), program.argv)
        stdin = subprocess.PIPE if program.gated else subprocess.DEVNULL
        if program.log_path is not None:
            with program.log_path.open("ab") as log:
                process = subprocess.Popen(  # noqa: S603 - the stack's own command lines
                    argv,
                    env=dict(program.env),
                    stdin=stdin,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            return process, []
        process = subprocess.Popen(  # noqa: S603 - the stack's own command lines
            argv,
            env=dict(program.env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pump = threading.Thread(
            target=self._pump, args=(program.name, process), name=f"output-{program.name}"
        )
        pump.daemon = True
        pump.start()
        return process, [pump]

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            clock = datetime.now().strftime("%H:%M:%S")
            with self._output_lock:
                self._output.write(f"{clock} {name:<{self._width}} | {line}\n")
                self._output.flush()


GO = b"go\n"


def _send_go(process: subprocess.Popen[bytes]) -> None:
    """Writes "go" to a gated process (one that already died cannot read it: no matter)."""
    if process.stdin is None or process.stdin.closed:
        return
    try:
        process.stdin.write(GO)
        process.stdin.close()
    except BrokenPipeError:
        pass

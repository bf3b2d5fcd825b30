"""The stack's supervisor restarts what exits on its own, and its children die with it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from rbr_cli.supervisor import Backoff, Program, Supervisor, describe_exit
from rbr_testing.waiting import wait_for


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_exits_are_described_by_signal_or_code() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


def test_a_program_that_exits_is_reported_and_restarted_until_stopped(tmp_path: Path) -> None:
    said: list[str] = []
    output = io.StringIO()
    supervisor = Supervisor(said.append, output, Backoff(initial=0.01, maximum=0.05))
    script = "import sys; print('hello'); sys.exit(3)"
    supervisor.start(Program("flaky", [sys.executable, "-c", script], dict(os.environ)))

    def restarted_twice() -> bool:
        supervisor.tend()
        return supervisor.restart_counts()["flaky"] >= 2

    wait_for(restarted_twice, timeout=30, message="two restarts")
    supervisor.stop(["flaky"], timeout=10)
    assert "flaky exited unexpectedly (exit code 3); restarting in 0s (restart #1)" in said
    assert any(line.startswith("flaky restarted (pid=") for line in said)
    assert said[-1].startswith("flaky stopped (rc=")
    assert "| hello" in output.getvalue()
    restarts = supervisor.restart_counts()["flaky"]
    supervisor.tend()
    assert supervisor.restart_counts()["flaky"] == restarts  # stopped for good


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = textwrap.dedent(
        f"""
        import io, os, sys, time
        from rbr_cli.supervisor import Program, Supervisor
        supervisor = Supervisor(print, io.StringIO())
        child = supervisor.start(Program("sleeper", ["sleep", "300"], dict(os.environ)))
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), message="the child's pid")
        child = int(pid_file.read_text())
        wait_for(lambda: _command(child).startswith("sleep"), message="the child running")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    wait_for(lambda: not _alive(child), timeout=10, message="the orphaned child gone")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    # A zombie (reaped by init shortly) counts as gone: it no longer runs.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_a_gated_program_waits_for_its_go_also_after_a_restart() -> None:
    said: list[str] = []
    output = io.StringIO()
    supervisor = Supervisor(said.append, output, Backoff(initial=0.01, maximum=0.05))
    script = (
        "import sys\n"
        "print('loaded', flush=True)\n"
        "if sys.stdin.readline() == 'go\\n':\n"
        "    print('working', flush=True)\n"
        "    sys.exit(3)\n"
    )
    program = Program("gated", [sys.executable, "-c", script], dict(os.environ), gated=True)
    supervisor.start(program)
    wait_for(lambda: "| loaded" in output.getvalue(), message="the program loaded")
    assert "| working" not in output.getvalue()
    assert supervisor.process("gated").poll() is None  # waiting for its go

    supervisor.open_gate("gated")

    def worked_twice() -> bool:
        supervisor.tend()
        return output.getvalue().count("| working") >= 2

    wait_for(worked_twice, timeout=30, message="working again after its restart")
    supervisor.stop(["gated"], timeout=10)

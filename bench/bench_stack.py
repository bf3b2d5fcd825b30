"""Local stack figures: cold start to every service ready, and a restart to the first poll.

* cold start: `rbr stack` on an empty var dir (broker, S3 endpoint, migrations, topics, six
  services), from the command to every service answering 200 on /readyz.
* restart: the stack of a registered fleet (5 simulated buckets, polled every 2 s) is SIGKILLed
  (its whole process group) and started again on the same var dir; from the command to every
  service ready, and to the first `/update_bucket` a bucket receives.

Each figure is the median of several rounds (one with --quick).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.figures import Figure
from rbr_simulator.fleet import Fleet
from rbr_testing.stack import RunningStack
from rbr_testing.waiting import wait_for

GOAL_SECONDS = 15.0
ENROLLMENT_KEY = "bench-stack-key"
FLEET_SETTINGS = {"RBR_ENROLLMENT_KEYS": ENROLLMENT_KEY, "RBR_POLL_INTERVAL": "2"}


def _cold_start(var_dir: Path) -> float:
    stack = RunningStack(var_dir)
    started = time.monotonic()
    stack.start()
    try:
        stack.wait_ready()
        return time.monotonic() - started
    finally:
        stack.stop()


def _restarts(var_dir: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Returns, per round, seconds from restart to all ready and to the first poll."""
    var_dir.mkdir(parents=True)
    stack = RunningStack(var_dir, env=FLEET_SETTINGS)
    to_ready: list[float] = []
    to_poll: list[float] = []
    with Fleet(5, bind="ports", ca_file=var_dir / "simulator-ca.pem") as fleet:
        stack.start()
        try:
            stack.wait_ready()
            assert all(r.ok for r in fleet.register(stack.url("registrar"), ENROLLMENT_KEY))
            wait_for(lambda: _polls(fleet) > 0, timeout=60, message="the fleet polled")
            for _ in range(rounds):
                stack.kill()
                before = _polls(fleet)
                started = time.monotonic()
                stack.start()
                wait_for(
                    lambda before=before: _polls(fleet) > before, timeout=120, message="a poll"
                )
                to_poll.append(time.monotonic() - started)
                stack.wait_ready()
                to_ready.append(time.monotonic() - started)
        finally:
            stack.stop()
    return to_ready, to_poll


def _polls(fleet: Fleet) -> int:
    return sum(fleet.request_counts("/update_bucket").values())


def run(quick: bool) -> list[Figure]:
    """Measures the stack's cold start and its restart after a SIGKILL."""
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as folder:
        root = Path(folder)
        cold = [_cold_start(root / f"cold-{n}") for n in range(rounds)]
        to_ready, to_poll = _restarts(root / "restarted", rounds)
    note = f"median of {rounds}; 2 cores, other work on the machine"
    return [
        _figure("stack: cold start to every service ready", cold, note),
        _figure("stack: restart after SIGKILL to every service ready", to_ready, note),
        _figure("stack: restart after SIGKILL to the first poll", to_poll, note),
    ]


def _figure(name: str, seconds: list[float], note: str) -> Figure:
    value = statistics.median(seconds)
    spread = ", ".join(f"{s:.1f}" for s in seconds)
    return Figure(
        name,
        value,
        "s",
        goal=f"< {GOAL_SECONDS:.0f} s",
        met=value < GOAL_SECONDS,
        note=f"{note}: {spread}",
    )

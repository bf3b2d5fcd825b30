"""CLI figures: `rbr --help` (goal < 0.5 s) and `rbr status` (goal < 3 s), wall time.

* help: `rbr --help`, every installed command listed (none of them imported).
* status, stack up: `rbr status` against a local stack (`rbr stack` on a temporary var dir)
  whose 5 simulated buckets are polled every 2 s, so consumer groups have offsets and lag; the
  settings come from the stack's var/rbr.env, as for an operator in a checkout.
* status, all down: broker, MySQL and S3 at ports where nothing listens: how long `rbr status`
  takes to say so.

Each figure is the median of several runs of the installed `rbr` in a process of its own. The
note gives the CPU seconds the command used (user + sys, about what it takes on an idle
machine) and the load average, since the machine is shared.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bench.figures import Figure
from rbr_simulator.fleet import Fleet
from rbr_testing.broker import free_port
from rbr_testing.stack import RunningStack
from rbr_testing.waiting import wait_for

HELP_GOAL = 0.5
STATUS_GOAL = 3.0
ENROLLMENT_KEY = "bench-cli-key"
FLEET_SETTINGS = {"RBR_ENROLLMENT_KEYS": ENROLLMENT_KEY, "RBR_POLL_INTERVAL": "2"}
RBR = Path(sys.executable).with_name("rbr")


def _clean_env(settings: Mapping[str, str]) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("RBR_")}
    return {**base, **settings}


def _timed(arguments: list[str], env: Mapping[str, str]) -> tuple[float, float, str]:
    """Runs `rbr` once; returns wall seconds, CPU seconds and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [str(RBR), *arguments], env=env, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout + done.stderr


def _figure(
    name: str,
    arguments: list[str],
    env: Mapping[str, str],
    rounds: int,
    *,
    goal: float,
    check: Callable[[str], str],
) -> Figure:
    runs = [_timed(arguments, env) for _ in range(rounds)]
    walls = [wall for wall, _, _ in runs]
    value = statistics.median(walls)
    cpu = statistics.median(cpu for _, cpu, _ in runs)
    spread = ", ".join(f"{wall:.2f}" for wall in walls)
    load = os.getloadavg()[0]
    remark = check(runs[-1][2])
    note = f"median of {rounds}: {spread}; CPU {cpu:.2f} s; load {load:.1f} on 2 cores{remark}"
    return Figure(name, value, "s", goal=f"< {goal:g} s", met=value < goal, note=note)


def _help_lists_commands(output: str) -> str:
    assert "status" in output, output[-2000:]
    assert "buckets" in output, output[-2000:]
    return ""


def _lag_counted(output: str) -> str:
    assert "broker     ok" in output, output[-2000:]
    if "lag (messages)" not in output:
        return "; lag not counted"
    return "; lag partly unknown (+)" if "+: at least" in output else "; lag complete"


def _all_reported_down(output: str) -> str:
    for name in ("broker", "database", "s3"):
        assert any(line.startswith(name) and "FAIL" in line for line in output.splitlines())
    return ""


def _stack_status(var_dir: Path, rounds: int) -> Figure:
    stack = RunningStack(var_dir, env=FLEET_SETTINGS)
    with Fleet(5, bind="ports", ca_file=var_dir / "simulator-ca.pem") as fleet:
        stack.start()
        try:
            stack.wait_ready()
            assert all(r.ok for r in fleet.register(stack.url("registrar"), ENROLLMENT_KEY))
            wait_for(
                lambda: sum(fleet.request_counts("/update_bucket").values()) >= 10,
                timeout=120,
                message="the fleet polled",
            )
            env = _clean_env({"RBR_ENV_FILE": str(var_dir / "rbr.env")})
            return _figure(
                "rbr status: local stack, 5 buckets polled",
                ["status"],
                env,
                rounds,
                goal=STATUS_GOAL,
                check=_lag_counted,
            )
        finally:
            stack.stop()


def run(quick: bool) -> list[Figure]:
    """Measures `rbr --help`, and `rbr status` with the stack up and with everything down."""
    rounds = 3 if quick else 10
    help_env = _clean_env({"RBR_ENV_FILE": ""})
    down_env = _clean_env(
        {
            "RBR_ENV_FILE": "",
            "RBR_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "RBR_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{free_port()}/rbr",
            "RBR_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
    )
    figures = [
        _figure(
            "rbr --help",
            ["--help"],
            help_env,
            rounds,
            goal=HELP_GOAL,
            check=_help_lists_commands,
        ),
        _figure(
            "rbr status: broker, database and S3 all down",
            ["status"],
            down_env,
            rounds,
            goal=STATUS_GOAL,
            check=_all_reported_down,
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder:
        figures.append(_stack_status(Path(folder) / "var", rounds))
    return figures

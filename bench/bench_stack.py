"""Local stack figures: cold start to every service ready, and a restart to the first poll.

* cold start: `rbr stack` on an empty var dir (broker, S3 endpoint, migrations, topics, six
  services), from the command to every service answering 200 on /readyz.
* restart: the stack of a registered fleet (5 simulated buckets, polled every 2 s) is SIGKILLed
  (its whole process group) and started again on the same var dir; from the command to every
  service ready, and to the first `/update_bucket` a bucket receives.

* S3 endpoint restore: how long `rbr_cli.durable_s3` takes to load N kept objects (small, as
  the broker's record batches are) at start, and the memory they take. The broker's storage
  engine applies no topic retention, so its objects only grow (about 5,000 a day for ten
  buckets at the default intervals): this is what a start costs per day of history.

Each stack figure is the median of several rounds (one with --quick).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
                wait_for(_polled_since(fleet, before), timeout=120, message="a poll")
                to_poll.append(time.monotonic() - started)
                stack.wait_ready()
                to_ready.append(time.monotonic() - started)
        finally:
            stack.stop()
    return to_ready, to_poll


def _polled_since(fleet: Fleet, before: int) -> Callable[[], bool]:
    return lambda: _polls(fleet) > before


def _polls(fleet: Fleet) -> int:
    return sum(fleet.request_counts("/update_bucket").values())


# Loads a data folder in a process of its own and prints seconds and peak RSS (VmHWM).
_RESTORE = """
import json, sys, time
from pathlib import Path
from rbr_cli.durable_s3 import ObjectStore, restore
started = time.monotonic()
restore(ObjectStore(Path(sys.argv[1])))
seconds = time.monotonic() - started
status = Path("/proc/self/status").read_text()
hwm = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
print(json.dumps({"seconds": seconds, "rss_mb": hwm / 1024}))
"""


def _restore_figures(root: Path, objects: int) -> list[Figure]:
    from rbr_cli.durable_s3 import BucketRecord, ObjectStore  # noqa: PLC0415

    store = ObjectStore(root)
    store.save_bucket(BucketRecord("rbr-broker", "123456789012", "us-east-1"))
    for number in range(objects):
        key = f"clusters/c/topics/t/partitions/{number % 12:010d}/records/{number:020d}.batch"
        path = store._object_path("rbr-broker", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"key": key, "etag": "0" * 32, "metadata": {}, "size": 400}
        header["last_modified"] = "2026-12-01T00:00:00+00:00"
        path.write_bytes(json.dumps(header).encode() + b"\n" + os.urandom(400))
    empty = _restore_run(root / "empty")
    loaded = _restore_run(root)
    return [
        Figure(
            f"S3 endpoint: load {objects:,} kept objects at start",
            loaded["seconds"],
            "s",
            note="the broker's record batches, about 5,000 a day for 10 buckets",
        ),
        Figure(
            f"S3 endpoint: memory for {objects:,} kept objects",
            loaded["rss_mb"] - empty["rss_mb"],
            "MB",
            note=f"peak RSS {loaded['rss_mb']:.0f} MB, {empty['rss_mb']:.0f} MB empty",
        ),
    ]


def _restore_run(folder: Path) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _RESTORE, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def run(quick: bool) -> list[Figure]:
    """Measures the stack's cold start, its restart after a SIGKILL, and the S3 restore."""
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as folder:
        root = Path(folder)
        cold = [_cold_start(root / f"cold-{n}") for n in range(rounds)]
        to_ready, to_poll = _restarts(root / "restarted", rounds)
        restore = _restore_figures(root / "restore", 5_000 if quick else 30_000)
    note = f"median of {rounds}; 2 cores, other work on the machine"
    return [
        _figure("stack: cold start to every service ready", cold, note),
        _figure("stack: restart after SIGKILL to every service ready", to_ready, note),
        _figure("stack: restart after SIGKILL to the first poll", to_poll, note),
        *restore,
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

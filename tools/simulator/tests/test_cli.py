"""The `simulate` command, run as a real subprocess and stopped by a signal."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

STARTUP_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0


class Simulator:
    """A running `python -m rbr_simulator` with its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rbr_simulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                received = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if received is None:
                break
            self.lines.append(received)
            if match := re.search(pattern, received):
                return match
        pytest.fail(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.lines))

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=EXIT_TIMEOUT)
        self._reader.join(timeout=5)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def run_simulator() -> Iterator[Any]:
    started: list[Simulator] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Simulator:
        simulator = Simulator(list(args), {**os.environ, **(env or {})})
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.kill()


def test_simulate_starts_registers_serves_control_and_stops_on_sigint(
    run_simulator: Any, capture_registrar: Any, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca" / "sim-ca.pem"
    key = "cli-enrolment-key-42"
    simulator = run_simulator(
        "--count",
        "2",
        "--bind",
        "ports",
        "--registrar-url",
        capture_registrar.url,
        "--ca-file",
        str(ca_file),
        "--control-port",
        "0",
        "--rate",
        "0",
        env={"RBR_SIM_REGISTRATION_KEY": key},
    )

    control_port = int(simulator.wait_for_line(r"Control API: http://127\.0\.0\.1:(\d+)/")[1])
    simulator.wait_for_line(r"Running; press Ctrl-C to stop\.")
    with httpx.Client(base_url=f"http://127.0.0.1:{control_port}", timeout=5) as control:
        listed = control.get("/buckets").json()
        name = listed["buckets"][0]["name"]
        switched = control.post(f"/buckets/{name}/mode", json={"mode": "hang"})
        invalid = control.post(f"/buckets/{name}/mode", json={"mode": "sleepy"})
        unknown = control.post("/buckets/nope/mode", json={"mode": "hang"})
        emitted = control.post(f"/buckets/{name}/emit", json={"count": 3}).json()
        after = control.get(f"/buckets/{name}").json()
    code = simulator.stop(signal.SIGINT)

    assert code == 0
    assert simulator.lines[-1] == "Stopped."
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert listed["count"] == 2
    assert all(bucket["port"] != 443 for bucket in listed["buckets"])
    assert (switched.status_code, invalid.status_code, unknown.status_code) == (200, 400, 404)
    assert after["mode"] == "hang"
    assert (emitted["emitted"], after["records_generated"]) == (3, 3)
    tokens = [request.body["token"] for request in capture_registrar.requests]
    assert len(tokens) == 2
    assert all(request.body["registration_key"] == key for request in capture_registrar.requests)
    output = "\n".join(simulator.lines)
    assert str(ca_file) in output
    assert all(body_name in output for body_name in (b["name"] for b in listed["buckets"]))
    assert "Registered 2/2." in output
    for secret in (*tokens, key):
        assert secret not in output
        assert secret not in str(listed)


def test_simulate_stops_on_sigterm_while_retrying_an_unreachable_registrar(
    run_simulator: Any, tmp_path: Path
) -> None:
    simulator = run_simulator(
        "--count",
        "2",
        "--bind",
        "ports",
        "--registrar-url",
        f"http://127.0.0.1:{_closed_port()}/",
        "--ca-file",
        str(tmp_path / "ca.pem"),
        "--register-retry",
        "0.2",
    )

    simulator.wait_for_line(r"Retrying 2 registrations\.")
    started = time.monotonic()
    code = simulator.stop(signal.SIGTERM)

    assert code == 0
    assert time.monotonic() - started < EXIT_TIMEOUT
    assert "Registered 0/2." in simulator.lines
    assert simulator.lines[-1] == "Stopped."


def test_simulate_is_published_as_an_rbr_command() -> None:
    commands = {entry.name: entry for entry in entry_points(group="rbr.commands")}

    assert "simulate" in commands
    from rbr_simulator.cli import simulate  # noqa: PLC0415

    assert commands["simulate"].load() is simulate


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

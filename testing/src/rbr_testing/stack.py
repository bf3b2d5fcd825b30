"""`rbr stack` in a subprocess, for tests and benchmarks of the local stack.

    stack = RunningStack(tmp_path / "var", env={"RBR_POLL_INTERVAL": "1"})
    stack.start()
    stack.wait_ready()
    ...  # stack.pid("parser"), stack.count("SELECT COUNT(*) FROM logs"), stack.url("registrar")
    assert stack.stop() == 0

Each stack runs on a free port range (`--port-offset`), in a process group of its own, with
its output collected on a thread so the pipe never fills.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from rbr_cli.plugins import SERVICES_GROUP, discovered
from rbr_cli.stack import BROKER_PORT, S3_PORT, SERVICE_PORTS
from rbr_testing.waiting import wait_for

READY_LINE = "Ctrl-C stops everything"


def port_free(port: int) -> bool:
    """Returns whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_offset() -> int:
    """Returns a port offset at which every port of a stack is free."""
    ports = [BROKER_PORT, S3_PORT, *SERVICE_PORTS.values()]
    for _ in range(50):
        # Below the ephemeral range (32768 and up), where an outgoing connection could take one.
        offset = random.randrange(10_000, 23_000, 7)
        if all(port_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free port range found")


class RunningStack:
    """One `rbr stack` process and what it printed."""

    def __init__(
        self, var_dir: Path, env: Mapping[str, str] | None = None, offset: int | None = None
    ) -> None:
        """Prepares a stack on `var_dir`; `env` adds RBR_* settings to a clean environment."""
        self.var_dir = var_dir
        self.offset = free_offset() if offset is None else offset
        base = {key: value for key, value in os.environ.items() if not key.startswith("RBR_")}
        self.env = {**base, **(env or {})}
        self.services = sorted(discovered(SERVICES_GROUP))
        self._process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._previous_output = ""

    @property
    def process(self) -> subprocess.Popen[str]:
        """Returns the running stack process."""
        assert self._process is not None, "the stack was not started"
        return self._process

    def start(self) -> None:
        """Starts `rbr stack` (again, after a stop or kill: on the same var dir and ports)."""
        if self._lines:
            self._previous_output += self.output()
        self._lines = []
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rbr_cli",
                "stack",
                "--port-offset",
                str(self.offset),
                "--var-dir",
                str(self.var_dir),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.append(line)

    def output(self) -> str:
        """Returns what the current stack process printed so far."""
        return "".join(self._lines)

    def all_output(self) -> str:
        """Returns what every start of this stack printed."""
        return self._previous_output + self.output()

    def url(self, service: str) -> str:
        """Returns a service's base URL."""
        return f"http://127.0.0.1:{SERVICE_PORTS[service] + self.offset}"

    @property
    def broker_port(self) -> int:
        """Returns the broker's port."""
        return BROKER_PORT + self.offset

    @property
    def s3_port(self) -> int:
        """Returns the S3 endpoint's port."""
        return S3_PORT + self.offset

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Waits until the stack printed its endpoints and every service answers /readyz."""
        wait_for(
            lambda: READY_LINE in self.output() or self.process.poll() is not None,
            timeout=timeout,
            interval=0.1,
            message="the stack to start its services",
        )
        assert self.process.poll() is None, self.output()[-5000:]
        wait_for(
            lambda: all(self.ready(service) for service in self.services),
            timeout=timeout,
            interval=0.1,
            message="every service ready",
        )

    def ready(self, service: str) -> bool:
        """Returns whether a service answers 200 on /readyz."""
        try:
            return httpx.get(f"{self.url(service)}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def pid(self, name: str) -> int:
        """Returns the pid of a process of the stack, as the stack last reported it."""
        found = re.findall(rf"{re.escape(name)} (?:re)?started \(pid=(\d+)", self.output())
        assert found, f"{name} has no pid in the stack's output"
        return int(found[-1])

    def count(self, query: str) -> int:
        """Runs a COUNT query on the stack's SQLite database."""
        database = self.var_dir / "rbr.db"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
            return int(connection.execute(query).fetchone()[0])

    def stop(self, timeout: float = 90.0) -> int:
        """Asks the stack to stop (SIGINT, as Ctrl-C) and returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILLs the stack's whole process group and waits until its ports are free."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        ports = [self.broker_port, self.s3_port, *(self.port(name) for name in self.services)]
        wait_for(
            lambda: all(port_free(port) for port in ports),
            timeout=30,
            message="the killed stack's ports to be free",
        )

    def port(self, service: str) -> int:
        """Returns a service's HTTP port."""
        return SERVICE_PORTS[service] + self.offset

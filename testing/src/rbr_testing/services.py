"""Running a whole service in the test process, on a thread, and stopping it cleanly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rbr_runtime.service import Service
from rbr_testing.waiting import wait_for


@dataclass
class RunningService:
    """A service started by `running`; `exit_code` is set once it stopped."""

    service: Service
    thread: threading.Thread
    exit_codes: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int | None:
        """Returns the exit code, or None while running."""
        return self.exit_codes[0] if self.exit_codes else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Asks the service to drain and stop; returns its exit code."""
        self.service.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service did not stop in time"
        return self.exit_code


@contextmanager
def running(service: Service, *, ready_timeout: float = 30.0) -> Iterator[RunningService]:
    """Runs the service until the block ends; waits until its readiness checks pass."""
    handle = RunningService(service, threading.Thread(target=lambda: None))
    handle.thread = threading.Thread(
        target=lambda: handle.exit_codes.append(service.run(own_process=False)),
        name="service-under-test",
        daemon=True,
    )
    handle.thread.start()
    try:
        wait_for(
            lambda: handle.exit_codes or service.health.readiness()[0],
            timeout=ready_timeout,
            message="service ready",
        )
        yield handle
    finally:
        if handle.thread.is_alive():
            handle.stop()

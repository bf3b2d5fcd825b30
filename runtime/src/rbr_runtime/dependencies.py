"""Whether the database, S3 and the broker answer: probed every few seconds, on their own.

Work calls learn of an outage late (a call to a frozen endpoint blocks until its timeout), so
each service declares what it depends on and a `DependencyMonitor` probes each one every
`RBR_DEPENDENCY_CHECK_INTERVAL` seconds with its own short-timeout client. A dependency that
fails or does not answer within `RBR_DEPENDENCY_CHECK_TIMEOUT` is down: one log line, a gauge,
and a failing (or, if not required, degraded) readiness check. runtime/README.md,
"Dependency checks", tells the details.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import select

from rbr_runtime.db.engine import make_probe_engine
from rbr_runtime.errors import describe_error
from rbr_runtime.health import ReadinessCheck
from rbr_runtime.kafka.probe import quiet_admin
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.service import Service
from rbr_runtime.settings import CommonSettings
from rbr_schemas import utcnow

log = logging.getLogger(__name__)

DEPENDENCY_UP = Gauge(
    "rbr_dependency_up",
    "1 when the dependency answered its last check in time, 0 when it did not.",
    ["dependency"],
)
DEPENDENCY_OUTAGES = Counter(
    "rbr_dependency_outages_total", "Times the dependency went down.", ["dependency"]
)


@dataclass(frozen=True)
class Dependency:
    """Something a service needs, and how to check it answers.

    Attributes:
        name: what logs, metrics and `/readyz` call it ("database", "s3", "broker").
        probe: returns when the dependency answered; raises why not.
        required: whether an outage fails readiness (False: reported as degraded only).
        close: releases the probe's client at shutdown.
    """

    name: str
    probe: Callable[[], object]
    required: bool = True
    close: Callable[[], object] = lambda: None


def database_dependency(settings: CommonSettings) -> Dependency:
    """The database, checked with `SELECT 1` over a connection of its own."""
    engine = make_probe_engine(settings.database_url, settings.dependency_check_timeout)

    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(select(1))

    return Dependency("database", probe, close=engine.dispose)


def s3_dependency(settings: CommonSettings) -> Dependency:
    """The registry's bucket, checked with `HeadBucket` by a single-attempt client."""
    client = make_s3_client(settings, timeout=settings.dependency_check_timeout)
    bucket = settings.s3_bucket
    return Dependency("s3", lambda: client.head_bucket(Bucket=bucket), close=client.close)


def broker_dependency(settings: CommonSettings, *, required: bool = True) -> Dependency:
    """The broker, checked with a metadata request.

    Args:
        settings: the service settings.
        required: False when the service keeps doing its job without the broker.
    """
    # Quiet: the services' own clients already log the broker's errors; the monitor's one
    # line per outage is the signal.
    admin = quiet_admin(settings)
    timeout = settings.dependency_check_timeout
    return Dependency("broker", lambda: admin.list_topics(timeout=timeout), required=required)


class _Attempt:
    """One probe call on a thread of its own, so the monitor can stop waiting for it."""

    def __init__(self, dependency: Dependency, on_done: threading.Event) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None
        self._dependency = dependency
        self._on_done = on_done
        self._thread = threading.Thread(
            target=self._run, name=f"probe-{dependency.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self._dependency.probe()
        except Exception as error:  # noqa: BLE001 - any failure of a probe means "down", with why
            self.error = error
        self.done.set()
        self._on_done.set()

    def cause(self, timeout: float) -> str | None:
        """Returns why the dependency counts as down, or None when it answered."""
        if not self.done.is_set():
            return f"no answer within {timeout:g}s"
        if self.error is None:
            return None
        return describe_error(self.error)


@dataclass
class _Status:
    checked: bool = False
    cause: str | None = None
    down_since: datetime | None = None
    down_at: float = 0.0
    attempt: _Attempt | None = field(default=None, repr=False)


class DependencyMonitor:
    """Probes every dependency each interval; a component with `run` and `stop`."""

    def __init__(
        self, dependencies: Sequence[Dependency], *, interval: float, timeout: float
    ) -> None:
        self._dependencies = list(dependencies)
        self._interval = interval
        self._timeout = timeout
        self._status = {dependency.name: _Status() for dependency in self._dependencies}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._settled = threading.Event()

    def readiness(self, name: str) -> ReadinessCheck:
        """Returns the readiness check of one dependency (None while it answers)."""
        return lambda: self._reason(name)

    def _reason(self, name: str) -> str | None:
        with self._lock:
            status = self._status[name]
            if not status.checked:
                return "not checked yet"
            if status.down_since is None:
                return None
            down_for = time.monotonic() - status.down_at
            return f"down since {status.down_since:%H:%M:%S} UTC ({down_for:.0f}s): {status.cause}"

    def run(self) -> None:
        """Checks every dependency each interval until stop()."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.check_once()
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def stop(self) -> None:
        """Stops after the round in progress (a hung probe is left to its timeout)."""
        self._stop.set()
        self._settled.set()

    def close(self) -> None:
        """Releases the probes' clients."""
        for dependency in self._dependencies:
            dependency.close()

    def check_once(self) -> None:
        """Probes every dependency at once and records what answered within the timeout."""
        attempts = {dependency.name: self._attempt(dependency) for dependency in self._dependencies}
        self._wait_for(attempts.values())
        if self._stop.is_set():
            return  # shutting down: an unfinished probe is no outage
        for dependency in self._dependencies:
            self._record(dependency.name, attempts[dependency.name].cause(self._timeout))

    def _attempt(self, dependency: Dependency) -> _Attempt:
        status = self._status[dependency.name]
        if status.attempt is None or status.attempt.done.is_set():
            status.attempt = _Attempt(dependency, self._settled)
        return status.attempt

    def _wait_for(self, attempts: Iterable[_Attempt]) -> None:
        deadline = time.monotonic() + self._timeout
        pending = list(attempts)
        while not self._stop.is_set():
            self._settled.clear()
            pending = [attempt for attempt in pending if not attempt.done.is_set()]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return
            self._settled.wait(remaining)

    def _record(self, name: str, cause: str | None) -> None:
        went_down, down_for = self._update(name, cause)
        DEPENDENCY_UP.labels(name).set(0 if cause else 1)
        if went_down:
            DEPENDENCY_OUTAGES.labels(name).inc()
            log.warning(
                "dependency %s is down: %s; work that needs it waits and retries",
                name,
                cause,
                extra={"dependency": name},
            )
        elif down_for is not None:
            log.info(
                "dependency %s is back after %.0fs down",
                name,
                down_for,
                extra={"dependency": name, "down_seconds": round(down_for, 1)},
            )

    def _update(self, name: str, cause: str | None) -> tuple[bool, float | None]:
        """Records a check's outcome.

        Returns:
            Whether it just went down, and how long it was down when it just came back.
        """
        now = time.monotonic()
        with self._lock:
            status = self._status[name]
            status.checked = True
            status.cause = cause
            was_down = status.down_since is not None
            if cause is None:
                status.down_since = None
                return False, (now - status.down_at) if was_down else None
            if not was_down:
                status.down_since, status.down_at = utcnow(), now
            return not was_down, None


def watch_dependencies(service: Service, *dependencies: Dependency) -> DependencyMonitor:
    """Adds a monitor of the dependencies to the service: a component and readiness checks."""
    settings = service.settings
    monitor = DependencyMonitor(
        dependencies,
        interval=settings.dependency_check_interval,
        timeout=settings.dependency_check_timeout,
    )
    service.add("dependency-monitor", monitor.run, monitor.stop)
    for dependency in dependencies:
        service.health.add_check(
            dependency.name, monitor.readiness(dependency.name), required=dependency.required
        )
    service.on_shutdown(monitor.close)
    return monitor

"""Service lifecycle and the health endpoints over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import httpx

from rbr_runtime.health import HealthServer, HealthState
from rbr_runtime.service import Service
from rbr_runtime.settings import CommonSettings
from rbr_testing.waiting import wait_for


def test_health_endpoints_report_liveness_readiness_and_metrics() -> None:
    state = HealthState()
    ready = threading.Event()
    state.add_check("consumer", lambda: None if ready.is_set() else "waiting for assignment")
    server = HealthServer(state, "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["waiting"] == {"consumer": "waiting for assignment"}
        ready.set()
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200
        assert "python_info" in metrics.text
        state.mark_failed("consumer", "DeadLetterCapExceeded")
        assert httpx.get(f"{base}/healthz").status_code == 503
    finally:
        server.stop()


class Worker:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.started = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        self.started.set()
        if self.fail:
            raise RuntimeError("boom")
        self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def run_service(service: Service) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(service.run(own_process=False)), daemon=True
    )
    thread.start()
    return thread, codes


def test_stop_request_stops_every_component_and_exits_zero() -> None:
    service = Service(CommonSettings(http_port=0))
    workers = [Worker(), Worker()]
    for index, worker in enumerate(workers):
        service.add(f"worker-{index}", worker.run, worker.stop)
    flushed = threading.Event()
    service.on_shutdown(flushed.set)
    thread, codes = run_service(service)
    wait_for(lambda: all(w.started.is_set() for w in workers), message="workers started")
    service.request_stop()
    thread.join(10)
    assert codes == [0]
    assert all(w.stopped.is_set() for w in workers)
    assert flushed.is_set()


def test_a_crashed_component_stops_the_service_with_exit_one() -> None:
    service = Service(CommonSettings(http_port=0))
    healthy, crashing = Worker(), Worker(fail=True)
    service.add("healthy", healthy.run, healthy.stop)
    service.add("crashing", crashing.run, crashing.stop)
    thread, codes = run_service(service)
    thread.join(10)
    assert codes == [1]
    assert healthy.stopped.is_set()
    alive, body = service.health.liveness()
    assert not alive
    assert "boom" in body["failed"]["crashing"]


SERVICE_SCRIPT = """
import threading
from rbr_runtime.service import Service
from rbr_runtime.settings import CommonSettings

service = Service(CommonSettings(http_port=0))
stop = threading.Event()


def idle():
    print("ready", flush=True)  # components start after the signal handlers are installed
    stop.wait()


service.add("idle", idle, stop.set)
raise SystemExit(service.run())
"""


def test_a_burst_of_signals_stops_a_service_process_cleanly() -> None:
    """Signal handlers must not take locks: a burst of SIGTERM/SIGINT never deadlocks."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    for n in range(50):
        process.send_signal(signal.SIGTERM if n % 2 else signal.SIGINT)
    assert process.wait(30) == 0

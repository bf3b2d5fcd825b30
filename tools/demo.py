"""`make demo`: the whole registry on this machine with a simulated fleet of rustbuckets.

Starts `rbr stack` (broker, S3, every service) with short intervals, a simulated fleet that
enrolls with a demo key (a few buckets write their logs to their own S3 bucket), and a local
webhook receiver the notifier delivers alerts to. Every 10 seconds it prints what the registry
knows; after a minute it silences one bucket, so an unresponsive alert fires and arrives.
Ctrl-C stops everything. Output of the stack and the fleet goes to var/demo/*.log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

VAR = Path("var/demo").resolve()
ENROLLMENT_KEY = "demo-enrollment-key"
CONTROL_PORT = 8099
BUCKETS = 20
SILENCE_AFTER = 60.0
REPORT_QUERIES = {
    "buckets active": "SELECT COUNT(*) FROM buckets WHERE state = 'active'",
    "seen by the poller": "SELECT COUNT(*) FROM buckets WHERE last_seen IS NOT NULL",
    "log rows": "SELECT COUNT(*) FROM logs",
    "analyses": "SELECT COUNT(*) FROM log_analysis",
}
DEMO_SETTINGS = {
    "RBR_ENROLLMENT_KEYS": ENROLLMENT_KEY,
    "RBR_POLL_INTERVAL": "15",
    "RBR_UNRESPONSIVE_AFTER": "45",
    "RBR_HEALTH_CHECK_INTERVAL": "5",
    "RBR_EXTRACT_INTERVAL": "20",
    "RBR_ANALYSIS_INTERVAL": "60",
    "RBR_ANALYSIS_GRACE": "5",
    "RBR_ANALYSIS_CHECK_INTERVAL": "10",
}
CHANNELS = """\
channels:
  - name: demo-webhook
    type: webhook
    url: http://127.0.0.1:{port}/alerts
    secret: ${{DEMO_WEBHOOK_SECRET}}
    throttle: false
"""


class AlertReceiver:
    """A webhook endpoint on loopback that prints every alert the notifier delivers."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.on_alert(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        """Returns the port it listens on."""
        return int(self.server.server_address[1])

    def on_alert(self, body: bytes) -> None:
        """Prints one delivered alert."""
        try:
            alert = json.loads(body)
        except ValueError:
            return
        self.received.append(alert)
        data = alert.get("alert") or {}
        print(
            f"  >> notifier delivered ({alert.get('kind')}): [{data.get('severity')}] "
            f"{data.get('type')} {data.get('title')}",
            flush=True,
        )


@contextmanager
def process(command: list[str], log_name: str, env: dict[str, str]) -> Iterator[None]:
    """Runs a command in the background with its output in var/demo, stops it with SIGINT."""
    with (VAR / log_name).open("w") as log:
        child = subprocess.Popen(  # noqa: S603 - our own commands
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


def count(query: str) -> int:
    """Runs a COUNT query on the demo's SQLite database (0 while it is not there)."""
    database = VAR / "rbr.db"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.Error:
        return 0


def report(receiver: AlertReceiver) -> str:
    """Returns one line of what the registry knows now."""
    figures = [f"{label} {count(query)}" for label, query in REPORT_QUERIES.items()]
    return " | ".join([*figures, f"alerts delivered {len(receiver.received)}"])


class Stopping:
    """Set by SIGINT/SIGTERM without taking locks (an Event.set() in a handler can deadlock)."""

    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, *_: object) -> None:
        """The signal handler."""
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`; returns whether a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.requested


def wait_for_registrar(stopping: Stopping) -> bool:
    """Waits until the stack's registrar is ready; False if stopped or it never came up."""
    deadline = time.monotonic() + 120
    while not stopping.requested and time.monotonic() < deadline:
        try:
            if httpx.get("http://127.0.0.1:8000/readyz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        stopping.wait(1)
    return False


def silence_one_bucket() -> bool:
    """Tells the simulator to make its first bucket stop answering; False if it cannot yet."""
    control = f"http://127.0.0.1:{CONTROL_PORT}/buckets"
    try:
        name = httpx.get(control, timeout=5).json()["buckets"][0]["name"]
        httpx.post(f"{control}/{name}/mode", json={"mode": "silent"}, timeout=5)
    except (httpx.HTTPError, LookupError, ValueError):
        print("  -- the simulator is not answering yet (see var/demo/simulator.log)", flush=True)
        return False
    print(f"  -- {name} goes silent: expect an unresponsive alert within a minute", flush=True)
    return True


def main() -> int:
    """Runs the demo until Ctrl-C."""
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    receiver = AlertReceiver()
    channels = VAR / "channels.yaml"
    channels.write_text(CHANNELS.format(port=receiver.port))
    env = {
        **os.environ,
        **DEMO_SETTINGS,
        "RBR_NOTIFIER_CHANNELS": str(channels),
        "DEMO_WEBHOOK_SECRET": "demo-webhook-secret",
        # moto accepts any credentials; the simulated buckets in S3 mode write through it.
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    rbr = [sys.executable, "-m", "rbr_cli"]
    stopping = Stopping()
    signal.signal(signal.SIGINT, stopping.on_signal)
    signal.signal(signal.SIGTERM, stopping.on_signal)
    print(f"demo: starting the registry and {BUCKETS} simulated rustbuckets (logs in {VAR})")
    with ExitStack() as running:
        running.enter_context(process([*rbr, "stack", "--var-dir", str(VAR)], "stack.log", env))
        if not wait_for_registrar(stopping):
            print("demo: the stack did not come up; see var/demo/stack.log")
            return 1
        running.enter_context(
            process(
                [
                    *rbr,
                    "simulate",
                    "--count",
                    str(BUCKETS),
                    "--registration-key",
                    ENROLLMENT_KEY,
                    "--ca-file",
                    str(VAR / "simulator-ca.pem"),
                    "--rate",
                    "3",
                    "--hostile-fraction",
                    "0.05",
                    "--s3-fraction",
                    "0.1",
                    "--s3-endpoint-url",
                    "http://127.0.0.1:9000",
                    "--s3-flush-interval",
                    "15",
                    "--control-port",
                    str(CONTROL_PORT),
                    "--seed",
                    "7",
                ],
                "simulator.log",
                env,
            )
        )
        print("demo: registrar on http://127.0.0.1:8000/docs; Ctrl-C stops everything")
        started = time.monotonic()
        silenced = False
        while not stopping.wait(10):
            print(f"  {report(receiver)}", flush=True)
            if not silenced and time.monotonic() - started > SILENCE_AFTER:
                silenced = silence_one_bucket()
        print("demo: stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())

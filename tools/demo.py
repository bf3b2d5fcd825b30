"""`make demo`: the whole registry on this machine with a simulated fleet of rustbuckets.

Starts `rbr stack` (broker, S3, every service) with short intervals, a simulated fleet that
enrolls with a demo key (a few buckets write their logs to their own S3 bucket), and a local
webhook receiver the notifier delivers alerts to. Every 10 seconds it prints what the registry
knows; after a minute it silences one bucket, so an unresponsive alert fires and arrives.
Ctrl-C stops everything. Output of the stack and the fleet goes to var/demo/*.log.

`python tools/demo.py --port-offset 100` (`make demo PORT_OFFSET=100`) runs it beside another
stack: every port moves by 100 and its state goes to var/demo-100.
"""

from __future__ import annotations

import argparse
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

ENROLLMENT_KEY = "demo-enrollment-key"
REGISTRAR_PORT = 8000
S3_PORT = 9000
CONTROL_PORT = 8099
# Settings a shell may carry from another stack (`source var/rbr.env`): the demo's stack and
# fleet must use their own.
OTHER_STACK_SETTINGS = (
    "RBR_KAFKA_BOOTSTRAP",
    "RBR_S3_ENDPOINT_URL",
    "RBR_DATABASE_URL",
    "RBR_REGISTRAR_URL",
    "RBR_BUCKET_CA_FILE",
    "RBR_SIM_CA_FILE",
    "RBR_SECRET_KEY",
    "RBR_OPERATOR_KEY",
    "RBR_ENV_FILE",
)
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


class Ports:
    """The demo's ports, moved by an offset."""

    def __init__(self, offset: int) -> None:
        """Uses the default ports plus `offset`."""
        self.offset = offset
        self.registrar = REGISTRAR_PORT + offset
        self.s3 = S3_PORT + offset
        self.control = CONTROL_PORT + offset


@contextmanager
def process(
    command: list[str], log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a command in the background with its output in log_path, stops it with SIGINT."""
    with log_path.open("w") as log:
        child = subprocess.Popen(  # noqa: S603 - our own commands
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


def count(var: Path, query: str) -> int:
    """Runs a COUNT query on the demo's SQLite database (0 while it is not there)."""
    database = var / "rbr.db"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.Error:
        return 0


def report(var: Path, receiver: AlertReceiver) -> str:
    """Returns one line of what the registry knows now."""
    figures = [f"{label} {count(var, query)}" for label, query in REPORT_QUERIES.items()]
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


def wait_for_registrar(stopping: Stopping, stack: subprocess.Popen[bytes], ports: Ports) -> bool:
    """Waits until our stack's registrar is ready; False if stopped or it never came up.

    Gives up as soon as our stack exits (e.g. its ports are taken by another stack), rather
    than taking another stack's registrar for ours.
    """
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{ports.registrar}/readyz"
    while not stopping.requested and time.monotonic() < deadline and stack.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        stopping.wait(1)
    return False


def silence_one_bucket(ports: Ports) -> bool:
    """Tells the simulator to make its first bucket stop answering; False if it cannot yet."""
    control = f"http://127.0.0.1:{ports.control}/buckets"
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-offset", type=int, default=0, help="add this to every port")
    ports = Ports(parser.parse_args().port_offset)
    var = Path("var/demo" if ports.offset == 0 else f"var/demo-{ports.offset}").resolve()
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    receiver = AlertReceiver()
    channels = var / "channels.yaml"
    channels.write_text(CHANNELS.format(port=receiver.port))
    inherited = {k: v for k, v in os.environ.items() if k not in OTHER_STACK_SETTINGS}
    env = {
        **inherited,
        **DEMO_SETTINGS,
        "RBR_NOTIFIER_CHANNELS": str(channels),
        "RBR_ENV_FILE": str(var / "rbr.env"),  # what `rbr simulate` loads: our stack's
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
    print(f"demo: starting the registry and {BUCKETS} simulated rustbuckets (logs in {var})")
    stack_command = [*rbr, "stack", "--var-dir", str(var), "--port-offset", str(ports.offset)]
    with ExitStack() as running:
        stack = running.enter_context(process(stack_command, var / "stack.log", env))
        if not wait_for_registrar(stopping, stack, ports):
            print(f"demo: the stack did not come up; see {var / 'stack.log'}")
            return 1
        running.enter_context(
            process(
                [
                    *rbr,
                    "simulate",
                    "--count",
                    str(BUCKETS),
                    "--registrar-url",
                    f"http://127.0.0.1:{ports.registrar}",
                    "--registration-key",
                    ENROLLMENT_KEY,
                    "--ca-file",
                    str(var / "simulator-ca.pem"),
                    "--rate",
                    "3",
                    "--hostile-fraction",
                    "0.05",
                    "--s3-fraction",
                    "0.1",
                    "--s3-endpoint-url",
                    f"http://127.0.0.1:{ports.s3}",
                    "--s3-flush-interval",
                    "15",
                    "--control-port",
                    str(ports.control),
                    "--seed",
                    "7",
                ],
                var / "simulator.log",
                env,
            )
        )
        print(
            f"demo: registrar on http://127.0.0.1:{ports.registrar}/docs; Ctrl-C stops everything"
        )
        started = time.monotonic()
        silenced = False
        while not stopping.wait(10):
            print(f"  {report(var, receiver)}", flush=True)
            if not silenced and time.monotonic() - started > SILENCE_AFTER:
                silenced = silence_one_bucket(ports)
        print("demo: stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())

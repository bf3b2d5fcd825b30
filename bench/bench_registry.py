"""Registry benchmarks: durable registrations at the registrar, and one poll cycle.

1. Registrations: the registrar runs as its own process against MariaDB and the embedded
   broker; a load generator (aiohttp, this process) posts new registrations from concurrent
   connections for a fixed time. Every 200 answer is a registration committed in MariaDB with
   its outbox row (group commit); the figures are acknowledged registrations per second and
   the latency percentiles, and the run checks that the rows are really there.
   The same load generator then runs against a bare FastAPI endpoint doing no work, served
   the same way (`bench/bare_endpoint.py`): the registrar is held to half its rate. Both
   servers' CPU time per answer (their whole process, read from /proc) is printed too: it
   depends far less than the rates on how busy the machine is.
2. Bucket directory: 10,000 registrations on `bucket.registered`; the time from a directory's
   `run()` (group join included) until it read every partition to its end.
3. Poll cycle: 10,000 simulated buckets (`rbr_simulator`, four processes, each bucket HTTPS
   on 443 of its own 127.0.0.x address) register with a registrar; one poller replica (this
   process) starts with every bucket due, and the figure is the time from its start until
   every bucket's status was published and recorded; also its CPU time per poll, which
   does not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import func, select

from bench.figures import Figure
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import buckets, poller_state
from rbr_runtime.kafka import BucketDirectory, EventProducer
from rbr_runtime.kafka.directory import read_registrations
from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings, load_settings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered, BucketState, utcnow
from rbr_testing.broker import Broker, free_port
from rbr_testing.mariadb import create_database, drop_database, mysql_url

SECRET = "bench-secret-key"
SERVER_PIDS: dict[str, int] = {}
"""The process serving each base URL this module started (for its CPU time)."""
ENROLLMENT_KEY = "bench-enrollment-key"
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@contextmanager
def database() -> Iterator[str]:
    name = create_database()
    url = mysql_url(name)
    upgrade(url)
    try:
        yield url
    finally:
        drop_database(name)


@contextmanager
def broker() -> Iterator[Broker]:
    running = Broker()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def registrar(url: str, bootstrap: str, **env: str) -> Iterator[str]:
    """Runs the registrar as a process; yields its base URL once ready."""
    port = free_port()
    environment = {
        **os.environ,
        "RBR_DATABASE_URL": url,
        "RBR_KAFKA_BOOTSTRAP": bootstrap,
        "RBR_SECRET_KEY": SECRET,
        "RBR_HTTP_PORT": str(port),
        "RBR_ALLOWED_BUCKET_NETWORKS": "127.0.0.0/8",
        "RBR_ALLOWED_BUCKET_PORTS": "1024-65535",
        "RBR_LOG_LEVEL": "WARNING",
        "RBR_KAFKA_SESSION_TIMEOUT_MS": "2000",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rbr_registrar"], env=environment, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = process.pid
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as client:  # one client: each makes an SSL context
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                if client.get(f"{base}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError("server not ready in 60 s")


def _payload(run: str, worker: int, n: int) -> dict[str, Any]:
    token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(32))
    return {
        "name": f"bench-{run}-{worker}-{n}",
        "ip_address": f"127.1.{worker % 250}.{n % 250 + 1}",
        "operating_system": "linux (x86_64)",
        "token": token,
    }


async def _load(base: str, connections: int, seconds: float, warmup: float) -> dict[str, Any]:
    run = secrets.token_hex(3)
    latencies: list[float] = []
    errors: dict[int, int] = {}
    answered = 0
    started = time.monotonic()
    measure_from = started + warmup
    deadline = measure_from + seconds
    url = f"{base}/api/v1/register_bucket/"
    connector = aiohttp.TCPConnector(limit=connections)

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal answered
        n = 0
        while (now := time.monotonic()) < deadline:
            n += 1
            async with session.post(url, json=_payload(run, index, n)) as answer:
                await answer.read()
                done = time.monotonic()
                answered += 1
                if now >= measure_from:
                    if answer.status == 200:
                        latencies.append(done - now)
                    else:
                        errors[answer.status] = errors.get(answer.status, 0) + 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(connections)))
    return {"latencies": latencies, "errors": errors, "seconds": seconds, "answered": answered}


def _cpu_seconds(pid: int) -> float:
    """Returns the CPU time (user and system, every thread) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


@contextmanager
def bare_endpoint() -> Iterator[str]:
    """Runs `bench.bare_endpoint` (FastAPI doing no work, served like the registrar)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_endpoint", str(port)], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = process.pid
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def _interleaved(
    bases: tuple[str, str], connections: int, seconds: float, rounds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads two servers in turn, `rounds` slices each: both see the machine's same moods."""
    merged: list[dict[str, Any]] = [
        {"latencies": [], "errors": {}, "seconds": 0.0, "answered": 0, "cpu": 0.0} for _ in bases
    ]
    for _ in range(rounds):
        for base, total in zip(bases, merged, strict=True):
            cpu_before = _cpu_seconds(SERVER_PIDS[base])
            result = asyncio.run(_load(base, connections, seconds / rounds, warmup=0.5))
            total["cpu"] += _cpu_seconds(SERVER_PIDS[base]) - cpu_before
            total["answered"] += result["answered"]
            total["latencies"] += result["latencies"]
            total["seconds"] += result["seconds"]
            for status, count in result["errors"].items():
                total["errors"][status] = total["errors"].get(status, 0) + count
    return merged[0], merged[1]


def registration_figures(quick: bool) -> list[Figure]:
    seconds = 4.0 if quick else 15.0
    connections = 32
    with (
        database() as url,
        broker() as running,
        registrar(url, running.bootstrap) as base,
        bare_endpoint() as bare_base,
    ):
        asyncio.run(_load(base, connections, 0.0, warmup=2.0))  # warm up the registrar
        result, bare = _interleaved((base, bare_base), connections, seconds, rounds=5)
        engine = make_engine(url)
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(buckets)).scalar_one()
        engine.dispose()
    latencies = result["latencies"]
    rate = len(latencies) / seconds
    bare_rate = len(bare["latencies"]) / seconds
    ratio = rate / bare_rate if bare_rate else 0.0
    p50 = _percentile(latencies, 0.50) * 1000
    p99 = _percentile(latencies, 0.99) * 1000
    failed = sum(result["errors"].values())
    cpu = result["cpu"] / max(1, result["answered"]) * 1000
    bare_cpu = bare["cpu"] / max(1, bare["answered"]) * 1000
    note = f"{connections} connections, {seconds:.0f}s; {failed} non-200; {stored} rows stored"
    return [
        Figure(
            "registrar: durable registrations per second",
            rate,
            "reg/s",
            ">= 1000",
            rate >= 1000,
            note,
        ),
        Figure(
            "registrar: bare FastAPI endpoint (no work), same server",
            bare_rate,
            "req/s",
            note=f"{connections} connections, {seconds:.0f}s; the same load generator",
        ),
        Figure(
            "registrar: registrations/s vs the bare endpoint",
            ratio,
            "x",
            ">= 0.5",
            ratio >= 0.5,
            "the same run, in 5 alternating slices each, both servers up throughout",
        ),
        Figure(
            "registrar: CPU time per registration (its process, every thread)",
            cpu,
            "ms",
            note="the whole server process (HTTP, group commit, outbox relay), warm-ups included",
        ),
        Figure(
            "registrar: bare endpoint CPU time per request",
            bare_cpu,
            "ms",
            note=f"the same measure; registrar / bare: {cpu / bare_cpu if bare_cpu else 0:.1f}",
        ),
        Figure("registrar: registration latency p50", p50, "ms", note=note),
        Figure("registrar: registration latency p99", p99, "ms", "<= 100", p99 <= 100, note),
    ]


FLEET_PROCESSES = 4
"""Simulator processes serving the poll cycle's buckets: each its own CA, HTTPS on 443."""


def _simulator(count: int, base: str, ca_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rbr_simulator",
            "--count",
            str(count),
            "--registrar-url",
            base,
            "--registration-key",
            ENROLLMENT_KEY,
            "--ca-file",
            str(ca_file),
            "--rate",
            "0",
            "--register-retry",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_registered(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Registered") and "retried" not in line:
            print(f"   simulator: {line.strip()}", flush=True)
        if line.startswith("Running"):
            return
    raise RuntimeError("a simulator stopped before its buckets registered")


@contextmanager
def fleet(count: int, base: str, ca_file: Path) -> Iterator[None]:
    """Runs simulators (a few processes) until their buckets registered.

    Each process serves its share of the buckets, every bucket on port 443 of its own
    loopback address with a certificate of that process's CA; `ca_file` gets the CAs of all.
    """
    shares = [
        count // FLEET_PROCESSES + (i < count % FLEET_PROCESSES) for i in range(FLEET_PROCESSES)
    ]
    shares = [share for share in shares if share]
    ca_files = [ca_file.with_suffix(f".{i}.pem") for i in range(len(shares))]
    processes = [_simulator(share, base, ca) for share, ca in zip(shares, ca_files, strict=True)]
    try:
        for process in processes:
            _wait_registered(process)
        ca_file.write_bytes(b"".join(ca.read_bytes() for ca in ca_files))
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)


def poll_cycle_figures(quick: bool) -> list[Figure]:
    from rbr_poller.main import Poller  # noqa: PLC0415 - the poller's imports only here
    from rbr_poller.settings import PollerSettings  # noqa: PLC0415

    count = 1000 if quick else 10_000
    with (
        tempfile.TemporaryDirectory() as folder,
        database() as url,
        broker() as running,
        registrar(url, running.bootstrap, RBR_ENROLLMENT_KEYS=ENROLLMENT_KEY) as base,
    ):
        ca_file = Path(folder) / "ca.pem"
        with fleet(count, base, ca_file):
            settings = load_settings(
                PollerSettings,
                kafka_bootstrap=running.bootstrap,
                database_url=url,
                secret_key=SECRET,
                allowed_bucket_networks="127.0.0.0/8",
                allowed_bucket_ports="1024-65535",
                bucket_ca_file=str(ca_file),
                http_port=0,
                poll_interval=3600.0,
                poll_jitter=0.0,  # every bucket due at once: one full cycle
                kafka_session_timeout_ms=2000,
                log_level="WARNING",
            )
            poller = Poller(settings)
            started = time.monotonic()
            thread = threading.Thread(
                target=lambda: poller.service.run(own_process=False), daemon=True
            )
            thread.start()
            engine = make_engine(url)
            try:
                ready_at = _wait(
                    lambda: poller.directory.caught_up and len(poller.directory.buckets()) >= count,
                    120,
                )
                cpu_at_ready = time.process_time()
                threads_at_ready = _thread_cpu()
                load = os.getloadavg()[0]
                done_at = _wait(lambda: _recorded(engine) >= count, 600)
                cpu = time.process_time() - cpu_at_ready
                by_thread = _thread_cpu()
                load_after = os.getloadavg()[0]
                succeeded = _succeeded(engine)
            finally:
                poller.service.request_stop()
                thread.join(60)
                engine.dispose()
    cycle = done_at - ready_at
    return [
        Figure(
            f"poller: one poll cycle over {count:,} buckets",
            cycle,
            "s",
            "<= 15",
            cycle <= 15 if count == 10_000 else None,
            f"from the directory caught up to every status published and recorded; "
            f"{succeeded}/{count} reachable; start-up {ready_at - started:.1f}s",
        ),
        Figure("poller: polls per second in the cycle", count / cycle if cycle else 0, "polls/s"),
        Figure(
            "poller: CPU time per poll",
            cpu / count * 1000,
            "ms",
            note=f"the poller's process over the cycle, all threads; machine load {load:.1f} "
            f"on {os.cpu_count()} cores at its start, {load_after:.1f} at its end; by thread: "
            + _per_poll(threads_at_ready, by_thread, count),
        ),
    ]


def _thread_cpu() -> dict[str, float]:
    """Returns the CPU seconds (user and system) of each live thread of this process, by name.

    Threads of the same name are summed (`asyncio_3` and the like are named by their pool).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    seconds: dict[str, float] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        name = names.get(int(task), "other").rstrip("0123456789_") or "other"
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def _per_poll(before: dict[str, float], after: dict[str, float], count: int) -> str:
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    top = sorted(spent.items(), key=lambda item: -item[1])[:5]
    return ", ".join(f"{name} {cpu / count * 1000:.2f} ms" for name, cpu in top if cpu > 0)


def _registrations(count: int) -> list[BucketRegistered]:
    vault = TokenVault.from_setting(SECRET)
    now = utcnow()
    return [
        BucketRegistered(
            bucket_id=str(uuid.uuid4()),
            name=f"bench-directory-{i:06d}",
            state=BucketState.ACTIVE,
            ip_address=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            operating_system="linux (x86_64)",
            token_ciphertext=vault.encrypt(secrets.token_urlsafe(24)),
            registered_at=now,
            updated_at=now,
            version=1,
        )
        for i in range(count)
    ]


def directory_figures(quick: bool) -> list[Figure]:
    """Start-up of the bucket directory (poller, log-extractor) over a fleet's registrations."""
    count = 2000 if quick else 10_000
    with broker() as running:
        settings = load_settings(
            CommonSettings, kafka_bootstrap=running.bootstrap, kafka_session_timeout_ms=2000
        )
        producer = EventProducer(settings, source="/rbr/registrar")
        producer.send_events(
            BUCKET_REGISTERED,
            [
                (record.name, producer.event(BUCKET_REGISTERED, record, subject=record.name))
                for record in _registrations(count)
            ],
        )
        producer.flush()
        directory = BucketDirectory(settings, "bench-directory")
        started = time.monotonic()
        thread = threading.Thread(target=directory.run, daemon=True)
        thread.start()
        try:
            ready_at = _wait(lambda: directory.caught_up and len(directory.buckets()) >= count, 120)
        finally:
            directory.stop()
            thread.join(30)
        read_started = time.monotonic()
        read = len(read_registrations(settings))
        read_seconds = time.monotonic() - read_started
    startup = ready_at - started
    return [
        Figure(
            f"bucket directory: start-up over {count:,} buckets",
            startup,
            "s",
            "<= 5",
            startup <= 5 if count == 10_000 else None,
            "from run() to every partition read to its end (group join included)",
        ),
        Figure(
            f"bucket directory: read_registrations over {count:,} buckets",
            read_seconds,
            "s",
            note=f"the whole topic, no group ({read} registrations)",
        ),
    ]


def _wait(condition: Any, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark condition not reached in time")
        time.sleep(0.2)  # each look is a query in the measured process: not too often
    return time.monotonic()


def _recorded(engine: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(poller_state)
                .where(
                    (poller_state.c.last_success_at.is_not(None))
                    | (poller_state.c.consecutive_failures > 0)
                )
            ).scalar_one()
        )


def _succeeded(engine: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(poller_state)
                .where(poller_state.c.last_success_at.is_not(None))
            ).scalar_one()
        )


def run(quick: bool) -> list[Figure]:
    only = os.environ.get("RBR_BENCH_REGISTRY_ONLY")
    figures: list[Figure] = []
    if only in (None, "", "registrations"):
        figures += registration_figures(quick)
    if only in (None, "", "directory"):
        figures += directory_figures(quick)
    if only in (None, "", "poll"):
        figures += poll_cycle_figures(quick)
    return figures

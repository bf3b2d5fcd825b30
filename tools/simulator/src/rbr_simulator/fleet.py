"""A fleet of simulated rustbuckets served from one process.

The fleet runs its own asyncio loop in a background thread, so synchronous code (pytest
tests, the CLI) drives it through plain method calls::

    with Fleet(5, bind="ports") as fleet:
        fleet.register("http://127.0.0.1:8000")
        fleet.emit(fleet.names[0], 10)
        ...

All bucket state lives on the fleet's loop; the public methods run their work there and wait
for the result, so they are safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from rbr_simulator import control, net, s3
from rbr_simulator.attackers import public_ips
from rbr_simulator.bucket import (
    DEFAULT_OPERATING_SYSTEM,
    BucketInfo,
    BucketState,
    BucketStats,
    Mode,
    RequestRecord,
    S3Target,
    random_name,
    random_token,
)
from rbr_simulator.generator import LogGenerator
from rbr_simulator.logstore import BulkLog, Entry
from rbr_simulator.metrics import MetricsWalk
from rbr_simulator.net import BindMode, Listener
from rbr_simulator.records import LogMix, LogRecord
from rbr_simulator.registration import RegistrationResult, register_all
from rbr_simulator.s3 import S3Settings
from rbr_simulator.server import BucketServer
from rbr_simulator.tls import FleetTLS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")
GENERATION_TICK_SECONDS = 0.25
DEFAULT_OVERSIZED_BYTES = 8 * 1024 * 1024
ATTACKER_POOL_SIZE = 1_000


class Fleet:
    """N simulated rustbuckets, each an HTTPS server on its own address.

    Attributes:
        count: How many buckets the fleet runs.
        startup_seconds: How long `start()` took (None before it ran).
    """

    def __init__(
        self,
        count: int = 1,
        *,
        bind: BindMode | str = BindMode.AUTO,
        ca_file: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        mix: LogMix | None = None,
        rate: float = 0.0,
        s3_fraction: float = 0.0,
        s3_settings: S3Settings | None = None,
        operating_system: str = DEFAULT_OPERATING_SYSTEM,
        log_start: datetime | None = None,
        oversized_bytes: int = DEFAULT_OVERSIZED_BYTES,
        max_retained: int = 200_000,
        history_limit: int = 100_000,
        shutdown_timeout: float = 2.0,
    ) -> None:
        """Configures a fleet; `start()` (or `with`) brings it up.

        Args:
            count: Number of buckets.
            bind: "auto" (port 443 on 127.0.0.x when possible, else ephemeral ports) or
                "ports" (ephemeral ports on 127.0.0.1).
            ca_file: Where to write the fleet's CA certificate; a temporary file (removed at
                stop) when None.
            seed: Seed of the log content and of which buckets use S3; random when None.
                Names and tokens are always random (several fleets may share a registry).
            mix: Formats and hostile content of the generated logs.
            rate: Records per second each bucket writes in the background (0: only `emit`).
            s3_fraction: Share of buckets that write their logs to S3 instead of serving them.
            s3_settings: S3 endpoint, bucket and prefix for those buckets.
            operating_system: What the buckets report as their operating system.
            log_start: Start of a simulated log clock (deterministic timestamps); the wall
                clock when None.
            oversized_bytes: Body size in OVERSIZED mode.
            max_retained: Log entries each bucket keeps at most (see `LogStore`).
            history_limit: Requests and served records each bucket remembers.
            shutdown_timeout: Seconds `stop()` waits for requests in flight.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if rate < 0:
            raise ValueError("rate must be >= 0")
        if not 0.0 <= s3_fraction <= 1.0:
            raise ValueError("s3_fraction must be between 0 and 1")
        self.count = count
        self.startup_seconds: float | None = None
        self._bind = BindMode(bind)
        self._requested_ca_file = Path(ca_file) if ca_file is not None else None
        self._rng = random.Random(seed)
        self._mix = mix or LogMix()
        self._rate = rate
        self._s3_fraction = s3_fraction
        self._s3_settings = s3_settings or S3Settings()
        self._operating_system = operating_system
        self._log_start = log_start
        self._max_retained = max_retained
        self._history_limit = history_limit
        self._shutdown_timeout = shutdown_timeout
        self._server = BucketServer(oversized_bytes=oversized_bytes)
        self._tls: FleetTLS | None = None
        self._ca_file: Path | None = None
        self._temp_dir: Path | None = None
        self._infos: list[BucketInfo] = []
        self._states: dict[str, BucketState] = {}
        self._seeds: dict[str, int] = {}
        self._contexts_by_ip: dict[str, ssl.SSLContext] = {}
        self._attacker_ips: list[str] = []
        self._sites: dict[str, web.SockSite] = {}
        self._runner: web.AppRunner | None = None
        self._control_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._s3_client: S3Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Returns True between `start()` and `stop()`."""
        return self._loop is not None

    def start(self) -> Self:
        """Binds every bucket's address, starts serving and writes the CA file.

        Returns:
            The fleet itself.

        Raises:
            RuntimeError: If the fleet was started before (a fleet is not restartable).
            OSError: If addresses cannot be bound or the CA file cannot be written.
        """
        if self._infos:
            raise RuntimeError("a fleet can only be started once")
        started = time.perf_counter()
        _raise_open_file_limit(self.count)
        listeners = net.allocate(self.count, self._bind)
        try:
            self._prepare(listeners)
            self._start_loop()
            self._run(self._serve(listeners), timeout=None)
        except BaseException:
            self._stop_loop()
            for listener in listeners:
                listener.sock.close()
            self._remove_temp_dir()
            raise
        self.startup_seconds = time.perf_counter() - started
        logger.info(
            "fleet of %d buckets started in %.2fs on %s",
            self.count,
            self.startup_seconds,
            "port 443" if self.uses_port_443 else "ephemeral ports",
        )
        return self

    def stop(self) -> None:
        """Stops serving, releases hanging requests, closes every socket and the loop thread.

        Safe to call more than once.
        """
        self._stop_loop()
        self._remove_temp_dir()

    def _prepare(self, listeners: Sequence[Listener]) -> None:
        self._tls = FleetTLS()
        self._ca_file = self._tls.write_ca(self._ca_path())
        self._contexts_by_ip = self._tls.server_contexts([item.ip for item in listeners])
        s3_indexes = set(self._rng.sample(range(self.count), round(self.count * self._s3_fraction)))
        self._attacker_ips = public_ips(self._rng, ATTACKER_POOL_SIZE)
        names = _unique_names(self.count)
        for index, (listener, name) in enumerate(zip(listeners, names, strict=True)):
            info = BucketInfo(
                index=index,
                name=name,
                token=random_token(),
                ip=listener.ip,
                port=listener.port,
                operating_system=self._operating_system,
                s3=self._s3_target(name) if index in s3_indexes else None,
            )
            self._add_bucket(info, self._rng.getrandbits(63))
        self._prepare_s3()

    def _ca_path(self) -> Path:
        if self._requested_ca_file is not None:
            return self._requested_ca_file
        self._temp_dir = Path(tempfile.mkdtemp(prefix="rbr-sim-"))
        return self._temp_dir / "fleet-ca.pem"

    def _s3_target(self, name: str) -> S3Target:
        settings = self._s3_settings
        return S3Target(
            bucket_name=settings.bucket_for(name), region=settings.region, prefix=settings.prefix
        )

    def _add_bucket(self, info: BucketInfo, seed: int) -> None:
        clock = None if self._log_start else _utc_now
        generator = LogGenerator(
            seed,
            mix=self._mix,
            sensor=info.name,
            honeypot_ip=info.ip,
            start=self._log_start,
            clock=clock,
            attacker_ips=self._attacker_ips,
        )
        # Metrics draw from their own generator so polling never changes the log content.
        metrics = MetricsWalk(random.Random(seed + 1))
        state = BucketState(
            info,
            generator,
            metrics,
            max_retained=self._max_retained,
            history_limit=self._history_limit,
        )
        self._infos.append(info)
        self._states[info.name] = state
        self._seeds[info.name] = seed
        self._server.add(state)

    def _prepare_s3(self) -> None:
        s3_buckets = {info.s3.bucket_name for info in self._infos if info.s3 is not None}
        if not s3_buckets:
            return
        self._s3_client = s3.make_client(self._s3_settings)
        for bucket in sorted(s3_buckets):
            s3.ensure_bucket(self._s3_client, bucket, self._s3_settings.region)

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="rbr-sim-fleet", daemon=True)
        self._loop = loop
        self._thread.start()
        ready.wait()

    async def _serve(self, listeners: Sequence[Listener]) -> None:
        self._runner = web.AppRunner(
            self._server.build_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await self._runner.setup()
        for info, listener in zip(self._infos, listeners, strict=True):
            await self._open_site(info, listener.sock)
        if self._rate > 0:
            self._tasks.append(asyncio.create_task(self._generate_forever()))
        interval = self._s3_settings.flush_interval
        if interval and self._s3_client is not None:
            self._tasks.append(asyncio.create_task(self._flush_forever(interval)))

    async def _open_site(self, info: BucketInfo, sock: socket.socket) -> None:
        assert self._runner is not None
        site = web.SockSite(self._runner, sock, ssl_context=self._contexts_by_ip[info.ip])
        await site.start()
        self._sites[info.name] = site

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            self._shutdown_logging_errors()
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        self._loop = None
        self._thread = None

    def _shutdown_logging_errors(self) -> None:
        try:
            self._run(self._shutdown(), timeout=self._shutdown_timeout + 30)
        except Exception:
            # Stopping must go on (close the loop and sockets) even if a part failed.
            logger.exception("fleet shutdown failed")

    async def _shutdown(self) -> None:
        for state in self._states.values():
            state.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sites.clear()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # Running work on the fleet's loop.

    def _run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = 60.0) -> T:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the fleet is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def _call(self, function: Callable[[], T]) -> T:
        async def call() -> T:
            return function()

        return self._run(call())

    def _state(self, name: str) -> BucketState:
        state = self._states.get(name)
        if state is None:
            raise KeyError(f"no bucket named {name!r} in this fleet")
        return state

    # Identity.

    @property
    def buckets(self) -> list[BucketInfo]:
        """Returns every bucket's identity, in fleet order."""
        return list(self._infos)

    @property
    def names(self) -> list[str]:
        """Returns every bucket's name, in fleet order."""
        return [info.name for info in self._infos]

    def bucket(self, name: str) -> BucketInfo:
        """Returns the identity of the bucket called `name`."""
        return self._state(name).info

    @property
    def ca_file(self) -> Path:
        """Returns the path of the CA certificate the registry must trust."""
        if self._ca_file is None:
            raise RuntimeError("the fleet has not been started")
        return self._ca_file

    @property
    def uses_port_443(self) -> bool:
        """Returns True when the buckets listen on port 443 of their own loopback address."""
        return bool(self._infos) and all(info.port == net.HTTPS_PORT for info in self._infos)

    # Registration.

    def register(
        self,
        registrar_url: str,
        registration_key: str | None = None,
        *,
        names: Sequence[str] | None = None,
        verify: bool | ssl.SSLContext = True,
        timeout: float = 10.0,
        concurrency: int = 32,
    ) -> list[RegistrationResult]:
        """Registers the buckets with a registry, like the real honeypot does at start-up.

        Args:
            registrar_url: The registry's base URL (the API path is added) or the full URL
                of its registration endpoint (a trailing slash is added, like the honeypot).
            registration_key: Enrolment key, sent in the body and as `Authorization: Bearer`.
            names: Register only these buckets; all when None.
            verify: TLS verification for an https registry.
            timeout: Seconds per registration request.
            concurrency: Registrations in flight at once.

        Returns:
            One result per bucket, in the order registered.
        """
        infos = self.buckets if names is None else [self.bucket(name) for name in names]
        return self._run(
            register_all(
                infos,
                registrar_url,
                registration_key=registration_key,
                verify=verify,
                request_timeout=timeout,
                concurrency=concurrency,
            ),
            timeout=None,
        )

    # Logs.

    def emit(self, name: str, count: int) -> list[LogRecord]:
        """Writes `count` new records to a bucket's log and returns them (with sequence numbers)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        state = self._state(name)
        return self._call(lambda: state.emit(count))

    def emit_all(self, count: int) -> dict[str, list[LogRecord]]:
        """Writes `count` new records to every bucket's log; returns them by bucket name."""
        if count < 0:
            raise ValueError("count must be >= 0")
        return self._call(lambda: {name: st.emit(count) for name, st in self._states.items()})

    def add_bulk_log(self, name: str, size_bytes: int) -> BulkLog:
        """Adds a log entry of about `size_bytes` that is generated while it is streamed.

        The entry takes one sequence number; streaming it again (a retry) yields the same
        bytes. Not available for buckets in S3 mode.

        Raises:
            ValueError: If the bucket is in S3 mode or the size is not positive.
        """
        state = self._state(name)
        if state.info.s3 is not None:
            raise ValueError(f"{name} writes its logs to S3; bulk logs are served over HTTP")
        if size_bytes < 1:
            raise ValueError("size_bytes must be positive")
        seed = self._seeds[name]

        def add() -> BulkLog:
            return state.add_bulk(size_bytes, seed=(seed * 1_000_003 + state.store.last_seq))

        return self._call(add)

    def served(self, name: str) -> list[LogRecord]:
        """Returns the records the bucket has handed out (over HTTP or to S3), oldest first."""
        state = self._state(name)
        return self._call(lambda: list(state.served))

    def pending(self, name: str) -> list[Entry]:
        """Returns the entries the bucket has not handed out yet."""
        state = self._state(name)
        return self._call(state.store.pending)

    def flush_to_s3(self, name: str) -> list[str]:
        """Writes the bucket's pending records to its S3 bucket now; returns the keys written.

        Raises:
            ValueError: If the bucket is not in S3 mode.
            botocore.exceptions.BotoCoreError: If a write fails (earlier objects stay written).
            botocore.exceptions.ClientError: Likewise.
        """
        state = self._state(name)
        if state.info.s3 is None:
            raise ValueError(f"{name} serves its logs over HTTP, not S3")
        return self._run(self._flush(state), timeout=None)

    def s3_keys(self, name: str) -> list[str]:
        """Returns the keys of the S3 objects the bucket wrote, in write order."""
        state = self._state(name)
        return self._call(lambda: list(state.s3_keys))

    async def _flush(self, state: BucketState) -> list[str]:
        target, client = state.info.s3, self._s3_client
        assert target is not None
        assert client is not None
        async with state.s3_lock:
            pending = [entry for entry in state.store.pending() if isinstance(entry, LogRecord)]
            objects = s3.plan_objects(
                pending, prefix=target.prefix, name=state.name, hour_counts=state.s3_hour_counts
            )
            written = []
            loop = asyncio.get_running_loop()
            for s3_object in objects:
                await loop.run_in_executor(
                    None, s3.put_object, client, target.bucket_name, s3_object
                )
                # Marked one object at a time, so a failed write leaves only the rest pending.
                state.store.mark_delivered(s3_object.last_seq)
                state.record_served(s3_object.records)
                state.s3_keys.append(s3_object.key)
                written.append(s3_object.key)
            return written

    async def _flush_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for state in self._states.values():
                if state.info.s3 is not None:
                    await self._flush_logging_errors(state)

    async def _flush_logging_errors(self, state: BucketState) -> None:
        try:
            await self._flush(state)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("S3 flush of %s failed, will retry: %s", state.name, exc)

    async def _generate_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(GENERATION_TICK_SECONDS)
            now = loop.time()
            elapsed, last = now - last, now
            for state in self._states.values():
                state.owed_records += self._rate * elapsed
                due = int(state.owed_records)
                if due:
                    state.owed_records -= due
                    state.emit(due)

    # Failure modes.

    def set_mode(self, name: str, mode: Mode | str) -> None:
        """Switches a bucket's failure mode (see `Mode`).

        Raises:
            OSError: If a bucket leaving SILENT mode cannot bind its address again.
        """
        state = self._state(name)
        self._run(self._apply_mode(state, Mode(mode)))

    def mode(self, name: str) -> Mode:
        """Returns a bucket's current mode."""
        state = self._state(name)
        return self._call(lambda: state.mode)

    async def _apply_mode(self, state: BucketState, mode: Mode) -> None:
        previous = state.mode
        if previous is Mode.SILENT and mode is not Mode.SILENT:
            await self._open_site(state.info, net.listen_on(state.info.ip, state.info.port))
        state.set_mode(mode)
        if mode is Mode.SILENT and previous is not Mode.SILENT:
            site = self._sites.pop(state.name)
            await site.stop()

    # Observations.

    def requests(self, name: str, path: str | None = None) -> list[RequestRecord]:
        """Returns the requests a bucket received (optionally for one path), oldest first."""
        state = self._state(name)
        return self._call(
            lambda: [item for item in state.requests if path is None or item.path == path]
        )

    def request_counts(self, path: str | None = None) -> dict[str, int]:
        """Returns how many requests each bucket received (for one path, or all paths)."""

        def count(state: BucketState) -> int:
            if path is None:
                return sum(state.request_counts.values())
            return state.request_counts[path]

        return self._call(lambda: {name: count(state) for name, state in self._states.items()})

    def reset_requests(self) -> None:
        """Forgets the requests recorded so far and their counters (e.g. between poll cycles)."""

        def reset() -> None:
            for state in self._states.values():
                state.requests.clear()
                state.request_counts.clear()

        self._call(reset)

    def stats(self, name: str) -> BucketStats:
        """Returns a bucket's counters."""
        state = self._state(name)
        return self._call(state.stats)

    def all_stats(self) -> list[BucketStats]:
        """Returns every bucket's counters, in fleet order."""
        return self._call(lambda: [state.stats() for state in self._states.values()])

    # Control API.

    def serve_control(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serves the plain-HTTP control API (see `rbr_simulator.control`); returns its port."""
        return self._run(self._serve_control(host, port))

    async def _serve_control(self, host: str, port: int) -> int:
        if self._control_runner is not None:
            raise RuntimeError("the control API is already being served")
        runner = web.AppRunner(control.build_app(self), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = net.listen_on(host, port)
        await web.SockSite(runner, sock).start()
        self._control_runner = runner
        return int(sock.getsockname()[1])


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _unique_names(count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add(random_name())
    return list(names)


def _raise_open_file_limit(count: int) -> None:
    # Each bucket holds a listening socket, and a poller in the same process adds a client
    # and a server socket per bucket; a default soft limit of 1024 is too low for 2,000.
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * count + 512
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))

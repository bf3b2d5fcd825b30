"""One simulated bucket: its identity, failure mode, log, metrics and what it has seen.

`BucketInfo` is the public, immutable identity. `BucketState` is the mutable state; it lives
on the fleet's event loop and is only touched from there.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from rbr_simulator.generator import LogGenerator
from rbr_simulator.logstore import BulkLog, Entry, LogStore
from rbr_simulator.metrics import MetricsWalk
from rbr_simulator.records import LogRecord

_ALPHANUMERIC = string.ascii_letters + string.digits
NAME_PREFIX = "rustbucket-"
DEFAULT_OPERATING_SYSTEM = "linux (x86_64)"


class Mode(StrEnum):
    """How a bucket answers; switchable at runtime."""

    NORMAL = "normal"
    """Answers correctly."""
    SILENT = "silent"
    """Stops listening (connection refused); kept-alive connections are dropped."""
    ERROR = "error"
    """HTTP 500."""
    GARBAGE = "garbage"
    """HTTP 200 with a body that is not JSON (HTML, truncated JSON, binary junk in turn)."""
    OVERSIZED = "oversized"
    """HTTP 200 with a huge (valid JSON for /update_bucket) body."""
    WRONG_SHAPE = "wrong_shape"
    """HTTP 200 with valid JSON of the wrong shape."""
    BAD_TOKEN = "bad_token"  # noqa: S105 - a mode name, not a credential
    """Rejects every token with 401, as if the bucket's token had changed."""
    HANG = "hang"
    """Accepts the request and never answers until the mode changes or the fleet stops."""


def random_name() -> str:
    """Returns a name like the real honeypot's: `rustbucket-` and 8 random alphanumerics."""
    return NAME_PREFIX + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(8))


def random_token() -> str:
    """Returns a token like the real honeypot's: 32 random alphanumerics."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))


def mask(secret: str) -> str:
    """Returns a printable stand-in for a secret: its first 4 characters and its length."""
    return f"{secret[:4]}…({len(secret)} chars)"


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where a bucket in S3 mode writes its logs.

    Attributes:
        bucket_name: The S3 bucket.
        region: Its region.
        prefix: Key prefix; objects go to `{prefix}{name}/rustbucket.log.YYYY-MM-DD-HH`.
    """

    bucket_name: str
    region: str
    prefix: str


@dataclass(frozen=True, slots=True)
class BucketInfo:
    """The identity of one simulated bucket.

    Attributes:
        index: Position in the fleet.
        name: Its unique name, `rustbucket-XXXXXXXX`.
        token: The token it registered with (never printed: see `masked_token`).
        ip: The address it listens on.
        port: The port it listens on (443 unless the fleet fell back to ephemeral ports).
        operating_system: What it reports as its operating system.
        s3: Where it writes its logs, when it is in S3 mode.
    """

    index: int
    name: str
    token: str = field(repr=False)
    ip: str
    port: int
    operating_system: str = DEFAULT_OPERATING_SYSTEM
    s3: S3Target | None = None

    @property
    def base_url(self) -> str:
        """Returns `https://ip` on port 443, else `https://ip:port`."""
        return f"https://{self.ip}" if self.port == 443 else f"https://{self.ip}:{self.port}"

    @property
    def masked_token(self) -> str:
        """Returns the token in a form safe to print."""
        return mask(self.token)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request a bucket received (recorded on arrival).

    Attributes:
        path: The request path, e.g. `/update_bucket`.
        method: The HTTP method.
        query: The query string (never holds secrets).
        at: Arrival time (UTC).
        monotonic: Arrival time on the monotonic clock, for measuring intervals.
        mode: The bucket's mode when the request arrived.
        authorized: Whether it carried the bucket's token.
    """

    path: str
    method: str
    query: str
    at: datetime
    monotonic: float
    mode: Mode
    authorized: bool


@dataclass(frozen=True, slots=True)
class BucketStats:
    """Counters of one bucket.

    Attributes:
        name: The bucket.
        mode: Its current mode.
        requests: Requests received, by path.
        records_generated: Log records written.
        records_served: Distinct records handed out (over HTTP or to S3).
        bytes_served: Log bytes sent in `/extract_logs` bodies (retries included).
        records_pending: Records written but not handed out yet.
        records_dropped: Records dropped by retention before anyone collected them.
        s3_objects: S3 objects written.
    """

    name: str
    mode: Mode
    requests: dict[str, int]
    records_generated: int
    records_served: int
    bytes_served: int
    records_pending: int
    records_dropped: int
    s3_objects: int


class BucketState:
    """The mutable state of one bucket; owned by the fleet's event loop."""

    def __init__(
        self,
        info: BucketInfo,
        generator: LogGenerator,
        metrics: MetricsWalk,
        *,
        max_retained: int,
        history_limit: int,
    ) -> None:
        """Creates the state of a bucket in NORMAL mode with an empty log.

        Args:
            info: The bucket's identity.
            generator: Produces its log records.
            metrics: Produces its self-reported metrics.
            max_retained: See `LogStore`.
            history_limit: How many requests and served records to remember.
        """
        self.info = info
        self.generator = generator
        self.metrics = metrics
        self.store = LogStore(max_retained=max_retained)
        self.mode = Mode.NORMAL
        self.closing = False
        self.requests: deque[RequestRecord] = deque(maxlen=history_limit)
        self.request_counts: Counter[str] = Counter()
        self.served: deque[LogRecord] = deque(maxlen=history_limit)
        self.records_generated = 0
        self.records_served = 0
        self.bytes_served = 0
        self.logged_bytes = 0
        self.served_through = 0
        self.response_counter = 0
        self.s3_keys: list[str] = []
        self.s3_hour_counts: Counter[str] = Counter()
        self.s3_lock = asyncio.Lock()
        self.owed_records = 0.0
        self._mode_event = asyncio.Event()

    @property
    def name(self) -> str:
        """Returns the bucket's name."""
        return self.info.name

    def set_mode(self, mode: Mode) -> None:
        """Switches the mode and wakes requests waiting in HANG mode."""
        self.mode = mode
        self._wake()

    def close(self) -> None:
        """Marks the bucket as shutting down and releases every waiting request."""
        self.closing = True
        self._wake()

    async def wait_while_hanging(self) -> None:
        """Returns once the bucket is no longer in HANG mode or is shutting down."""
        while self.mode is Mode.HANG and not self.closing:
            await self._mode_event.wait()

    def _wake(self) -> None:
        self._mode_event.set()
        self._mode_event = asyncio.Event()

    def record_request(self, path: str, method: str, query: str, *, authorized: bool) -> None:
        """Remembers a request that just arrived."""
        self.request_counts[path] += 1
        self.requests.append(
            RequestRecord(
                path=path,
                method=method,
                query=query,
                at=datetime.now(UTC),
                monotonic=asyncio.get_running_loop().time(),
                mode=self.mode,
                authorized=authorized,
            )
        )

    def emit(self, count: int) -> list[LogRecord]:
        """Generates and stores `count` records; returns them with their sequence numbers."""
        records = self.store.append(self.generator.generate(count))
        self.records_generated += len(records)
        self.logged_bytes += sum(len(record.data) for record in records)
        return records

    def add_bulk(self, size_bytes: int, seed: int) -> BulkLog:
        """Stores a bulk log entry of about `size_bytes`."""
        bulk = self.store.append_bulk(
            size_bytes,
            seed=seed,
            mix=self.generator.mix,
            sensor=self.info.name,
            honeypot_ip=self.info.ip,
            start=datetime.now(UTC),
        )
        self.logged_bytes += size_bytes
        return bulk

    def record_served(self, entries: Iterable[Entry]) -> None:
        """Counts the entries handed out for the first time."""
        for entry in entries:
            if entry.seq <= self.served_through:
                continue
            self.served_through = entry.seq
            self.records_served += 1
            if isinstance(entry, LogRecord):
                self.served.append(entry)

    def stats(self) -> BucketStats:
        """Returns the bucket's counters."""
        return BucketStats(
            name=self.name,
            mode=self.mode,
            requests=dict(self.request_counts),
            records_generated=self.records_generated,
            records_served=self.records_served,
            bytes_served=self.bytes_served,
            records_pending=len(self.store.pending()),
            records_dropped=self.store.dropped,
            s3_objects=len(self.s3_keys),
        )

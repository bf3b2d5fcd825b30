"""Fixtures of the log-extractor's tests: settings for the real broker, MariaDB, S3, fleet."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.main import make_extractor
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.store import ExtractState
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BucketRegistered, BucketState, utcnow
from rbr_testing.broker import Broker
from rbr_testing.buckets import TEST_SECRET_KEY
from rbr_testing.registry import SIMULATED_BUCKET_PORTS
from rbr_testing.s3 import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SettingsFactory = Callable[..., ExtractorSettings]


@pytest.fixture
def raw_bucket(moto_s3: MotoS3) -> str:
    return moto_s3.create_bucket("raw")


@pytest.fixture
def settings_factory(
    broker: Broker, mysql_database_url: str, moto_s3: MotoS3, raw_bucket: str
) -> SettingsFactory:
    """Returns extractor settings for this test's broker, database and bucket."""

    def make(**overrides: object) -> ExtractorSettings:
        values: dict[str, object] = {
            "kafka_bootstrap": broker.bootstrap,
            "kafka_session_timeout_ms": 2000,
            "database_url": mysql_database_url,
            "s3_endpoint_url": moto_s3.endpoint_url,
            "s3_bucket": raw_bucket,
            "secret_key": TEST_SECRET_KEY,
            "allowed_bucket_networks": "127.0.0.0/8",
            "allowed_bucket_ports": SIMULATED_BUCKET_PORTS,
            "http_port": 0,
            "extract_tick": 0.2,
            "extract_part_bytes": 5 * 1024 * 1024,
        }
        values.update(overrides)
        return ExtractorSettings(**values)  # type: ignore[arg-type]

    return make


@dataclass
class Harness:
    """An extractor wired to the test's broker, database and S3, without the scheduler."""

    settings: ExtractorSettings
    extractor: Extractor
    state: ExtractState
    s3: S3Client

    def keys(self, prefix: str = "raw/") -> list[str]:
        """Returns the keys under prefix in the registry's bucket."""
        listing = self.s3.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        """Returns an object's content and metadata."""
        response = self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)
        return response["Body"].read(), response["Metadata"]


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def harness_factory(
    settings_factory: SettingsFactory, mysql_engine: Engine
) -> Iterator[HarnessFactory]:
    made: list[Harness] = []

    def make(**overrides: object) -> Harness:
        settings = settings_factory(**overrides)
        state = ExtractState(mysql_engine, "test-worker")
        extractor, s3 = make_extractor(settings, state)
        harness = Harness(settings, extractor, state, s3)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.extractor.close()


# -- buckets played by real HTTP servers ------------------------------------------------------

# The longest a trickling answer goes on (it normally ends when the extractor gives up).
TRICKLE_LIMIT_SECONDS = 300


@dataclass
class Answer:
    """How a played bucket answers one /extract_logs request.

    Attributes:
        pause_at: after this many bytes of the body (0: right after the headers), the
            answer waits until `resume` is set; `paused` is set when it gets there.
        trickle: after the records, one byte a second until the client gives up.
    """

    pause_at: int | None = None
    trickle: bool = False
    resume: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)


class PlayedBucket:
    """One bucket's `/extract_logs`, played by a real HTTP server on loopback (plain HTTP).

    Serves its records after `?since=<n>` with `X-Log-Cursor` (as the simulator does), whole
    and at once unless an `Answer` says otherwise (`enqueue_answer`, one per request, or
    `always`). Default answers never pause (their `resume` is not reachable by the test).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.token = uuid.uuid4().hex
        self.records: list[bytes] = []
        self.requests: list[str | None] = []  # the `since` of each request, in order
        self._answers: list[Answer] = []
        self._enqueued: list[Answer] = []
        self._default: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _bucket_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"bucket-{name}", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """Returns the port the bucket listens on."""
        return int(self._server.server_address[1])

    def add_records(self, count: int, size: int = 64) -> bytes:
        """Appends count records of size bytes (newline included); returns them."""
        with self._lock:
            first = len(self.records)
            made = [
                f"2025-10-28T19:05:41Z INFO record {first + i:08d} ".encode().ljust(size - 1, b"x")
                + b"\n"
                for i in range(count)
            ]
            self.records.extend(made)
        return b"".join(made)

    def enqueue_answer(self, **options: Any) -> Answer:
        """Queues how the next request not answered yet is answered; returns the answer."""
        answer = Answer(**options)
        with self._lock:
            self._answers.append(answer)
            self._enqueued.append(answer)
        return answer

    def always(self, **options: Any) -> None:
        """Sets how requests are answered when no queued answer is left."""
        with self._lock:
            self._default = options

    def registration(self) -> BucketRegistered:
        """Returns the bucket's bucket.registered record."""
        now = utcnow()
        return BucketRegistered(
            bucket_id=str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
            name=self.name,
            state=BucketState.ACTIVE,
            ip_address="127.0.0.1",
            port=self.port,
            token_ciphertext=TokenVault.from_setting(TEST_SECRET_KEY).encrypt(self.token),
            registered_at=now,
            updated_at=now,
            version=1,
        )

    def stop(self) -> None:
        """Ends every answer in progress and closes the server."""
        self.closing.set()
        with self._lock:
            for answer in self._enqueued:
                answer.resume.set()
        self._server.shutdown()
        self._server.server_close()

    def next_answer(self, since: str | None) -> tuple[Answer, bytes, int]:
        """Records a request; returns its answer, body and cursor."""
        with self._lock:
            self.requests.append(since)
            answer = self._answers.pop(0) if self._answers else Answer(**self._default)
            start = int(since) if since is not None else 0
            return answer, b"".join(self.records[start:]), len(self.records)


def _bucket_handler(bucket: PlayedBucket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if self.headers.get("Authorization") != f"Token {bucket.token}":
                self.send_error(401)
                return
            since = parse_qs(parts.query).get("since", [None])[0]
            answer, body, cursor = bucket.next_answer(since)
            self.send_response(200)
            self.send_header("X-Log-Cursor", str(cursor))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):  # the extractor gave up and hung up
                self._answer(answer, body)

        def _answer(self, answer: Answer, body: bytes) -> None:
            if answer.pause_at is not None:
                self._chunk(body[: answer.pause_at])
                answer.paused.set()
                answer.resume.wait(TRICKLE_LIMIT_SECONDS)
                body = body[answer.pause_at :]
            self._chunk(body)
            for _ in range(TRICKLE_LIMIT_SECONDS if answer.trickle else 0):
                if bucket.closing.wait(1.0):  # the bucket's pace: one byte a second
                    return
                self._chunk(b"x")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            """Keeps test output quiet."""

    return Handler


PlayedBuckets = Callable[[str], PlayedBucket]


@pytest.fixture
def played_buckets() -> Iterator[PlayedBuckets]:
    """Yields a function that starts played buckets by name; all stopped after the test."""
    started: list[PlayedBucket] = []

    def start(name: str) -> PlayedBucket:
        bucket = PlayedBucket(name)
        started.append(bucket)
        return bucket

    yield start
    for bucket in started:
        bucket.stop()

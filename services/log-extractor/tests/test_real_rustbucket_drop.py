"""End to end: a stand-in for the real rustbucket, delivering its logs to an S3 drop location.

The stand-in behaves as jamesbinford/rustbucket does: at every start it generates a new
instance name and a new registered name and token, logs both (`Instance name: ...`,
`Generated instance name: ...`), registers once and serves nothing the registry could call;
it writes daily text files (`rustbucket.log.YYYY-MM-DD`, real format) and its uploader
uploads them again and again to `s3://BUCKET/PREFIX/<instance name>/` (writing its "Starting
log upload check" line into the current file first). After a restart the new instance
uploads the earlier days' files again under its new folder, grown or not.

It registers with an address the test allows and the port of a listener that only counts
connections (it listens on nothing the registry should call): any poll or pull would show.

Real parts: registrar, log-extractor, parser and poller services, the broker, MariaDB, moto.
"""

from __future__ import annotations

import secrets
import socket
import string
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from rbr_log_extractor.main import build_service as build_extractor
from rbr_parser.main import build_service as build_parser
from rbr_parser.settings import ParserSettings
from rbr_runtime.db.tables import drop_file_ledger, logs
from rbr_schemas import ALERTS, BUCKET_STATUS, AlertState
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.rustbucket_logs import RustbucketLog
from rbr_testing.s3 import MotoS3
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "honeypots"
DAY_ONE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
UPLOAD_STALE_AFTER = 8.0


def random_name() -> str:
    """Returns a name as the honeypot makes them: `rustbucket-` and 8 alphanumerics."""
    alphabet = string.ascii_letters + string.digits
    return "rustbucket-" + "".join(secrets.choice(alphabet) for _ in range(8))


class CountingListener:
    """A TCP port that accepts connections, counts them and answers nothing."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """Returns the port."""
        return int(self._socket.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        """Stops listening."""
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


class StandInRustbucket:
    """A honeypot that registers, logs and uploads exactly as the real rustbucket does."""

    def __init__(
        self, directory: Path, s3: S3Client, bucket: str, registrar_url: str, port: int
    ) -> None:
        self._directory = directory
        self._s3 = s3
        self._bucket = bucket
        self._registrar_url = registrar_url
        self._port = port
        self._lock = threading.Lock()
        self._uploading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.now = DAY_ONE
        self.log: RustbucketLog | None = None
        self.registered_name = ""
        self.include_today = False
        self.uploads = 0

    @property
    def instance_name(self) -> str:
        """Returns the current instance's name (its S3 folder)."""
        assert self.log is not None
        return self.log.instance_name

    def start(self) -> str:
        """Starts a new instance: new names and token, logged, then one registration."""
        with self._lock:
            self.log = RustbucketLog(self._directory, random_name())
            self.registered_name = random_name()
            token = secrets.token_hex(16)
            self.now = self.log.start(
                self.now,
                registry_url=f"{self._registrar_url}/api/v1/register_bucket",
                registered_name=self.registered_name,
                token=token,
                s3_bucket=self._bucket,
            )
            payload = {
                "name": self.registered_name,
                "ip_address": "127.0.0.1",
                "operating_system": "linux (x86_64)",
                "token": token,
                "port": self._port,
            }
        answer = httpx.post(f"{self._registrar_url}/api/v1/register_bucket/", json=payload)
        assert answer.status_code == 200, answer.text
        return self.registered_name

    def attacked(self, hours: float = 2) -> None:
        """An SSH session some hours later (the day may change)."""
        with self._lock:
            assert self.log is not None
            self.now += timedelta(hours=hours)
            self.now = self.log.ssh_session(
                self.now,
                ip="198.51.100.23",
                port=40000 + self.uploads % 1000,
                username="root",
                password=secrets.token_hex(4),
                commands=[("uname -a", "native"), ("cat /etc/passwd", "native")],
            )

    def upload_once(self, *, include_today: bool | None = None) -> None:
        """One check of the uploader: the check line into today's file, then the uploads.

        Every `rustbucket.log.*` file not written in the last 5 minutes is uploaded; the
        check line keeps today's file fresh, so only earlier days' files go, unless
        `include_today` (a version of the uploader without that quirk).
        """
        today = self.include_today if include_today is None else include_today
        with self._lock:
            assert self.log is not None
            self.now += timedelta(seconds=1)  # time passes between two checks
            self.log.upload_check(self.now)
            current = self.log.path_for(self.now)
            for path in sorted(self._directory.glob("rustbucket.log.*")):
                if path == current and not today:
                    continue
                key = f"{PREFIX}/{self.instance_name}/{path.name}"
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=path.read_bytes())
            self.uploads += 1

    def start_uploading(self) -> None:
        """Starts the uploader's loop (a check every 0.3 s here, hourly for real)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._upload_loop, daemon=True)
        self._thread.start()

    def stop_uploading(self) -> None:
        """Stops the uploader's loop (the honeypot goes quiet)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _upload_loop(self) -> None:
        while not self._stop.wait(0.3):
            self.upload_once()

    def lines(self) -> list[str]:
        """Returns every line of every file it wrote."""
        with self._lock:
            return [
                line
                for path in sorted(self._directory.glob("rustbucket.log.*"))
                for line in path.read_text(encoding="utf-8").splitlines()
            ]

    def file_sizes(self) -> dict[str, int]:
        """Returns each file's size."""
        with self._lock:
            return {p.name: p.stat().st_size for p in self._directory.glob("rustbucket.log.*")}


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    made = CountingListener()
    yield made
    made.close()


def operator_get(client: httpx.Client, path: str) -> Any:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


def rows_of(engine: Engine, name: str) -> list[str]:
    with engine.connect() as connection:
        return [
            row.log for row in connection.execute(select(logs.c.log).where(logs.c.name == name))
        ]


def row_count(engine: Engine, name: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(logs).where(logs.c.name == name)
            ).scalar_one()
        )


def copied_sizes(engine: Engine, name: str) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(drop_file_ledger.c.file_name, drop_file_ledger.c.size_bytes).where(
                drop_file_ledger.c.name == name
            )
        )
        return {row.file_name: row.size_bytes for row in rows}


def assert_every_line_once(engine: Engine, honeypot: StandInRustbucket, bucket: str) -> None:
    """Waits until every file is copied to its end and parsed; then each line is one row."""
    sizes = honeypot.file_sizes()
    wait_for(
        lambda: copied_sizes(engine, bucket) == sizes,
        timeout=60,
        message="every file copied to its end",
    )
    expected = honeypot.lines()
    wait_for(
        lambda: row_count(engine, bucket) >= len(expected),
        timeout=60,
        message="every line parsed",
    )
    assert Counter(rows_of(engine, bucket)) == Counter(expected)


def unresponsive_alerts(bootstrap: str, name: str) -> list[Any]:
    return [
        event.data
        for event in read_events(bootstrap, ALERTS)
        if event.data.dedupe_key == f"bucket_unresponsive:{name}"
    ]


@pytest.mark.timeout(300)
def test_a_real_rustbucket_uploading_to_a_drop_location_end_to_end(
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    settings_factory: Any,
    mysql_database_url: str,
    mysql_engine: Engine,
    moto_s3: MotoS3,
    raw_bucket: str,
    broker: Broker,
    listener: CountingListener,
    tmp_path: Path,
) -> None:
    drop = moto_s3.create_bucket("drop")
    registrar = registrar_factory()
    poller_factory(
        poll_interval=1.0,
        unresponsive_after=2.0,
        health_check_interval=0.2,
        upload_stale_after=UPLOAD_STALE_AFTER,
    )
    extractor_settings = settings_factory(
        drop_locations=f"s3://{drop}/{PREFIX}/",
        drop_scan_interval=0.5,
        extract_interval=1.0,
        extract_tick=0.1,
    )
    parser_settings = ParserSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        database_url=mysql_database_url,
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_bucket=raw_bucket,
        http_port=0,
        consumer_batch_wait=0.2,
        log_retention_days=0,
        raw_retention_days=0,
    )
    honeypot = StandInRustbucket(
        tmp_path / "logs", moto_s3.client(), drop, registrar.url, listener.port
    )
    with (
        running(build_extractor(extractor_settings)),
        running(build_parser(parser_settings)),
        registrar.operator() as operator,
    ):
        # Day one: it starts, registers (pending) and is attacked; nothing is uploaded yet.
        bucket = honeypot.start()
        first_folder = honeypot.instance_name
        honeypot.attacked()
        honeypot.attacked()
        honeypot.start_uploading()
        # Day two: day one's file goes up; its identity lines link the folder to the bucket,
        # which never answered a poll: it becomes s3-drop. Then the operator approves it.
        honeypot.attacked(hours=20)
        wait_for(
            lambda: (
                operator_get(operator, f"/api/v1/buckets/{bucket}")["delivery_mode"] == "s3-drop"
            ),
            timeout=60,
            message="the folder linked and the bucket s3-drop",
        )
        [source] = operator_get(operator, f"/api/v1/sources?bucket={bucket}")["sources"]
        assert (source["folder"], source["linked_by"]) == (first_folder, "identity")
        approved = operator.post(f"/api/v1/buckets/{bucket}/approve")
        assert approved.status_code == 200, approved.text
        wait_for(lambda: row_count(mysql_engine, bucket), timeout=60, message="day one's rows")

        # Today's file uploaded as it grows (a version whose uploader does so).
        honeypot.include_today = True
        honeypot.attacked(hours=1)
        wait_for(
            lambda: len(copied_sizes(mysql_engine, bucket)) == 2,
            timeout=60,
            message="day two's growing file copied",
        )
        honeypot.attacked(hours=1)

        # Day three: a restart. New names; the earlier files go up again under the new
        # folder (day two's grown since); the new folder is linked to the same bucket.
        honeypot.include_today = False
        honeypot.stop_uploading()
        honeypot.attacked(hours=10)
        second_registration = honeypot.start()
        second_folder = honeypot.instance_name
        honeypot.attacked()
        honeypot.start_uploading()
        wait_for(
            lambda: (
                [
                    (s["folder"], s["linked_by"])
                    for s in operator_get(operator, f"/api/v1/sources?bucket={bucket}")["sources"]
                ]
                == [(first_folder, "identity"), (second_folder, "restart")]
            ),
            timeout=60,
            message="the new instance's folder linked to the same bucket",
        )
        honeypot.include_today = True
        honeypot.attacked()

        # Uploads stop: everything written so far is in `logs` exactly once, then one
        # unresponsive alert fires.
        honeypot.stop_uploading()
        honeypot.upload_once(include_today=True)
        quiet_since = datetime.now(UTC)
        assert_every_line_once(mysql_engine, honeypot, bucket)
        fired = wait_for(
            lambda: [
                a
                for a in unresponsive_alerts(broker.bootstrap, bucket)
                if a.state == AlertState.FIRING
            ],
            timeout=60,
            message="the unresponsive alert",
        )
        assert len(fired) == 1
        assert fired[0].occurred_at >= quiet_since + timedelta(seconds=UPLOAD_STALE_AFTER - 1)
        assert fired[0].context["delivery_mode"] == "s3-drop"

        # Uploads resume: the alert is resolved, and no row is added twice.
        honeypot.start_uploading()
        wait_for(
            lambda: any(
                a.state == AlertState.RESOLVED
                for a in unresponsive_alerts(broker.bootstrap, bucket)
            ),
            timeout=60,
            message="the alert resolved",
        )
        honeypot.stop_uploading()
        [alert_fired, alert_resolved] = unresponsive_alerts(broker.bootstrap, bucket)
        assert alert_resolved.alert_id == alert_fired.alert_id
        honeypot.upload_once(include_today=True)
        assert_every_line_once(mysql_engine, honeypot, bucket)
        assert row_count(mysql_engine, second_registration) == 0

    # Never called: no connection to it, no poll status of it.
    assert listener.connections == 0
    assert [e for e in read_events(broker.bootstrap, BUCKET_STATUS) if e.data.name == bucket] == []

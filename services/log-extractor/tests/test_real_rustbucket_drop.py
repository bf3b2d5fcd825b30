"""End to end: a stand-in for the real rustbucket, delivering its logs to an S3 drop location.

The stand-in behaves as jamesbinford/rustbucket does: at every start it generates a new
instance name and a new registered name and token, logs both (`Instance name: ...`,
`Generated instance name: ...`), registers once exactly as the real client does (with
`0.0.0.0` and no port: `rbr_testing.rustbucket_client`) and serves nothing the registry
could call;
it writes daily text files (`rustbucket.log.YYYY-MM-DD`, real format) and its uploader
uploads them again and again to `s3://BUCKET/PREFIX/<instance name>/` (writing its "Starting
log upload check" line into the current file first). After a restart the new instance
uploads the earlier days' files again under its new folder, grown or not.

The registrar takes the address the registration came from (loopback, which the test
allows), and the poller and log-extractor would call a bucket without a port at the port of a
listener that only counts connections (`RBR_BUCKET_DEFAULT_PORT`): any poll or pull would
show. Its restarts leave one bucket the operator cares about: each restart's registration is
shown as replacing it (the bucket is silent: no poll, no recent upload); the operator merges
one and the other expires unapproved.

Real parts: registrar, log-extractor, parser and poller services, the broker, MariaDB, moto.
"""

from __future__ import annotations

import json
import secrets
import socket
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
from rbr_testing.rustbucket_client import new_identity, post_like_rustbucket
from rbr_testing.rustbucket_logs import RustbucketLog
from rbr_testing.s3 import MotoS3
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "honeypots"
DAY_ONE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
UPLOAD_STALE_AFTER = 8.0
REPLACEMENT_SILENCE = 1.0


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

    def __init__(self, directory: Path, s3: S3Client, bucket: str, registrar_url: str) -> None:
        self._directory = directory
        self._s3 = s3
        self._bucket = bucket
        self._registrar_url = registrar_url
        self._lock = threading.Lock()
        self._uploading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.now = DAY_ONE
        self.log: RustbucketLog | None = None
        self.registered_name = ""
        self.tokens: list[str] = []
        """The token of every start (the honeypot logs each in clear)."""
        self.include_today = False
        self.uploads = 0

    @property
    def instance_name(self) -> str:
        """Returns the current instance's name (its S3 folder)."""
        assert self.log is not None
        return self.log.instance_name

    def start(self) -> str:
        """Starts a new instance: new names and token, one registration, all of it logged."""
        instance_name, _ = new_identity()
        registered_name, token = new_identity()
        registry_url = f"{self._registrar_url}/api/v1/register_bucket"
        status, answer = post_like_rustbucket(registry_url, registered_name, token)
        assert status == 200, answer
        with self._lock:
            self.log = RustbucketLog(self._directory, instance_name)
            self.registered_name = registered_name
            self.tokens.append(token)
            self.now = self.log.start(
                self.now,
                registry_url=registry_url,
                registered_name=registered_name,
                token=token,
                registration_status=status,
                registry_answer=json.dumps(answer, separators=(",", ":")),
                s3_bucket=self._bucket,
            )
        return registered_name

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
                key = self.log.s3_key(path, PREFIX)
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

    def stored_lines(self) -> list[str]:
        """Returns its lines as the registry must store them: its tokens redacted."""
        stored = []
        for line in self.lines():
            redacted = line
            for token in self.tokens:
                redacted = redacted.replace(token, "[REDACTED]")
            stored.append(redacted)
        return stored

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
    """Waits until every file is copied to its end and parsed; then each line is one row.

    The honeypot logs its registration token; the parser stores the line with it redacted.
    """
    sizes = honeypot.file_sizes()
    wait_for(
        lambda: copied_sizes(engine, bucket) == sizes,
        timeout=60,
        message="every file copied to its end",
    )
    expected = honeypot.stored_lines()
    wait_for(
        lambda: row_count(engine, bucket) >= len(expected),
        timeout=60,
        message="every line parsed",
    )
    rows = rows_of(engine, bucket)
    assert Counter(rows) == Counter(expected)
    assert not [row for row in rows for token in honeypot.tokens if token in row]


def unresponsive_alerts(bootstrap: str, name: str) -> list[Any]:
    return [
        event.data
        for event in read_events(bootstrap, ALERTS)
        if event.data.dedupe_key == f"bucket_unresponsive:{name}"
    ]


def newest_upload(s3: S3Client, drop: str) -> datetime | None:
    """Returns when the honeypot last uploaded anything (S3's LastModified)."""
    listed = s3.list_objects_v2(Bucket=drop, Prefix=f"{PREFIX}/").get("Contents", [])
    return max((item["LastModified"] for item in listed), default=None)


def newest_recorded(operator: httpx.Client, bucket: str) -> datetime | None:
    """Returns the newest upload the registrar recorded for the bucket's drop folders."""
    sources = operator_get(operator, f"/api/v1/sources?bucket={bucket}")["sources"]
    uploads = [datetime.fromisoformat(s["newest_upload_at"]) for s in sources]
    return max(uploads, default=None)


def silent(operator: httpx.Client, s3: S3Client, drop: str, bucket: str) -> bool:
    """Tells whether the registrar knows of the bucket's last upload, and it is old enough.

    The bucket never answered a poll: its uploads are its only sign of life. Once the
    registrar recorded the last one (no later report can bring a newer one) and it is older
    than RBR_REPLACEMENT_SILENCE, a restart's registration replaces the bucket.
    """
    uploaded, recorded = newest_upload(s3, drop), newest_recorded(operator, bucket)
    if uploaded is None or recorded is None or abs(recorded - uploaded) >= timedelta(seconds=1):
        return False
    return datetime.now(UTC) - uploaded > timedelta(seconds=REPLACEMENT_SILENCE + 0.5)


def restart_when_silent(
    honeypot: StandInRustbucket, operator: httpx.Client, s3: S3Client, drop: str, bucket: str
) -> str:
    """Restarts the honeypot once its bucket is silent; returns the new registration."""
    wait_for(
        lambda: silent(operator, s3, drop, bucket),
        timeout=60,
        message="the bucket's last upload recorded and older than the replacement silence",
    )
    registration = honeypot.start()
    shown = operator_get(operator, f"/api/v1/buckets/{registration}")
    assert (shown["state"], shown["replaces"], shown["ip_address"]) == (
        "pending",
        bucket,
        "127.0.0.1",
    )
    return registration


def folders_of(operator: httpx.Client, bucket: str) -> list[tuple[str, str]]:
    sources = operator_get(operator, f"/api/v1/sources?bucket={bucket}")["sources"]
    return [(s["folder"], s["linked_by"]) for s in sources]


def bucket_names(operator: httpx.Client) -> list[str]:
    return [b["name"] for b in operator_get(operator, "/api/v1/buckets")["buckets"]]


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
    s3 = moto_s3.client()
    registrar = registrar_factory(replacement_silence=REPLACEMENT_SILENCE)
    poller_factory(
        poll_interval=1.0,
        unresponsive_after=2.0,
        health_check_interval=0.2,
        upload_stale_after=UPLOAD_STALE_AFTER,
        bucket_default_port=listener.port,
    )
    extractor_settings = settings_factory(
        drop_locations=f"s3://{drop}/{PREFIX}/",
        drop_scan_interval=0.5,
        extract_interval=1.0,
        extract_tick=0.1,
        bucket_default_port=listener.port,
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
    honeypot = StandInRustbucket(tmp_path / "logs", s3, drop, registrar.url)
    with (
        running(build_extractor(extractor_settings)),
        running(build_parser(parser_settings)),
        registrar.operator() as operator,
    ):
        # Day one: it starts, registers (pending, at the address it registered from, no
        # port) and is attacked; nothing is uploaded yet.
        bucket = honeypot.start()
        registered = operator_get(operator, f"/api/v1/buckets/{bucket}")
        assert (registered["ip_address"], registered["port"]) == ("127.0.0.1", None)
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
        assert folders_of(operator, bucket) == [(first_folder, "identity")]
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

        # Day three: a restart. New names; its registration is shown as replacing the
        # bucket, and the operator merges it in. The earlier files go up again under the new
        # folder (day two's grown since); the new folder is linked to the same bucket.
        honeypot.include_today = False
        honeypot.stop_uploading()
        honeypot.attacked(hours=10)
        second_registration = restart_when_silent(honeypot, operator, s3, drop, bucket)
        second_folder = honeypot.instance_name
        honeypot.attacked()
        honeypot.start_uploading()
        wait_for(
            lambda: (
                folders_of(operator, bucket)
                == [(first_folder, "identity"), (second_folder, "restart")]
            ),
            timeout=60,
            message="the new instance's folder linked to the same bucket",
        )
        merged = operator.post(
            f"/api/v1/buckets/{second_registration}/merge", json={"into": bucket}
        )
        assert merged.status_code == 200, merged.text
        kept = operator_get(operator, f"/api/v1/buckets/{bucket}")
        assert (kept["state"], kept["delivery_mode"], kept["aliases"]) == (
            "active",
            "s3-drop",
            [second_registration],
        )
        assert bucket_names(operator) == [bucket]
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

        # Another restart nobody attends to: shown as replacing the bucket, its folder feeds
        # the bucket, and its registration expires unapproved (as RBR_PENDING_EXPIRY later).
        third_registration = restart_when_silent(honeypot, operator, s3, drop, bucket)
        third_folder = honeypot.instance_name
        honeypot.attacked()
        honeypot.upload_once(include_today=True)
        wait_for(
            lambda: (third_folder, "restart") in folders_of(operator, bucket),
            timeout=60,
            message="the third instance's folder linked to the same bucket",
        )
        expiry = registrar.registrar.pending_expiry
        assert expiry.run_once(datetime.now(UTC) + timedelta(days=8)) == 1
        assert bucket_names(operator) == [bucket]
        assert operator.get(f"/api/v1/buckets/{third_registration}").status_code == 404
        assert_every_line_once(mysql_engine, honeypot, bucket)
        for registration in (second_registration, third_registration):
            assert row_count(mysql_engine, registration) == 0

    # Never called: no connection to it, no poll status of it.
    assert listener.connections == 0
    assert [e for e in read_events(broker.bootstrap, BUCKET_STATUS) if e.data.name == bucket] == []

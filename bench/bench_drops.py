"""Drop location discovery: time to list and link 10,000 instance folders on the S3 endpoint.

10,000 honeypots each uploaded one daily file (real rustbucket text lines naming its
instance and its registered bucket) under its own instance folder of one drop location
(moto S3). From the start of one scan by the log-extractor (list the location, read each
new folder's identity lines, report it on `drop.discovered`) to the registrar (running whole
on the real broker and MariaDB) having linked every folder to its bucket.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from moto.server import ThreadedMotoServer
from sqlalchemy import Engine, func, select

from bench.bench_parser import fake_aws_environment
from bench.figures import Figure
from rbr_log_extractor.drops import DropScanner
from rbr_log_extractor.main import source_clients
from rbr_log_extractor.settings import ExtractorSettings
from rbr_registrar.domain import Registration
from rbr_registrar.main import Registrar
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import drop_sources
from rbr_runtime.kafka import EventProducer
from rbr_runtime.s3 import ensure_bucket, make_s3_client
from rbr_testing.broker import Broker
from rbr_testing.mariadb import create_database, drop_database, mysql_url
from rbr_testing.registry import registrar_settings
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

DROP_BUCKET = "bench-drop"
PREFIX = "rustbuckets/"
GOAL_SECONDS = 300.0  # a third of the default RBR_DROP_SCAN_INTERVAL
FILE = (
    "2026-11-20T08:00:00.000201Z  INFO rustbucket: Instance name: {instance}\n"
    "2026-11-20T08:00:00.004700Z  INFO rustbucket::registration: Generated instance name: "
    "{bucket}\n"
    "2026-11-20T08:00:00.009000Z  INFO rustbucket: All listeners started. Honeypot is now "
    "running indefinitely.\n"
    "2026-11-20T09:12:44.120000Z  INFO rustbucket::protocols::ssh: SSH password auth attempt "
    "- client: 198.51.100.7:40112, user: root, password: admin\n"
)


def run(quick: bool) -> list[Figure]:
    count = 1_000 if quick else 10_000
    fake_aws_environment()
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    broker = Broker()
    broker.start()
    engine = make_engine(url)
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        settings = ExtractorSettings(
            kafka_bootstrap=broker.bootstrap,
            database_url=url,
            s3_endpoint_url=endpoint,
            s3_bucket="bench-raw",
            secret_key="bench-secret-key",
            drop_locations=f"s3://{DROP_BUCKET}/{PREFIX}",
        )
        names = _prepare(engine, settings, endpoint, count)
        registrar = Registrar(registrar_settings(broker, engine))
        producer = EventProducer(settings, source="/rbr/log-extractor")
        scanner = DropScanner(
            settings, engine=engine, source_s3=source_clients(settings), producer=producer
        )
        with running(registrar.service):
            started = time.monotonic()
            reported = scanner.scan()
            scanned = time.monotonic() - started
            wait_for(lambda: _linked(engine) >= count, timeout=900, message="every folder linked")
            linked = time.monotonic() - started
        producer.flush()
        assert reported == len(names)
    finally:
        engine.dispose()
        broker.stop()
        moto.stop()
        drop_database(database)
    return [
        Figure(
            f"drop discovery: list and report {count:,} folders",
            scanned,
            "s",
            note="list, read identity lines, publish",
        ),
        Figure(
            f"drop discovery: list and link {count:,} folders",
            linked,
            "s",
            goal=f"<= {GOAL_SECONDS:.0f} s",
            met=linked <= GOAL_SECONDS if not quick else None,
        ),
        Figure("drop discovery: folders linked per second", count / linked, "folders/s"),
    ]


def _prepare(engine: Engine, settings: ExtractorSettings, endpoint: str, count: int) -> list[str]:
    """Registers `count` buckets and uploads one file per instance folder (not measured)."""
    repository = BucketRepository(engine)
    names = [f"rustbucket-{i:08d}" for i in range(count)]
    for start in range(0, count, 500):
        repository.register(
            [
                Registration(
                    name=name,
                    ip_address="203.0.113.7",
                    port=None,
                    operating_system="linux (x86_64)",
                    metrics={},
                    s3=None,
                    token_hash=uuid.uuid4().hex,
                    token_ciphertext="unused",
                )
                for name in names[start : start + 500]
            ]
        )
    client = make_s3_client(settings, endpoint_url=endpoint)
    ensure_bucket(client, DROP_BUCKET)

    def upload(index: int) -> None:
        instance = f"rustbucket-i{index:07d}"
        body = FILE.format(instance=instance, bucket=names[index]).encode()
        client.put_object(
            Bucket=DROP_BUCKET, Key=f"{PREFIX}{instance}/rustbucket.log.2026-11-20", Body=body
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(upload, range(count)))
    return names


def _linked(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(drop_sources)
                .where(drop_sources.c.bucket_id.is_not(None))
            ).scalar_one()
        )

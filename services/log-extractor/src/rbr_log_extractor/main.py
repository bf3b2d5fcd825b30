"""The log-extractor service: each owned bucket's logs into S3 every RBR_EXTRACT_INTERVAL."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from rbr_log_extractor.drops import DropScanner
from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.memory import release_large_buffers
from rbr_log_extractor.scheduler import ExtractScheduler
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.store import ExtractState
from rbr_runtime.buckets import BucketClients, client_options, vault
from rbr_runtime.db.engine import make_engine
from rbr_runtime.dependencies import (
    broker_dependency,
    database_dependency,
    s3_dependency,
    watch_dependencies,
)
from rbr_runtime.kafka import BucketDirectory, EventProducer
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.schedule import PeriodicTask, TaskClaims, worker_identity
from rbr_runtime.service import Service, bootstrap

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

GROUP_ID = "log-extractor"


def make_http_clients(settings: ExtractorSettings) -> BucketClients[httpx.Client]:
    """Returns the clients buckets are called with, following RBR_BUCKET_CA_FILE changes."""
    return BucketClients(
        settings,
        lambda verify: httpx.Client(
            verify=verify, **client_options(settings, settings.extract_concurrency)
        ),
    )


def source_clients(settings: ExtractorSettings) -> Callable[[str], S3Client]:
    """Returns a function giving the client of the buckets' own S3 (and drops) in a region."""

    @functools.cache
    def source_client(region: str) -> S3Client:
        return make_s3_client(settings, region=region, endpoint_url=settings.source_endpoint)

    return source_client


def make_extractor(settings: ExtractorSettings, state: ExtractState) -> tuple[Extractor, S3Client]:
    """Builds the extractor and the registry bucket's S3 client."""
    s3 = make_s3_client(settings)
    source_client = source_clients(settings)
    extractor = Extractor(
        settings,
        state=state,
        s3=s3,
        source_s3=source_client,
        producer=EventProducer(settings, source="/rbr/log-extractor"),
        http=make_http_clients(settings),
        vault=vault(settings),
    )
    return extractor, s3


def build_service(settings: ExtractorSettings) -> Service:
    """Wires the log-extractor: bucket directory, scheduler, health checks."""
    engine = make_engine(settings.database_url)
    state = ExtractState(engine, worker_identity())
    extractor, s3 = make_extractor(settings, state)
    directory = BucketDirectory(settings, GROUP_ID)
    scheduler = ExtractScheduler(
        settings, directory=directory, extractor=extractor, state=state, s3=s3
    )
    service = Service(settings)
    service.add("bucket-directory", directory.run, directory.stop)
    service.add("scheduler", scheduler.run, scheduler.stop)
    if settings.locations:
        scanner = DropScanner(
            settings,
            engine=engine,
            source_s3=source_clients(settings),
            producer=EventProducer(settings, source="/rbr/log-extractor"),
            claims=TaskClaims(engine, state.owner),
        )
        scan = PeriodicTask("drop-scan", settings.drop_scan_interval, scanner.scan)
        service.add("drop-scan", scan.run, scan.stop)
    service.health.add_check("bucket-directory", directory.readiness)
    watch_dependencies(
        service, database_dependency(settings), s3_dependency(settings), broker_dependency(settings)
    )
    service.on_shutdown(extractor.close)
    service.on_shutdown(engine.dispose)
    return service


def main() -> None:
    """Runs the log-extractor until SIGTERM."""
    settings = bootstrap(ExtractorSettings, "log-extractor")
    release_large_buffers()
    sys.exit(build_service(settings).run())

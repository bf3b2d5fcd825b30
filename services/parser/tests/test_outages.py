"""An S3 endpoint that hangs: the parser says so within seconds and parses once it answers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from rbr_parser.main import build_service
from rbr_schemas import LOGS_PARSED
from rbr_simulator.generator import LogGenerator
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.log_truth import mismatches, rows_of_object
from rbr_testing.s3 import MotoProcess
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

from .conftest import RawObjects, SettingsFactory

# Shortly before the objects' extraction time (the parser infers syslog years from it).
START = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)


def s3_up(health: str) -> float | None:
    """Returns rbr_dependency_up{dependency="s3"} as the parser's /metrics serves it."""
    for family in text_string_to_metric_families(httpx.get(f"{health}/metrics").text):
        for sample in family.samples:
            if sample.name == "rbr_dependency_up" and sample.labels == {"dependency": "s3"}:
                return sample.value
    return None


def test_a_frozen_s3_endpoint_fails_readyz_naming_s3_and_the_object_is_parsed_after(
    settings_factory: SettingsFactory,
    broker: Broker,
    mysql_engine: Engine,
    moto_s3_process: MotoProcess,
) -> None:
    server = moto_s3_process.server
    bucket = server.create_bucket("raw")
    objects = RawObjects(server.client(), bucket, broker.bootstrap)
    records = LogGenerator(31, start=START).generate(200)
    stored = objects.store("rustbucket-f7", b"".join(record.data for record in records))
    settings = settings_factory(
        s3_endpoint_url=server.endpoint_url,
        s3_bucket=bucket,
        dependency_check_interval=1.0,
        dependency_check_timeout=2.0,
    )
    service = build_service(settings)
    with running(service):
        health = f"http://127.0.0.1:{service.health_port}"
        assert s3_up(health) == 1.0
        moto_s3_process.freeze()
        try:
            objects.publish(stored)  # the parser now waits on the frozen endpoint
            answer = wait_for(
                lambda: (got := httpx.get(f"{health}/readyz")).status_code == 503 and got,
                timeout=10.0,
                message="/readyz failing",
            )
            assert "s3" in answer.json()["waiting"], answer.json()
            wait_for(lambda: s3_up(health) == 0.0, timeout=10.0, message="s3 gauge at 0")
        finally:
            moto_s3_process.thaw()
        wait_for(lambda: httpx.get(f"{health}/readyz").status_code == 200, timeout=30.0)
        read_events(broker.bootstrap, LOGS_PARSED, at_least=1, timeout=90)
    assert mismatches(rows_of_object(mysql_engine, stored.sha256), records) == []

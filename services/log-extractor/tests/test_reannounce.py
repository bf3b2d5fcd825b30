"""`rbr topics announce-objects`: raw objects whose logs.extracted was lost are announced again.

Real broker, MariaDB and S3 (moto): objects stored as the extractor stores them, one of them
parsed (its rows in `logs`), the topic empty as after a broker that lost it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_log_extractor.announce import event_id
from rbr_log_extractor.reannounce import parse_raw_key
from rbr_log_extractor.storage import object_metadata, raw_key
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, LOGS_EXTRACTED, BucketRegistered, BucketState
from rbr_testing.broker import Broker
from rbr_testing.buckets import TEST_SECRET_KEY
from rbr_testing.kafka import read_events, read_topic
from rbr_testing.logrows import insert_rows, log_row
from rbr_testing.s3 import MotoS3

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def test_raw_keys_name_their_bucket_and_object() -> None:
    key = raw_key("rustbucket-a", T0, "0b7e-id")
    assert parse_raw_key(key) == ("rustbucket-a", "0b7e-id")
    assert parse_raw_key("staging/rustbucket-a/x.log") is None
    assert parse_raw_key("raw/rustbucket-a/2026/11/21/notes.txt") is None


def store(moto_s3: MotoS3, bucket: str, name: str, body: bytes) -> tuple[str, str, str]:
    """Stores a raw object as the extractor does; returns (key, object id, sha256)."""
    object_id = str(uuid.uuid4())
    key = raw_key(name, T0, object_id)
    sha256 = hashlib.sha256(body).hexdigest()
    moto_s3.client().put_object(
        Bucket=bucket, Key=key, Body=body, Metadata=object_metadata(len(body), sha256, "http")
    )
    return key, object_id, sha256


def register(broker: Broker, name: str) -> None:
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/test")
    record = BucketRegistered(
        bucket_id=str(uuid.uuid4()),
        name=name,
        state=BucketState.ACTIVE,
        ip_address="192.0.2.7",
        token_ciphertext="x",
        registered_at=T0,
        updated_at=T0,
        version=1,
    )
    producer.send(BUCKET_REGISTERED, name, record)
    producer.flush()


@pytest.mark.broker
@pytest.mark.mariadb
@pytest.mark.s3
def test_objects_never_parsed_are_announced_again_once(
    broker: Broker,
    moto_s3: MotoS3,
    raw_bucket: str,
    mysql_engine: Engine,
    mysql_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "rustbucket-a"
    register(broker, name)
    parsed_key, _, parsed_sha = store(moto_s3, raw_bucket, name, b"line one\n")
    lost = [store(moto_s3, raw_bucket, name, f"lost {i}\n".encode()) for i in range(2)]
    store(moto_s3, raw_bucket, "rustbucket-gone", b"of a removed bucket\n")
    insert_rows(mysql_engine, [log_row(name, T0, "unparsed", source_sha256=parsed_sha)])
    for variable, value in {
        "RBR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RBR_DATABASE_URL": mysql_database_url,
        "RBR_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "RBR_S3_BUCKET": raw_bucket,
        "RBR_SECRET_KEY": TEST_SECRET_KEY,
    }.items():
        monkeypatch.setenv(variable, value)
    runner = CliRunner()
    command = ["topics", "announce-objects", "--min-age", "0"]

    dry = runner.invoke(app, [*command, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "4 raw object(s) stored in the last 168 h: 1 parsed, 2 never parsed" in dry.output
    assert "1 of buckets no longer registered (left alone)" in dry.output
    assert parsed_key not in dry.output
    assert "would announce 2 object(s)" in dry.output
    assert read_topic(broker.bootstrap, LOGS_EXTRACTED.name) == []

    real = runner.invoke(app, command)
    assert real.exit_code == 0, real.output
    assert "announced again: 2 object(s)" in real.output
    events = read_events(broker.bootstrap, LOGS_EXTRACTED, at_least=2)
    assert sorted((e.data.s3_key, e.data.sha256, e.id) for e in events) == sorted(
        (key, sha, event_id(object_id)) for key, object_id, sha in lost
    )
    assert {(e.data.name, e.data.ip_address, e.data.s3_bucket) for e in events} == {
        (name, "192.0.2.7", raw_bucket)
    }

    # Once the parser stored them, nothing is left to announce.
    insert_rows(
        mysql_engine, [log_row(name, T0, "unparsed", source_sha256=sha) for _, _, sha in lost]
    )
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "3 parsed, 0 never parsed" in again.output
    assert len(read_topic(broker.bootstrap, LOGS_EXTRACTED.name)) == 2

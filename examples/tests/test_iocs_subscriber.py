"""The iocs subscriber example, run as a separate process against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema

from rbr_runtime.intel.indicators import indicator_uuid
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_schemas import IOCS, IocRecord
from rbr_testing.broker import Broker

EXAMPLE = Path(__file__).resolve().parents[1] / "iocs_subscriber.py"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "json" / "iocs.schema.json"
WHEN = datetime(2026, 11, 21, 12, tzinfo=UTC)


def record(kind: str, value: str, confidence: int) -> IocRecord:
    return IocRecord(
        id=str(indicator_uuid(kind, value)),
        type=kind,
        value=value,
        first_seen=WHEN,
        last_seen=WHEN,
        sightings=1,
        hits=3,
        bucket_count=1,
        buckets=["rustbucket-a"],
        techniques=["T1078"],
        roles=["login"],
        confidence=confidence,
        source="rules",
        new=True,
        bucket="rustbucket-a",
    )


def test_subscriber_reads_validates_and_keeps_a_blocklist(broker: Broker, tmp_path: Path) -> None:
    producer = EventProducer(
        CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/analyst"
    )
    sent = [
        record("ip", "45.155.205.233", 70),
        record("ip", "45.155.205.234", 30),
        record("sha256", "ab" * 32, 90),
    ]
    for item in sent:
        producer.send(IOCS, f"{item.type.value}:{item.value}", item)
    producer.flush()
    output, blocklist = tmp_path / "iocs.jsonl", tmp_path / "blocklist.txt"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap",
            broker.bootstrap,
            "--group",
            "intel",
            "--output",
            str(output),
            "--blocklist",
            str(blocklist),
            "--min-confidence",
            "50",
            "--max-messages",
            "3",
            "-X",
            "session.timeout.ms=2000",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["value"] for line in lines) == sorted(i.value for i in sent)
    assert blocklist.read_text() == "45.155.205.233\n"
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

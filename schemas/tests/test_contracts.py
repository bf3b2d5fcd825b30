"""The committed contract files match the models, and every example is a valid event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from rbr_schemas import TOPICS, CloudEvent, DeadLetterHeaders, Severity, TopicSpec, topic
from rbr_schemas.generate import (
    ASYNCAPI_FILE_NAME,
    SCHEMAS_DIR,
    drifted_files,
    event_model,
    schema_file_name,
)

EXAMPLES = SCHEMAS_DIR / "examples"


def load_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_committed_files_match_the_models() -> None:
    drifted = drifted_files()
    assert drifted == [], f"run `make schemas`: {[str(p) for p in drifted]} out of date"


def test_drift_is_detected(tmp_path: Path) -> None:
    assert drifted_files(tmp_path) != []


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_example_is_a_valid_event_of_its_topic(spec: TopicSpec) -> None:
    example = load_json(EXAMPLES / f"{spec.name}.json")
    event: CloudEvent[Any] = event_model(spec).model_validate(example)
    assert event.type == spec.event_type
    assert isinstance(event.data, spec.data_model)


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_example_validates_against_the_committed_json_schema(spec: TopicSpec) -> None:
    schema = load_json(SCHEMAS_DIR / "json" / schema_file_name(spec))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(load_json(EXAMPLES / f"{spec.name}.json"), schema)


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_json_schema_rejects_an_event_without_data(spec: TopicSpec) -> None:
    schema = load_json(SCHEMAS_DIR / "json" / schema_file_name(spec))
    example = load_json(EXAMPLES / f"{spec.name}.json")
    del example["data"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


def read_with_sdk(value: bytes) -> Any:
    """Reads a message value as a consumer using the CloudEvents SDK's current API does."""
    message = KafkaMessage(
        headers={"content-type": b"application/cloudevents+json; charset=UTF-8"},
        key=b"rustbucket-a1B2c3D4",
        value=value,
    )
    return from_kafka(message, JSONFormat())


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_example_is_read_by_the_cloudevents_sdk(spec: TopicSpec) -> None:
    path = EXAMPLES / f"{spec.name}.json"
    event = read_with_sdk(path.read_bytes())
    example = load_json(path)
    assert event.get_type() == spec.event_type
    assert (event.get_id(), event.get_source(), event.get_subject()) == (
        example["id"],
        example["source"],
        example.get("subject"),
    )
    assert event.get_data() == example["data"]


@pytest.mark.parametrize("subject", ["rustbucket-a1B2c3D4", None])
@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_events_as_produced_are_read_by_the_cloudevents_sdk(
    spec: TopicSpec, subject: str | None
) -> None:
    # What producers put on the topics: structured_json() is what the runtime's encode()
    # sends. Events about no one bucket (the daily summary) have no subject.
    example = load_json(EXAMPLES / f"{spec.name}.json")
    event = event_model(spec).model_validate({**example, "subject": subject})
    value = event.structured_json()
    attributes = {k: v for k, v in json.loads(value).items() if k != "data"}
    assert None not in attributes.values(), attributes
    read = read_with_sdk(value)
    assert read.get_subject() == subject
    assert read.get_dataschema() is None
    assert read.get_data() == json.loads(value)["data"]
    assert event_model(spec).model_validate_json(value) == event


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_events_written_with_null_attributes_are_still_accepted(spec: TopicSpec) -> None:
    # Topics written before attributes were left out hold "subject": null and
    # "dataschema": null; replays of them must still be consumed.
    example = load_json(EXAMPLES / f"{spec.name}.json")
    written_before = json.dumps({**example, "subject": None, "dataschema": None}).encode()
    with pytest.raises(CloudEventValidationError, match="dataschema"):
        read_with_sdk(written_before)  # why nulls are no longer written
    event = event_model(spec).model_validate_json(written_before)
    assert (event.subject, event.dataschema) == (None, None)
    jsonschema.validate(
        json.loads(written_before), load_json(SCHEMAS_DIR / "json" / schema_file_name(spec))
    )
    read_with_sdk(event.structured_json())


def test_every_topic_has_an_example_and_nothing_else_does() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.json")} == {spec.name for spec in TOPICS}


def test_models_reject_hostile_or_malformed_data() -> None:
    example = load_json(EXAMPLES / "alerts.json")
    bad_name = {**example, "data": {**example["data"], "bucket": "../../etc/passwd"}}
    with pytest.raises(ValidationError):
        event_model(topic("alerts")).model_validate(bad_name)
    naive_time = {**example, "time": "2026-11-21T09:35:00"}
    with pytest.raises(ValidationError, match="timezone"):
        event_model(topic("alerts")).model_validate(naive_time)


def test_unknown_fields_from_newer_producers_are_tolerated() -> None:
    example = load_json(EXAMPLES / "bucket.status.json")
    newer = {**example, "traceparent": "00-abc", "data": {**example["data"], "new": 1}}
    event = event_model(topic("bucket.status")).model_validate(newer)
    assert event.extensions() == {"traceparent": "00-abc"}


def test_severity_order() -> None:
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert max([Severity.LOW, Severity.CRITICAL, Severity.MEDIUM]) is Severity.CRITICAL


def test_dlq_headers_round_trip() -> None:
    headers = DeadLetterHeaders(
        source_topic="logs.extracted",
        source_partition=3,
        source_offset=42,
        consumer_group="parser",
        error_class="rejected",
        error="object not found: s3://rbr-raw-logs/raw/x.log",
        failed_at="2026-11-21T09:00:00Z",  # type: ignore[arg-type]
    )
    kafka_headers = headers.to_kafka()
    assert ("rbr-dlq-source-topic", b"logs.extracted") in kafka_headers
    assert DeadLetterHeaders.from_kafka([("other", b"x"), *kafka_headers]) == headers


def test_asyncapi_describes_every_topic_its_key_schema_and_parties() -> None:
    document = yaml.safe_load((SCHEMAS_DIR / ASYNCAPI_FILE_NAME).read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {name for spec in TOPICS for name in (spec.name, spec.dlq)}
    operations = document["operations"].values()
    for spec in TOPICS:
        channel_id = spec.name.replace(".", "_")
        message = document["channels"][channel_id]["messages"][channel_id]
        assert message["bindings"]["kafka"]["key"]["description"] == spec.key
        refs = json.dumps(message["payload"])
        assert schema_file_name(spec) in refs
        senders = {
            o["summary"].split()[0]
            for o in operations
            if o["action"] == "send" and o["channel"]["$ref"] == f"#/channels/{channel_id}"
        }
        receivers = {
            o["summary"].split()[0]
            for o in operations
            if o["action"] == "receive" and o["channel"]["$ref"] == f"#/channels/{channel_id}"
        }
        assert {p.split()[0] for p in spec.producers} == senders
        assert {c.split()[0] for c in spec.consumers} == receivers


def test_asyncapi_references_resolve() -> None:
    text = (SCHEMAS_DIR / ASYNCAPI_FILE_NAME).read_text()
    document = yaml.safe_load(text)
    for ref in _refs(document):
        if ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]
        else:
            assert (SCHEMAS_DIR / ref).is_file(), ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []

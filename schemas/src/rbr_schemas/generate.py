"""Generates the committed JSON Schema files and the AsyncAPI document from the models.

Run `make schemas` (or `python -m rbr_schemas.generate`) after changing a model; tests run
`--check`, which fails when the committed files differ from what the models produce.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from rbr_schemas.dlq import DeadLetterHeaders
from rbr_schemas.envelope import CloudEvent
from rbr_schemas.topics import DLQ_PARTITIONS, TOPICS, TopicSpec

SCHEMAS_DIR = Path(__file__).resolve().parents[2]
JSON_DIR_NAME = "json"
ASYNCAPI_FILE_NAME = "asyncapi.yaml"
SCHEMA_BASE_URI = "https://schemas.rustbucket.io/rbr/"
DLQ_HEADERS_FILE = "dlq-headers.schema.json"


def schema_file_name(spec: TopicSpec) -> str:
    """Returns the JSON Schema file name of a topic's events."""
    return f"{spec.name}.schema.json"


def event_model(spec: TopicSpec) -> type[CloudEvent[Any]]:
    """Returns the CloudEvent model of a topic, parametrised with the topic's data."""
    return CloudEvent[spec.data_model]  # type: ignore[name-defined]


def _topic_schema(spec: TopicSpec) -> dict[str, Any]:
    schema = event_model(spec).model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URI}{schema_file_name(spec)}",
        **schema,
        "title": f"{spec.name} event",
        "description": f"CloudEvents 1.0 event of type {spec.event_type}. {spec.description}",
    }


def _dlq_headers_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URI}{DLQ_HEADERS_FILE}",
        **DeadLetterHeaders.model_json_schema(),
        "description": (
            "Headers added to a message sent to <topic>.dlq, each as rbr-dlq-<field> with "
            "'_' written '-' (e.g. rbr-dlq-source-topic)."
        ),
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    """Returns every JSON Schema document, by file name."""
    documents = {schema_file_name(spec): _topic_schema(spec) for spec in TOPICS}
    documents[DLQ_HEADERS_FILE] = _dlq_headers_schema()
    return documents


def _operation_id(service: str, action: str, spec: TopicSpec) -> str:
    words = [*service.replace("-", " ").split(), action, *spec.name.replace(".", " ").split()]
    return words[0] + "".join(word.capitalize() for word in words[1:])


def _channel(spec: TopicSpec) -> dict[str, Any]:
    message_name = spec.name.replace(".", "_")
    payload_ref = f"./{JSON_DIR_NAME}/{schema_file_name(spec)}"
    payload: dict[str, Any] = {"$ref": payload_ref}
    if spec.tombstones:
        payload = {"oneOf": [{"$ref": payload_ref}, {"type": "null"}]}
    return {
        "address": spec.name,
        "description": spec.description,
        "messages": {
            message_name: {
                "name": spec.event_type,
                "title": f"{spec.name} event",
                "contentType": "application/cloudevents+json",
                "summary": f"CloudEvent of type {spec.event_type}; Kafka key: {spec.key}.",
                "payload": payload,
                "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}}},
            }
        },
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "topicConfiguration": _kafka_topic_configuration(spec),
            }
        },
    }


def _kafka_topic_configuration(spec: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": [spec.config.get("cleanup.policy", "delete")]}
    if "retention.ms" in spec.config:
        config["retention.ms"] = int(spec.config["retention.ms"])
    return config


def _dlq_channel(spec: TopicSpec) -> dict[str, Any]:
    return {
        "address": spec.dlq,
        "description": (
            f"Messages of {spec.name} that a consumer could never process: the original key, "
            "value and headers, plus the rbr-dlq-* headers naming source topic, partition, "
            "offset, consumer group and error."
        ),
        "messages": {
            f"{spec.name.replace('.', '_')}_dead_letter": {
                "name": f"{spec.name} dead letter",
                "headers": {"$ref": f"./{JSON_DIR_NAME}/{DLQ_HEADERS_FILE}"},
                "payload": {"description": "The original message value, byte for byte."},
            }
        },
        "bindings": {"kafka": {"topic": spec.dlq, "partitions": DLQ_PARTITIONS}},
    }


def asyncapi_document() -> dict[str, Any]:
    """Returns the AsyncAPI 3.0 document describing every topic."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in TOPICS:
        channel_id = spec.name.replace(".", "_")
        channels[channel_id] = _channel(spec)
        channels[f"{channel_id}_dlq"] = _dlq_channel(spec)
        message_ref = {"$ref": f"#/channels/{channel_id}/messages/{channel_id}"}
        for action, services in (("send", spec.producers), ("receive", spec.consumers)):
            for service in services:
                operations[_operation_id(service, action, spec)] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"{service} {'produces' if action == 'send' else 'consumes'} "
                    f"{spec.name}.",
                    "messages": [message_ref],
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Rustbucket Registry events",
            "version": "1.0.0",
            "description": (
                "Every topic of the Rustbucket Registry. Message values are CloudEvents 1.0 "
                "in structured JSON mode; data schemas are generated from the pydantic models "
                "in schemas/src/rbr_schemas (run `make schemas`)."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded broker started by `make run`.",
            }
        },
        "channels": channels,
        "operations": operations,
    }


def rendered_files() -> dict[Path, str]:
    """Returns the text of every generated file, by path relative to schemas/."""
    files = {
        Path(JSON_DIR_NAME) / name: json.dumps(document, indent=2) + "\n"
        for name, document in json_schemas().items()
    }
    files[Path(ASYNCAPI_FILE_NAME)] = yaml.safe_dump(
        asyncapi_document(), sort_keys=False, width=100, allow_unicode=True
    )
    return files


def drifted_files(root: Path = SCHEMAS_DIR) -> list[Path]:
    """Returns the generated files whose committed copy is missing or differs."""
    return [
        path
        for path, text in rendered_files().items()
        if not (root / path).is_file() or (root / path).read_text() != text
    ]


def write_files(root: Path = SCHEMAS_DIR) -> list[Path]:
    """Writes every generated file under root and returns the paths written."""
    written = []
    for path, text in rendered_files().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Writes the files, or with --check reports drift and exits 1 when there is any."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed files drifted")
    args = parser.parse_args(argv)
    if not args.check:
        for path in write_files():
            print(f"wrote {path.relative_to(SCHEMAS_DIR.parent)}")
        return 0
    drifted = drifted_files()
    for path in drifted:
        print(f"out of date: schemas/{path} (run `make schemas`)", file=sys.stderr)
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())

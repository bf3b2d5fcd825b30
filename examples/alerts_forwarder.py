"""Subscribe to the registry's `alerts` topic and forward each alert to your own system.

An example of an external subscriber: it imports nothing from this repository. It reads the
topic with its own consumer group (so it gets every alert, independently of the notifier),
validates each event against the published JSON Schema (schemas/json/alerts.schema.json),
forwards it as JSON to an HTTP endpoint (or prints it), and commits the offset only after the
forward succeeded: at-least-once, so your endpoint should dedupe on the event `id` (or on
`data.alert_id` + `data.state`).

    python examples/alerts_forwarder.py --bootstrap kafka:9092 \
        --group soc-forwarder --forward-to https://soc.example.com/ingest

Requirements: confluent-kafka, jsonschema, httpx (pip install confluent-kafka jsonschema httpx).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from confluent_kafka import Consumer, KafkaError, Message

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "json" / "alerts.schema.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--group", default="alerts-forwarder", help="your own consumer group")
    parser.add_argument("--forward-to", help="URL to POST each alert to (default: print)")
    parser.add_argument(
        "--min-severity", default="info", choices=["info", "low", "medium", "high", "critical"]
    )
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="alerts JSON Schema file")
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument(
        "-X",
        dest="kafka_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)",
    )
    return parser.parse_args(argv)


SEVERITIES = ["info", "low", "medium", "high", "critical"]


def wanted(event: dict[str, Any], min_severity: str) -> bool:
    """Tells whether the alert is at or above the minimum severity."""
    return SEVERITIES.index(event["data"]["severity"]) >= SEVERITIES.index(min_severity)


def forward(event: dict[str, Any], url: str | None, client: httpx.Client) -> None:
    """Sends the event on, retrying until the endpoint accepts it (never drops one)."""
    if url is None:
        print(json.dumps(event), flush=True)
        return
    delay = 1.0
    while True:
        try:
            response = client.post(url, json=event, headers={"Idempotency-Key": event["id"]})
            if response.status_code < 500:
                response.raise_for_status()
                return
        except httpx.TransportError as error:
            print(f"forward failed ({error}); retrying in {delay:.0f}s", file=sys.stderr)
        time.sleep(delay)
        delay = min(delay * 2, 60)


def handle(
    message: Message, args: argparse.Namespace, validator: Any, client: httpx.Client
) -> None:
    """Validates, filters and forwards one message."""
    value = message.value()
    if value is None:
        return
    try:
        event = json.loads(value)
        validator.validate(event)
    except (ValueError, jsonschema.ValidationError) as error:
        print(f"skipping invalid alert at offset {message.offset()}: {error}", file=sys.stderr)
        return
    if wanted(event, args.min_severity):
        forward(event, args.forward_to, client)


def main(argv: list[str] | None = None) -> int:
    """Consumes alerts until interrupted (or --max-messages)."""
    args = parse_args(argv)
    validator = jsonschema.Draft202012Validator(json.loads(args.schema.read_text()))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **dict(option.split("=", 1) for option in args.kafka_options),
        }
    )
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    consumer.subscribe(["alerts"])
    handled = 0
    with httpx.Client(timeout=10) as client:
        while not stopping and (args.max_messages == 0 or handled < args.max_messages):
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            handle(message, args, validator, client)
            consumer.commit(message=message, asynchronous=False)
            handled += 1
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from confluent_kafka import Consumer, KafkaError, KafkaException, Message

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


RETRIED_STATUSES = {408, 425, 429}


class Stopping:
    """Set by SIGINT/SIGTERM; the handler only sets a flag (no locks in signal handlers)."""

    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, *_: object) -> None:
        """The signal handler."""
        self.requested = True


def forward(
    event: dict[str, Any], url: str | None, client: httpx.Client, stopping: Stopping
) -> bool:
    """Sends the event on; True once it is done with, False if stopped before it was.

    Timeouts, network errors, 408/425/429 and 5xx are retried until the endpoint accepts the
    alert: none is dropped because your system was down. Any other 4xx means your endpoint
    refuses this alert for good: it is logged and skipped, since retrying cannot help.
    """
    if url is None:
        print(json.dumps(event), flush=True)
        return True
    delay = 1.0
    while not stopping.requested:
        try:
            response = client.post(url, json=event, headers={"Idempotency-Key": event["id"]})
        except httpx.TransportError as error:
            print(f"forward failed ({error}); retrying in {delay:.0f}s", file=sys.stderr)
        else:
            status = response.status_code
            if status < 400:
                return True
            if status < 500 and status not in RETRIED_STATUSES:
                print(
                    f"endpoint refused alert {event['id']} with HTTP {status}; skipped",
                    file=sys.stderr,
                )
                return True
            print(f"endpoint answered HTTP {status}; retrying in {delay:.0f}s", file=sys.stderr)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not stopping.requested:
            time.sleep(0.2)
        delay = min(delay * 2, 60)
    return False


def handle(
    message: Message,
    args: argparse.Namespace,
    validator: Any,
    client: httpx.Client,
    stopping: Stopping,
) -> bool:
    """Validates, filters and forwards one message; False if stopped before it was done."""
    value = message.value()
    if value is None:
        return True
    try:
        event = json.loads(value)
        validator.validate(event)
    except (ValueError, jsonschema.ValidationError) as error:
        print(f"skipping invalid alert at offset {message.offset()}: {error}", file=sys.stderr)
        return True
    if not wanted(event, args.min_severity):
        return True
    return forward(event, args.forward_to, client, stopping)


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
    stopping = Stopping()
    signal.signal(signal.SIGTERM, stopping.on_signal)
    signal.signal(signal.SIGINT, stopping.on_signal)
    consumer.subscribe(["alerts"])
    handled = 0
    with httpx.Client(timeout=10) as client:
        while not stopping.requested and (args.max_messages == 0 or handled < args.max_messages):
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            if not handle(message, args, validator, client, stopping):
                break  # not forwarded: left uncommitted, it comes again at the next start
            try:
                consumer.commit(message=message, asynchronous=False)
            except KafkaException as error:
                # The group moved on (a rebalance): the alert comes again; your endpoint
                # dedupes on its id.
                print(f"commit failed, the alert will be delivered again: {error}", file=sys.stderr)
            handled += 1
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Subscribe to the registry's `iocs` topic and keep a local indicator list (or a blocklist).

An example of an external subscriber: it imports nothing from this repository. It reads the
topic with its own consumer group, validates each event against the published JSON Schema
(schemas/json/iocs.schema.json), and writes the latest state of every indicator, keyed
`type:value`, as one JSON line per event (`--output`, default stdout). With `--blocklist FILE`
it also keeps a plain file of the IP indicators at or above `--min-confidence`. Offsets are
committed after the output is flushed: at-least-once, so dedupe on `data.id` (stable per
indicator) or on the event `id`.

    python examples/iocs_subscriber.py --bootstrap kafka:9092 --group my-intel \
        --min-confidence 70 --blocklist /etc/firewall/honeypot-ips.txt

Requirements: confluent-kafka, jsonschema (pip install confluent-kafka jsonschema).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import jsonschema
from confluent_kafka import Consumer, KafkaError, KafkaException, Message

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "json" / "iocs.schema.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--group", default="iocs-subscriber", help="your own consumer group")
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="iocs JSON Schema file")
    parser.add_argument("--output", type=Path, help="JSON lines file (default: stdout)")
    parser.add_argument("--blocklist", type=Path, help="keep the IPs in this file")
    parser.add_argument("--min-confidence", type=int, default=0)
    parser.add_argument("--max-messages", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument(
        "-X",
        dest="kafka_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting (repeatable)",
    )
    return parser.parse_args(argv)


class Stopping:
    """Set by SIGINT/SIGTERM; the handler only sets a flag."""

    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, *_: object) -> None:
        """The signal handler."""
        self.requested = True


class Indicators:
    """The latest state of every indicator seen, and the blocklist made from it."""

    def __init__(self, args: argparse.Namespace, output: TextIO) -> None:
        self.args = args
        self.output = output
        self.latest: dict[str, dict[str, Any]] = {}

    def add(self, event: dict[str, Any]) -> None:
        """Records one validated event."""
        data = event["data"]
        self.latest[f"{data['type']}:{data['value']}"] = data
        self.output.write(json.dumps(data, sort_keys=True) + "\n")

    def flush(self) -> None:
        """Flushes the output and rewrites the blocklist (atomically)."""
        self.output.flush()
        if self.args.blocklist is None:
            return
        ips = sorted(
            data["value"]
            for data in self.latest.values()
            if data["type"] == "ip" and data["confidence"] >= self.args.min_confidence
        )
        partial = self.args.blocklist.with_suffix(".partial")
        partial.write_text("".join(f"{ip}\n" for ip in ips))
        partial.replace(self.args.blocklist)


def handle(message: Message, validator: Any, indicators: Indicators) -> None:
    """Validates and records one message; an invalid one is reported and skipped."""
    value = message.value()
    if value is None:
        return
    try:
        event = json.loads(value)
        validator.validate(event)
    except (ValueError, jsonschema.ValidationError) as error:
        print(f"skipping invalid event at offset {message.offset()}: {error}", file=sys.stderr)
        return
    indicators.add(event)


def main(argv: list[str] | None = None) -> int:
    """Consumes `iocs` until interrupted (or --max-messages)."""
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
    consumer.subscribe(["iocs"])
    output = args.output.open("a") if args.output else sys.stdout
    indicators = Indicators(args, output)
    handled = 0
    while not stopping.requested and (args.max_messages == 0 or handled < args.max_messages):
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {message.error()}", file=sys.stderr)
            continue
        handle(message, validator, indicators)
        indicators.flush()
        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException as error:
            print(f"commit failed, the event will come again: {error}", file=sys.stderr)
        handled += 1
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

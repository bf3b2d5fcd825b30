"""Consumer runtime overhead: messages/s through `ConsumerRunner` with a no-op handler.

The same `bucket.status` events on the embedded broker are read twice, each time by a fresh
consumer group:

* bare: a confluent-kafka consumer that only fetches (no decoding, no commits): the
  broker's own consume rate, the ceiling;
* runtime: `ConsumerRunner` with a handler that does nothing: fetching, validating every
  event (pydantic), the hand-off to worker threads per partition, and the commits.

Group join is not timed: each clock starts at the first message and stops when the last one
was read (bare) or committed (runtime). Goal: the runtime keeps at least half the bare rate.
A third read validates each event without the runner: validation alone (pydantic, about
20 us an event) caps any consumer that hands out checked events far below the bare rate, so
the runner's own cost (threads, locks, commits) is the ratio against that read.

    uv run python -m bench consumer [--quick]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer
from prometheus_client import REGISTRY

from bench.figures import Figure
from rbr_runtime.kafka import ConsumerRunner, EventProducer, Inbound, encode
from rbr_runtime.kafka.messages import Record, decode_record
from rbr_runtime.kafka.producer import OutgoingMessage
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_STATUS, BucketStatus
from rbr_testing.broker import Broker

GOAL_RATIO = 0.5
DEADLINE = 300.0


def _fill(settings: CommonSettings, count: int) -> None:
    producer = EventProducer(settings, source="/rbr/bench")
    chunk: list[OutgoingMessage] = []
    for n in range(count):
        name = f"bucket-{n % 500}"
        data = BucketStatus(
            bucket_id=f"id-{name}",
            name=name,
            polled_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
            reachable=True,
            latency_ms=float(n),
        )
        value = encode(producer.event(BUCKET_STATUS, data, subject=name))
        chunk.append(OutgoingMessage(BUCKET_STATUS.name, name, value))
        if len(chunk) == 2000:
            producer.send_messages(chunk)
            chunk = []
    producer.send_messages(chunk)
    producer.flush()


def _bare(settings: CommonSettings, count: int, *, validate: bool = False) -> float:
    """Returns messages/s read by a plain consumer, first message to last.

    With `validate`, each message is also validated as the runner does (no threads, no
    commits): what any consumer that hands out checked events pays at least.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-bare-{validate}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": settings.kafka_session_timeout_ms,
            "log_level": 0,
        }
    )
    consumer.subscribe([BUCKET_STATUS.name])
    read = 0
    started: float | None = None
    deadline = time.monotonic() + DEADLINE
    try:
        while read < count and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(500, 1.0) if m.error() is None]
            if messages and started is None:
                started = time.monotonic()
            read += len(messages)
            for message in messages if validate else []:
                decode_record(Record.from_message(message), BUCKET_STATUS)
        elapsed = time.monotonic() - (started or time.monotonic())
    finally:
        consumer.close()
    if read < count:
        raise RuntimeError(f"bare consumer read {read} of {count} messages")
    return count / elapsed


def _processed(group: str) -> float:
    labels = {"group": group, "topic": BUCKET_STATUS.name}
    return REGISTRY.get_sample_value("rbr_messages_processed_total", labels) or 0.0


def _runtime(settings: CommonSettings, count: int, group: str = "bench-runtime") -> float:
    """Returns messages/s through the runner with a no-op handler, first call to last commit."""
    started: list[float] = []

    def no_op(batch: Sequence[Inbound[Any]]) -> None:
        if not started:
            started.append(time.monotonic())

    producer = EventProducer(settings, source="/rbr/bench")
    runner = ConsumerRunner(
        settings, group_id=group, topics=[BUCKET_STATUS], handler=no_op, producer=producer
    )
    before = _processed(group)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while _processed(group) - before < count and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = time.monotonic()
    finally:
        runner.stop()
        thread.join(30)
    done = _processed(group) - before
    if done < count or not started:
        raise RuntimeError(f"the runner committed {done:.0f} of {count} messages")
    return count / (finished - started[0])


def run(quick: bool) -> list[Figure]:
    """Measures the bare and the runtime consume rates on one broker, same messages."""
    count = 20_000 if quick else 100_000
    broker = Broker()
    broker.start()
    try:
        settings = CommonSettings(
            kafka_bootstrap=broker.bootstrap, kafka_session_timeout_ms=2000, log_level="WARNING"
        )
        _fill(settings, count)
        bare = _bare(settings, count)
        validated = _bare(settings, count, validate=True)
        runtime = _runtime(settings, count)
    finally:
        broker.stop()
    return [
        Figure("consumer: bare confluent-kafka consume rate", bare, "msgs/s", note=f"{count}"),
        Figure("consumer: bare, each event validated", validated, "msgs/s"),
        Figure(
            "consumer: ConsumerRunner, no-op handler",
            runtime,
            "msgs/s",
            note="validated, handed to workers, committed",
        ),
        Figure(
            "consumer: runtime / bare",
            runtime / bare,
            "ratio",
            goal=f">= {GOAL_RATIO}",
            met=runtime / bare >= GOAL_RATIO,
            note=f"{runtime / bare:.3f}",
        ),
        Figure(
            "consumer: runtime / bare validated (the runner's own cost)",
            runtime / validated,
            "ratio",
            goal=f">= {GOAL_RATIO}",
            met=runtime / validated >= GOAL_RATIO,
            note=f"{runtime / validated:.3f}",
        ),
    ]

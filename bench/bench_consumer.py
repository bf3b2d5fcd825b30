"""Consumer runtime overhead: messages/s through `ConsumerRunner` with a no-op handler.

The same `bucket.status` events on the embedded broker are read by fresh consumer groups:

* bare: a confluent-kafka consumer that only fetches (no decoding, no commits): the
  broker's own consume rate, the ceiling;
* runtime: `ConsumerRunner` with a handler that does nothing: fetching, wrapping each
  message, the hand-off to worker threads per partition, and the commits. Events are
  validated when a handler reads them, so a no-op handler pays for none;
* and, for what validation costs, both again reading every event: the bare consumer
  validating each, the runner with a handler that reads each `data`.

Group join is not timed: each clock starts at the first message and stops when the last one
was read (bare) or committed (runtime). Each read is done twice and the faster kept (the
machine is shared). Goal: the runtime keeps at least half the bare rate.

    uv run python -m bench consumer [--quick]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer

from bench.figures import Figure
from rbr_runtime.kafka import ConsumerRunner, EventProducer, Inbound, decode, encode
from rbr_runtime.kafka.consumer import MESSAGES_PROCESSED
from rbr_runtime.kafka.producer import OutgoingMessage
from rbr_runtime.service import settle_garbage_collector
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


def _bare(settings: CommonSettings, count: int, *, group: str, validate: bool = False) -> float:
    """Returns messages/s read by a plain consumer, first message to last.

    With `validate`, each message is also validated as the runner does (no threads, no
    commits): what any consumer that hands out checked events pays at least.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
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
                decode(BUCKET_STATUS, message.value() or b"")
        elapsed = time.monotonic() - (started or time.monotonic())
    finally:
        consumer.close()
    if read < count:
        raise RuntimeError(f"bare consumer read {read} of {count} messages")
    return count / elapsed


def _processed(group: str) -> float:
    # Only this counter's samples: REGISTRY.get_sample_value collects every metric of the
    # process (reading /proc among others), which would take the runner's CPU while it waits.
    labels = {"group": group, "topic": BUCKET_STATUS.name}
    samples = next(iter(MESSAGES_PROCESSED.collect())).samples
    return next((s.value for s in samples if s.name.endswith("_total") and s.labels == labels), 0.0)


def _runtime(
    settings: CommonSettings, count: int, group: str, *, read_events: bool = False
) -> float:
    """Returns messages/s through the runner, first handler call to last commit.

    With `read_events`, the handler reads each message's data (validating it); otherwise it
    does nothing.
    """
    started: list[float] = []

    def handle(batch: Sequence[Inbound[Any]]) -> None:
        if not started:
            started.append(time.monotonic())
        for message in batch if read_events else ():
            message.data  # noqa: B018 - reading it validates it

    producer = EventProducer(settings, source="/rbr/bench")
    runner = ConsumerRunner(
        settings, group_id=group, topics=[BUCKET_STATUS], handler=handle, producer=producer
    )
    before = _processed(group)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while _processed(group) - before < count and time.monotonic() < deadline:
            time.sleep(0.005)
        finished = time.monotonic()
    finally:
        runner.stop()
        thread.join(30)
    done = _processed(group) - before
    if done < count or not started:
        raise RuntimeError(f"the runner committed {done:.0f} of {count} messages")
    return count / (finished - started[0])


def _ratio(name: str, runtime: float, bare: float, *, goal: bool) -> Figure:
    ratio = runtime / bare
    if not goal:
        return Figure(name, ratio, "ratio", note=f"{ratio:.3f}")
    return Figure(
        name,
        ratio,
        "ratio",
        goal=f">= {GOAL_RATIO}",
        met=ratio >= GOAL_RATIO,
        note=f"{ratio:.3f}",
    )


def run(quick: bool) -> list[Figure]:
    """Measures the bare and the runtime consume rates on one broker, same messages."""
    count = 50_000 if quick else 200_000
    broker = Broker()
    broker.start()
    try:
        settings = CommonSettings(
            kafka_bootstrap=broker.bootstrap, kafka_session_timeout_ms=2000, log_level="WARNING"
        )
        _fill(settings, count)
        settle_garbage_collector()  # as a service process does once started
        bare = max(_bare(settings, count, group=f"bench-bare-{n}") for n in range(2))
        runtime = max(_runtime(settings, count, f"bench-runtime-{n}") for n in range(2))
        validated = _bare(settings, count, group="bench-bare-validating", validate=True)
        reading = _runtime(settings, count, "bench-runtime-reading", read_events=True)
    finally:
        broker.stop()
    return [
        Figure("consumer: bare confluent-kafka consume rate", bare, "msgs/s", note=f"{count}"),
        Figure(
            "consumer: ConsumerRunner, no-op handler",
            runtime,
            "msgs/s",
            note="wrapped, handed to workers, committed",
        ),
        _ratio("consumer: runtime / bare", runtime, bare, goal=True),
        Figure("consumer: bare, each event validated", validated, "msgs/s"),
        Figure("consumer: ConsumerRunner, handler reading each event", reading, "msgs/s"),
        _ratio("consumer: both reading each event, runtime / bare", reading, validated, goal=False),
    ]

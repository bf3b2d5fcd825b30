"""Consumer-group offset operations (replay) against the real broker, and their rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from rbr_runtime.kafka.admin import (
    GroupActivity,
    GroupOffsets,
    PartitionMove,
    ReplayError,
    ReplayStart,
)
from rbr_runtime.settings import CommonSettings
from rbr_testing.broker import Broker

TOPIC = "alerts"
BASE_MS = 1_790_000_000_000


def test_plan_by_time_on_the_embedded_broker(broker: Broker) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(6):  # partition 0: timestamps 0, 10, 20, 30, 40, 50 s after BASE_MS
        producer.produce(TOPIC, value=b"{}", partition=0, timestamp=BASE_MS + i * 10_000)
    producer.flush(10)
    offsets = GroupOffsets(CommonSettings(kafka_bootstrap=broker.bootstrap), "notifier", TOPIC)

    def target(moment_ms: int) -> int:
        start = ReplayStart(time=datetime.fromtimestamp(moment_ms / 1000, UTC))
        return offsets.plan(start, partition=0)[0].target

    assert target(BASE_MS - 1) == 0
    assert target(BASE_MS + 25_000) == 3
    assert target(BASE_MS + 50_000) == 5
    assert target(BASE_MS + 60_000) == 6  # after every message: nothing to reprocess
    [beginning] = offsets.plan(ReplayStart(beginning=True), partition=0)
    assert (beginning.low, beginning.high, beginning.committed) == (0, 6, None)
    [empty] = offsets.plan(ReplayStart(beginning=True), partition=1)
    assert (empty.target, empty.to_reprocess, empty.changes) == (0, 0, False)
    with pytest.raises(ReplayError, match="has no partition 99"):
        offsets.plan(ReplayStart(beginning=True), partition=99)
    with pytest.raises(ReplayError, match="does not exist"):
        GroupOffsets(CommonSettings(kafka_bootstrap=broker.bootstrap), "g", "nope").plan(
            ReplayStart(beginning=True)
        )


def test_moves_and_activity_rules() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ReplayStart(beginning=True, offset=3)
    with pytest.raises(ValueError, match="timezone"):
        ReplayStart(time=datetime(2026, 1, 1))
    back = PartitionMove(partition=2, committed=40, target=10, low=0, high=50)
    assert (back.to_reprocess, back.changes) == (40, True)
    assert back.describe().startswith("partition 2: 40 -> 10 (40 message(s) to process")
    forward = PartitionMove(partition=0, committed=5, target=9, low=0, high=10)
    assert "FORWARD, skipping 4" in forward.describe()
    assert GroupActivity(0, "EMPTY").active is False
    assert GroupActivity(0, "STABLE").active is True  # brokers that list no members
    assert GroupActivity(2, "STABLE").describe() == "has 2 active member(s)"

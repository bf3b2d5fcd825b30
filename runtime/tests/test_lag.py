"""Consumer lag of every group, from each group's committed offsets to the partitions' ends."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.lag import all_groups_lag
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, BUCKET_STATUS, Alert, AlertState, Severity, utcnow
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_topic


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"a-{n}",
        dedupe_key=f"k-{n}",
        type="test",
        severity=Severity.LOW,
        state=AlertState.FIRING,
        title=f"alert {n}",
        source="/rbr/test",
        occurred_at=utcnow(),
    )


def commit_after(broker: Broker, group: str, topic: str, consumed: int) -> None:
    """Commits, for a group, the offsets past the topic's first `consumed` messages."""
    messages = read_topic(broker.bootstrap, topic, at_least=consumed)[:consumed]
    offsets: dict[int, int] = {}
    for message in messages:
        partition = message.partition() or 0
        offsets[partition] = max(offsets.get(partition, 0), (message.offset() or 0) + 1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )
    consumer.close()


def test_every_group_s_lag_on_the_topics_it_committed_on(broker: Broker) -> None:
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
    producer = EventProducer(settings, source="/t")
    for n in range(6):
        producer.send(ALERTS, "one-key", alert(n))  # one key: one partition, in order
    commit_after(broker, "behind", ALERTS.name, consumed=2)
    commit_after(broker, "caught-up", ALERTS.name, consumed=6)

    lags = all_groups_lag(settings, [ALERTS.name, BUCKET_STATUS.name], timeout=30)

    behind = {(lag.group, lag.topic): 0 for lag in lags}
    for lag in lags:
        behind[(lag.group, lag.topic)] += lag.lag
        assert not lag.capped
    assert behind == {("behind", ALERTS.name): 4, ("caught-up", ALERTS.name): 0}

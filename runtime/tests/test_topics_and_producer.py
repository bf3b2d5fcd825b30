"""Topic bootstrap and confirmed delivery against the real broker."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka import DeliveryError, EventProducer
from rbr_runtime.kafka.topics import TopicOutcome, ensure_topics, planned_topics
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, TOPICS, Alert, AlertState, Severity, utcnow
from rbr_schemas.generate import SCHEMAS_DIR
from rbr_testing.broker import Broker
from rbr_testing.cloudevents_sdk import sdk_event
from rbr_testing.kafka import read_events, read_topic

pytestmark = pytest.mark.broker


def test_every_topic_and_dlq_is_created_once_with_its_partitions() -> None:
    broker = Broker()
    broker.start(create_topics=False)
    try:
        settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
        first = ensure_topics(settings)
        second = ensure_topics(settings)
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    finally:
        broker.stop()

    assert {r.outcome for r in first} == {TopicOutcome.CREATED}
    assert {r.outcome for r in second} == {TopicOutcome.EXISTS}
    for plan in planned_topics():
        assert len(metadata.topics[plan.name].partitions) == plan.partitions
    assert {spec.dlq for spec in TOPICS} <= set(metadata.topics)


def test_send_returns_once_the_event_is_on_the_topic(broker: Broker) -> None:
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
    producer = EventProducer(settings, source="/rbr/test")
    alert = Alert(
        alert_id="a-1",
        dedupe_key="bucket_unresponsive:rustbucket-a",
        type="bucket_unresponsive",
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        bucket="rustbucket-a",
        title="rustbucket-a is not answering",
        source="/rbr/test",
        occurred_at=utcnow(),
    )
    event = producer.send(ALERTS, alert.dedupe_key, alert, subject="rustbucket-a")

    events = read_events(broker.bootstrap, ALERTS, at_least=1)
    assert [e.id for e in events] == [event.id]
    assert events[0].data == alert
    assert events[0].source == "/rbr/test"


def test_send_raises_when_the_broker_is_down(broker: Broker) -> None:
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_message_timeout_ms=1500)
    producer = EventProducer(settings, source="/rbr/test")
    broker.stop()
    alert = Alert(
        alert_id="a-2",
        dedupe_key="k",
        type="test",
        severity=Severity.INFO,
        state=AlertState.FIRING,
        title="t",
        source="/rbr/test",
        occurred_at=utcnow(),
    )
    with pytest.raises(DeliveryError):
        producer.send(ALERTS, "k", alert)
    assert "cannot publish" in (producer.readiness() or "")


def test_a_producer_broken_for_good_is_replaced_and_the_retry_succeeds(broker: Broker) -> None:
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/t")
    alert = Alert(
        alert_id="a-3",
        dedupe_key="k",
        type="test",
        severity=Severity.INFO,
        state=AlertState.FIRING,
        title="t",
        source="/rbr/t",
        occurred_at=utcnow(),
    )
    producer.send(ALERTS, "k", alert)
    assert producer.readiness() is None
    # A closed librdkafka producer never produces again (as after a fatal error).
    producer._producer.close()  # breaking the client is the point
    with pytest.raises(DeliveryError) as raised:
        producer.send(ALERTS, "k", alert)
    assert raised.value.fatal
    assert "cannot publish" in (producer.readiness() or "")
    again = producer.send(ALERTS, "k", alert)
    assert producer.readiness() is None
    assert again.id in [e.id for e in read_events(broker.bootstrap, ALERTS, at_least=2)]


def test_every_topic_event_sent_is_read_by_the_cloudevents_sdk(broker: Broker) -> None:
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/test")
    for spec in TOPICS:
        example = json.loads((SCHEMAS_DIR / "examples" / f"{spec.name}.json").read_text())
        data = spec.data_model.model_validate(example["data"])
        # With a subject, and without one (as the analyst's daily summary is sent).
        about = producer.send(spec, "rustbucket-a1B2c3D4", data, subject="rustbucket-a1B2c3D4")
        about_no_one = producer.send(spec, "summary", data)

        messages = read_topic(broker.bootstrap, spec.name, at_least=2)
        read = {
            event.get_id(): event
            for event in (sdk_event(m.value(), m.key(), m.headers()) for m in messages)
        }
        assert read[about.id].get_subject() == "rustbucket-a1B2c3D4"
        assert read[about_no_one.id].get_subject() is None
        assert read[about_no_one.id].get_type() == spec.event_type
        assert read[about_no_one.id].get_data() == json.loads(data.model_dump_json())

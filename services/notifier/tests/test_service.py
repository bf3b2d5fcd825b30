"""The whole notifier against the real broker and MariaDB: produced alerts reach the receivers,
an unreachable channel sends the alert to `alerts.dlq`, offsets are committed.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message
from sqlalchemy import Engine, select

from rbr_notifier.config import parse_channels
from rbr_notifier.main import build_service
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.db.tables import alerts, notifications
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS, Alert, DeadLetterHeaders
from rbr_testing.broker import Broker
from rbr_testing.http_receiver import HttpReceiver, Reply
from rbr_testing.kafka import committed_offsets, read_topic
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.mariadb]


def test_alerts_flow_from_the_topic_to_the_channels_and_failures_to_the_dlq(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ops = http_receiver_factory()
    siem = http_receiver_factory(Reply(503, b"maintenance"))
    channels = parse_channels(
        {
            "channels": [
                {"name": "ops", "type": "webhook", "url": f"{ops.url}/ops-SECRETPATH"},
                {
                    "name": "siem",
                    "type": "webhook",
                    "url": f"{siem.url}/siem-SECRETPATH",
                    "filters": {"types": ["analysis_finding"]},
                    "retry": False,  # no retry schedule: dead-lettered after the tries in a row
                },
            ]
        }
    )
    settings = NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.1,
        database_url=mysql_database_url,
        http_port=0,
        notifier_max_attempts=3,
        notifier_retry_initial_backoff=0.05,
        notifier_retry_max_backoff=0.1,
        notifier_digest_interval=0.5,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
    )
    producer = EventProducer(settings, source="/rbr/poller")
    unresponsive = make_alert("bucket_unresponsive:rustbucket-a1")
    recovered = make_alert("bucket_unresponsive:rustbucket-a1", state="resolved")
    finding = make_alert(
        "analysis:rustbucket-a1:download", type="analysis_finding", severity="critical"
    )
    service = build_service(settings, channels=channels)

    with running(service):
        producer.send(ALERTS, unresponsive.dedupe_key, unresponsive)
        (trigger,) = ops.wait_for_requests(1)
        producer.send(ALERTS, recovered.dedupe_key, recovered)
        producer.send(ALERTS, finding.dedupe_key, finding)
        ops.wait_for_requests(3)
        (dead,) = read_topic(broker.bootstrap, ALERTS.dlq, at_least=1)
        wait_for(
            lambda: sum(committed_offsets(broker.bootstrap, "notifier", ALERTS.name).values()) == 3,
            message="all three alerts committed",
        )
        metrics = _get(f"http://127.0.0.1:{service.health_port}/metrics")

    assert trigger.json()["alert"]["dedupe_key"] == "bucket_unresponsive:rustbucket-a1"
    seen = [(r.json()["alert"]["dedupe_key"], r.json()["kind"]) for r in ops.requests]
    # Ordered per dedupe key (the Kafka key); different keys may interleave.
    assert [kind for key, kind in seen if key == unresponsive.dedupe_key] == ["trigger", "resolve"]
    assert [kind for key, kind in seen if key == finding.dedupe_key] == ["trigger"]
    assert len(siem.requests) == 3
    _assert_dead_letter(dead, finding)
    with mysql_engine.connect() as connection:
        states = dict(connection.execute(select(alerts.c.dedupe_key, alerts.c.state)).all())
        siem_attempts = (
            connection.execute(
                select(notifications.c.status).where(notifications.c.channel == "siem")
            )
            .scalars()
            .all()
        )
    assert states == {unresponsive.dedupe_key: "resolved", finding.dedupe_key: "firing"}
    assert siem_attempts == ["retrying", "retrying", "failed"]
    assert 'rbr_notifier_deliveries_total{channel="siem",kind="trigger",state="failed"}' in metrics
    assert "SECRETPATH" not in caplog.text


def _assert_dead_letter(message: Message, finding: Alert) -> None:
    headers = DeadLetterHeaders.from_kafka(message.headers() or [])
    assert headers.source_topic == ALERTS.name
    assert headers.consumer_group == "notifier"
    assert "channel siem (webhook)" in headers.error
    assert "HTTP 503" in headers.error
    assert "SECRETPATH" not in headers.error
    assert "127.0.0.1" not in headers.error
    value: Any = message.value()
    assert finding.dedupe_key.encode() == message.key()
    assert b'"analysis_finding"' in value


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def test_a_channel_that_refuses_everything_never_stops_delivery_to_the_others(
    broker: Broker,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
) -> None:
    """A revoked Slack webhook (404) must not trip the consumer's dead-letter cap."""
    healthy = http_receiver_factory()
    revoked = http_receiver_factory(Reply(404, b"no_service"))
    channels = parse_channels(
        {
            "channels": [
                {"name": "ops", "type": "webhook", "url": f"{healthy.url}/ops", "throttle": False},
                {"name": "chat", "type": "slack", "url": f"{revoked.url}/hook", "throttle": False},
            ]
        }
    )
    settings = NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.1,
        consumer_batch_size=10,
        database_url=mysql_database_url,
        http_port=0,
        dlq_max_consecutive=5,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
    )
    producer = EventProducer(settings, source="/rbr/poller")
    sent = [make_alert(f"bucket_unresponsive:rustbucket-{n:02d}") for n in range(30)]
    for alert in sent:
        producer.send(ALERTS, alert.dedupe_key, alert)
    service = build_service(settings, channels=channels)

    with running(service) as handle:
        healthy.wait_for_requests(30, timeout=60)
        wait_for(
            lambda: (
                sum(committed_offsets(broker.bootstrap, "notifier", ALERTS.name).values()) == 30
            ),
            timeout=60,
            message="every alert committed",
        )
        assert handle.exit_code is None, "the notifier stopped"
        dead = read_topic(broker.bootstrap, ALERTS.dlq, at_least=30)

    delivered = {r.json()["alert"]["dedupe_key"] for r in healthy.requests}
    assert delivered == {a.dedupe_key for a in sent}
    assert sorted(m.key() for m in dead) == sorted(a.dedupe_key.encode() for a in sent)
    assert all(
        "channel chat (slack)" in DeadLetterHeaders.from_kafka(m.headers() or []).error
        for m in dead
    )

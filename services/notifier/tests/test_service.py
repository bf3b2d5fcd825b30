"""The whole notifier against the real broker and MariaDB: produced alerts reach the receivers,
a channel that is down is retried on its schedule without holding anything up, a channel that
refuses (or whose schedule ran out) sends the alert to `alerts.dlq`, offsets are committed.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Message
from sqlalchemy import Engine, func, select

from rbr_notifier.channels import parse_channels
from rbr_notifier.main import build_service
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.db.tables import alerts, notifications, notifier_deliveries
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.dead_letters import replay_dead_letters
from rbr_schemas import ALERTS, Alert, DeadLetterHeaders, utcnow
from rbr_testing.broker import Broker
from rbr_testing.http_receiver import HttpReceiver, Reply
from rbr_testing.kafka import committed_offsets, read_topic
from rbr_testing.services import running
from rbr_testing.tcp_proxy import TcpProxyFactory
from rbr_testing.waiting import wait_for

from .conftest import T0

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
    # Batches of up to 10, each with rejections: the rejected alerts are dead-lettered
    # without their batch being run again, so each costs the refusing channel one try.
    assert len(revoked.requests) == 30
    assert sorted(m.key() for m in dead) == sorted(a.dedupe_key.encode() for a in sent)
    assert all(
        "channel chat (slack)" in DeadLetterHeaders.from_kafka(m.headers() or []).error
        for m in dead
    )


def test_a_delivery_slower_than_the_poll_interval_keeps_the_member_and_is_sent_once(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A channel that is slow to answer, and retried, holds its batch past max.poll.interval.ms.

    Deliveries run off the poll thread: the member keeps its place in the group (no second
    assignment), the alert is delivered once, committed once, and nothing is dead-lettered.
    """
    caplog.set_level(logging.INFO, logger="rbr_runtime.kafka.consumer")
    interval_ms = 3000
    ops = http_receiver_factory(Reply(200, delay=2 * interval_ms / 1000 + 1))
    ops.enqueue(Reply(503, b"busy"))  # the first try fails, the retry answers slowly
    channels = parse_channels(
        {"channels": [{"name": "ops", "type": "webhook", "url": f"{ops.url}/ops"}]}
    )
    settings = NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_max_poll_interval_ms=interval_ms,
        consumer_batch_wait=0.1,
        database_url=mysql_database_url,
        http_port=0,
        notifier_timeout=30,
        notifier_retry_initial_backoff=0.05,
        notifier_retry_max_backoff=0.1,
        notifier_throttle_max=0,
    )
    producer = EventProducer(settings, source="/rbr/poller")
    finding = make_alert("analysis:rustbucket-a1:download", type="analysis_finding")

    with running(build_service(settings, channels=channels)):
        producer.send(ALERTS, finding.dedupe_key, finding)
        ops.wait_for_requests(2)
        since = time.monotonic()
        wait_for(
            lambda: time.monotonic() - since > 2 * interval_ms / 1000,
            message="the delivery held past twice max.poll.interval.ms",
        )
        assert _committed(broker) == 0, "committed before the delivery ended"
        wait_for(lambda: _committed(broker) == 1, message="the alert committed")

    assert _received(ops) == [(finding.dedupe_key, "trigger")] * 2  # the 503, then the retry
    assigned = [r for r in caplog.records if r.getMessage() == "partitions assigned"]
    assert len(assigned) == 1, "the member was evicted and rejoined while delivering"
    assert read_topic(broker.bootstrap, ALERTS.dlq) == []
    with mysql_engine.connect() as connection:
        delivery = connection.execute(select(notifier_deliveries)).one()
    assert (delivery.state, delivery.attempts) == ("sent", 2)


# The notifier used to give up on a channel after 5 tries over about 20 s.
OLD_RETRY_WINDOW = timedelta(seconds=25)


def _settings(broker: Broker, database_url: str) -> NotifierSettings:
    """Tries in a row a fraction of a second apart, retries checked five times a second."""
    return NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.1,
        database_url=database_url,
        http_port=0,
        notifier_max_attempts=2,
        notifier_retry_initial_backoff=0.05,
        notifier_retry_max_backoff=0.1,
        notifier_retry_sweep_interval=0.2,
        notifier_throttle_max=0,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
    )


def _committed(broker: Broker) -> int:
    return sum(committed_offsets(broker.bootstrap, "notifier", ALERTS.name).values())


def _waiting(engine: Engine) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            select(func.count()).where(notifier_deliveries.c.state == "waiting")
        ).scalar_one()
    return count


def _down_for(engine: Engine, channel: str) -> timedelta:
    """Returns how long ago the channel's first try failed (zero before any)."""
    with engine.connect() as connection:
        first = connection.execute(
            select(func.min(notifications.c.created_at)).where(
                notifications.c.channel == channel, notifications.c.status != "sent"
            )
        ).scalar_one()
    return utcnow() - first if first is not None else timedelta(0)


def _metrics_when(port: int, line: str) -> str | None:
    """Returns the metrics page if it holds the line, else None."""
    page = _get(f"http://127.0.0.1:{port}/metrics")
    return page if f"rbr_notifier_{line}" in page else None


def _received(receiver: HttpReceiver) -> list[tuple[str, str]]:
    return [(r.json()["alert"]["dedupe_key"], r.json()["kind"]) for r in receiver.requests]


def test_alerts_fired_while_a_receiver_is_down_arrive_exactly_once_with_no_command_run(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    tcp_proxy_factory: TcpProxyFactory,
    make_alert: Callable[..., Alert],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ops, chat = http_receiver_factory(), http_receiver_factory()
    outage = tcp_proxy_factory("127.0.0.1", int(ops.url.rsplit(":", 1)[1]))
    channels = parse_channels(
        {
            "channels": [
                {
                    "name": "ops",
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{outage.port}/ops-SECRETPATH",
                    "retry": {"initial": 1, "max_interval": 3, "max_age": "10m"},
                },
                {"name": "chat", "type": "webhook", "url": f"{chat.url}/chat"},
            ]
        }
    )
    settings = _settings(broker, mysql_database_url)
    producer = EventProducer(settings, source="/rbr/poller")
    fired = [make_alert(f"bucket_unresponsive:rustbucket-{n:02d}") for n in range(10)]
    recovered = make_alert(fired[0].dedupe_key, state="resolved", occurred_at=T0 + timedelta(1))
    service = build_service(settings, channels=channels)

    outage.cut()
    with running(service):
        for alert in fired:
            producer.send(ALERTS, alert.dedupe_key, alert)
        # Nothing is held up: every offset is committed, the other channel hears everything.
        wait_for(lambda: _committed(broker) == 10, message="the firings committed")
        producer.send(ALERTS, recovered.dedupe_key, recovered)
        wait_for(lambda: _committed(broker) == 11, message="the resolve committed")
        chat.wait_for_requests(11)
        wait_for(
            lambda: _down_for(mysql_engine, "ops") > OLD_RETRY_WINDOW,
            timeout=60,
            message="the outage to outlast the old retry window",
        )
        during = _get(f"http://127.0.0.1:{service.health_port}/metrics")
        outage.restore()
        ops.wait_for_requests(11, timeout=30)
        after = wait_for(
            lambda: _metrics_when(service.health_port, 'pending_deliveries{channel="ops"} 0.0'),
            message="nothing waiting any more",
        )

    received = _received(ops)
    assert sorted(received) == sorted(
        [(a.dedupe_key, "trigger") for a in fired] + [(recovered.dedupe_key, "resolve")]
    )
    assert [kind for key, kind in received if key == recovered.dedupe_key] == [
        "trigger",
        "resolve",
    ]
    assert _received(chat).count((recovered.dedupe_key, "resolve")) == 1
    assert read_topic(broker.bootstrap, ALERTS.dlq) == []
    assert 'rbr_notifier_pending_deliveries{channel="ops"} 11.0' in during
    assert 'rbr_notifier_retries_total{channel="ops",result="waiting"}' in during
    assert 'rbr_notifier_retries_total{channel="ops",result="sent"}' in after
    assert "SECRETPATH" not in caplog.text


def test_a_notifier_restarted_while_deliveries_wait_loses_none(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    tcp_proxy_factory: TcpProxyFactory,
    make_alert: Callable[..., Alert],
) -> None:
    ops = http_receiver_factory()
    outage = tcp_proxy_factory("127.0.0.1", int(ops.url.rsplit(":", 1)[1]))
    channels = parse_channels(
        {
            "channels": [
                {
                    "name": "ops",
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{outage.port}/ops",
                    "retry": {"initial": 1, "max_interval": 2},
                }
            ]
        }
    )
    settings = _settings(broker, mysql_database_url)
    producer = EventProducer(settings, source="/rbr/poller")
    fired = [make_alert(f"analysis:rustbucket-a1:finding-{n}") for n in range(3)]

    outage.cut()
    with running(build_service(settings, channels=channels)):
        for alert in fired:
            producer.send(ALERTS, alert.dedupe_key, alert)
        wait_for(lambda: _committed(broker) == 3, message="the firings committed")
        wait_for(lambda: _waiting(mysql_engine) == 3, message="the deliveries waiting")
    # Stopped mid-wait; the channel comes back while the notifier is down.
    outage.restore()
    with running(build_service(settings, channels=channels)):
        ops.wait_for_requests(3)
        wait_for(lambda: _waiting(mysql_engine) == 0, message="nothing waiting any more")

    assert sorted(_received(ops)) == sorted((a.dedupe_key, "trigger") for a in fired)


def test_a_channel_down_past_its_retry_schedule_dead_letters_the_alert_for_a_replay(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
) -> None:
    ops = http_receiver_factory(Reply(503, b"maintenance"))
    channels = parse_channels(
        {
            "channels": [
                {
                    "name": "ops",
                    "type": "webhook",
                    "url": f"{ops.url}/ops-SECRETPATH",
                    "retry": {"initial": 0.5, "max_interval": 1, "max_age": 3},
                }
            ]
        }
    )
    settings = _settings(broker, mysql_database_url)
    producer = EventProducer(settings, source="/rbr/poller")
    finding = make_alert("analysis:rustbucket-a1:download", type="analysis_finding")

    with running(build_service(settings, channels=channels)):
        producer.send(ALERTS, finding.dedupe_key, finding)
        wait_for(lambda: _committed(broker) == 1, message="the firing committed")
        (dead,) = read_topic(broker.bootstrap, ALERTS.dlq, at_least=1, timeout=30)
        tries = len(ops.requests)
        ops.respond(Reply(200))
        report = replay_dead_letters(settings, ALERTS.dlq)  # `rbr dlq replay alerts`
        wait_for(lambda: len(ops.requests) > tries, message="the replayed alert delivered")
        wait_for(lambda: _committed(broker) == 2, message="the replay committed")

    headers = DeadLetterHeaders.from_kafka(dead.headers() or [])
    assert (headers.source_topic, headers.consumer_group) == (ALERTS.name, "notifier")
    assert headers.error_class == "rejected"
    assert headers.error.startswith("channel ops (webhook): gave up after ")
    assert headers.error.endswith("last: HTTP 503: maintenance")
    assert "SECRETPATH" not in headers.error
    assert dead.key() == finding.dedupe_key.encode()
    value: Any = dead.value()
    assert finding.alert_id.encode() in value
    assert report.replayed == 1
    assert len(ops.requests) == tries + 1
    with mysql_engine.connect() as connection:
        assert connection.execute(select(notifier_deliveries.c.state)).scalars().all() == ["sent"]

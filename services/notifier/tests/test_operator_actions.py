"""Operator actions the notifier applies, end to end: the registrar's operator API queues them
on `alerts`, the notifier (running whole on the real broker and MariaDB) carries them out.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

from rbr_notifier.channels import parse_channels
from rbr_notifier.main import build_service
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.db.tables import alerts
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS, Alert
from rbr_testing.broker import Broker
from rbr_testing.http_receiver import HttpReceiver
from rbr_testing.registry import RegistrarFactory
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.mariadb]


def test_a_channel_test_reaches_that_channel_only_and_a_resolve_closes_the_alert(
    broker: Broker,
    mysql_engine: Engine,
    mysql_database_url: str,
    registrar_factory: RegistrarFactory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
) -> None:
    ops, pager = http_receiver_factory(), http_receiver_factory()
    channels = parse_channels(
        {
            "channels": [
                {"name": "ops", "type": "webhook", "url": f"{ops.url}/ops"},
                {"name": "pager", "type": "webhook", "url": f"{pager.url}/pager"},
            ]
        }
    )
    settings = NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.1,
        database_url=mysql_database_url,
        http_port=0,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
    )
    registrar = registrar_factory()
    down = make_alert("bucket_unresponsive:rustbucket-a1")
    with running(build_service(settings, channels=channels)), registrar.operator() as api:
        EventProducer(settings, source="/rbr/poller").send(ALERTS, down.dedupe_key, down)
        ops.wait_for_requests(1)
        pager.wait_for_requests(1)

        test_id = api.post("/api/v1/channels/pager/test").json()["alert_id"]
        (test_request,) = pager.wait_for_requests(2)[1:]

        def delivered() -> list[tuple[str, str]] | None:
            answer = api.get(f"/api/v1/alerts/{test_id}")
            if answer.status_code != 200:
                return None
            found = [(d["channel"], d["state"]) for d in answer.json()["deliveries"]]
            return found if found and all(state == "sent" for _, state in found) else None

        assert wait_for(delivered, message="the test's delivery recorded") == [("pager", "sent")]
        assert api.post(f"/api/v1/alerts/{down.alert_id}/ack").json()["outcome"] == "acknowledged"
        assert api.post(f"/api/v1/alerts/{down.alert_id}/resolve").json()["outcome"] == "queued"
        resolves = pager.wait_for_requests(3)[2:]
        ops.wait_for_requests(2)

        def state() -> str:
            with mysql_engine.connect() as connection:
                query = select(alerts.c.state).where(alerts.c.alert_id == down.alert_id)
                return str(connection.execute(query).scalar_one())

        wait_for(lambda: state() == "resolved", message="the alert resolved by the notifier")
        shown = api.get(f"/api/v1/alerts/{down.alert_id}").json()

    assert test_request.json()["alert"]["alert_id"] == test_id
    assert len(ops.requests) == 2  # the firing and its resolve, never the test
    assert [r.json()["kind"] for r in resolves] == ["resolve"]
    assert [event["event"] for event in shown["history"]] == ["fired", "acknowledged", "resolved"]
    assert shown["acknowledged_by"] == "operator-key"

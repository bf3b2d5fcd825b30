"""Dependency outages show within seconds: `/readyz` names them, a gauge, one log line each.

The S3 endpoint and the broker are frozen with SIGSTOP, the way they were in the fault runs:
connections stay open and nothing answers, so only a bounded check notices.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert
from sqlalchemy.engine import make_url

from rbr_runtime.db.backlog import BacklogGauges
from rbr_runtime.db.tables import outbox
from rbr_runtime.dependencies import (
    Dependency,
    DependencyMonitor,
    broker_dependency,
    database_dependency,
    s3_dependency,
    watch_dependencies,
)
from rbr_runtime.health import HealthState
from rbr_runtime.service import Service
from rbr_runtime.settings import CommonSettings
from rbr_schemas import utcnow
from rbr_testing.broker import Broker
from rbr_testing.s3 import MotoProcess
from rbr_testing.services import running
from rbr_testing.tcp_proxy import TcpProxyFactory
from rbr_testing.waiting import wait_for

# What the issue asks for: an outage visible within 10 s. Checks every second, 2 s to answer.
WITHIN = 10.0
FAST_CHECKS = {"dependency_check_interval": 1.0, "dependency_check_timeout": 2.0}
MONITOR_LOGGER = "rbr_runtime.dependencies"


class Endpoints:
    """The health endpoints of a running service, read over HTTP as an operator would."""

    def __init__(self, service: Service) -> None:
        self.base = f"http://127.0.0.1:{service.health_port}"

    def readyz(self) -> tuple[int, dict[str, Any]]:
        answer = httpx.get(f"{self.base}/readyz", timeout=5.0)
        return answer.status_code, answer.json()

    def up(self, dependency: str) -> float | None:
        text = httpx.get(f"{self.base}/metrics", timeout=5.0).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "rbr_dependency_up" and sample.labels == {
                    "dependency": dependency
                }:
                    return sample.value
        return None


@contextmanager
def service_watching(settings: CommonSettings, make: Any) -> Iterator[Endpoints]:
    service = Service(settings)
    watch_dependencies(service, make(settings))
    with running(service):
        yield Endpoints(service)


def down_seconds(reason: str) -> int:
    """Returns N from a readiness reason "down since HH:MM:SS UTC (Ns): cause"."""
    found = re.search(r"\((\d+)s\)", reason)
    assert found, reason
    return int(found.group(1))


def outage_lines(caplog: pytest.LogCaptureFixture, dependency: str, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == MONITOR_LOGGER
        and record.levelno == level
        and getattr(record, "dependency", None) == dependency
    ]


def assert_outage_seen_and_over(
    endpoints: Endpoints,
    dependency: str,
    freeze: Any,
    thaw: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Freezes the dependency, sees it named by /readyz and the gauge, thaws, sees it back."""
    assert endpoints.readyz()[0] == 200
    wait_for(lambda: endpoints.up(dependency) == 1.0, message=f"{dependency} up")
    freeze()
    try:
        _status, body = wait_for(
            lambda: (answer := endpoints.readyz())[0] == 503 and answer,
            timeout=WITHIN,
            message=f"/readyz failing with {dependency} frozen",
        )
        assert dependency in body["waiting"], body
        assert "down since" in body["waiting"][dependency]
        wait_for(
            lambda: endpoints.up(dependency) == 0.0,
            timeout=WITHIN,
            message=f"rbr_dependency_up{{dependency={dependency!r}}} at 0",
        )
        # Several more checks fail while it stays frozen: the outage is still logged once.
        wait_for(
            lambda: down_seconds(endpoints.readyz()[1]["waiting"][dependency]) >= 3,
            timeout=WITHIN,
            message="down for a few checks",
        )
    finally:
        thaw()
    wait_for(lambda: endpoints.readyz()[0] == 200, timeout=30.0, message="/readyz ready again")
    assert endpoints.up(dependency) == 1.0
    warnings = outage_lines(caplog, dependency, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"dependency {dependency} is down: ")
    assert all(r.exc_info is None for r in caplog.records if r.name == MONITOR_LOGGER)
    back = outage_lines(caplog, dependency, logging.INFO)
    assert len(back) == 1, back
    assert "is back after" in back[0]


def test_a_frozen_s3_endpoint_is_named_by_readyz_the_gauge_and_one_warning(
    moto_s3_process: MotoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    bucket = moto_s3_process.server.create_bucket("raw")
    settings = CommonSettings(
        s3_endpoint_url=moto_s3_process.server.endpoint_url, s3_bucket=bucket, **FAST_CHECKS
    )
    with service_watching(settings, s3_dependency) as endpoints:
        assert_outage_seen_and_over(
            endpoints, "s3", moto_s3_process.freeze, moto_s3_process.thaw, caplog
        )


def test_a_frozen_broker_is_named_by_readyz_the_gauge_and_one_warning(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap, **FAST_CHECKS)
    with service_watching(settings, broker_dependency) as endpoints:
        assert_outage_seen_and_over(endpoints, "broker", broker.freeze, broker.thaw, caplog)


def test_a_database_cut_off_is_named_by_readyz_the_gauge_and_one_warning(
    mysql_database_url: str,
    tcp_proxy_factory: TcpProxyFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    url = make_url(mysql_database_url)
    proxy = tcp_proxy_factory(url.host or "127.0.0.1", url.port or 3306)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = CommonSettings(database_url=proxied, **FAST_CHECKS)
    with service_watching(settings, database_dependency) as endpoints:
        assert_outage_seen_and_over(endpoints, "database", proxy.cut, proxy.restore, caplog)


def test_a_check_that_hangs_counts_as_down_and_is_not_started_again_until_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    release = threading.Event()
    calls: list[int] = []

    def hangs_until_released() -> None:
        calls.append(1)
        release.wait(30)

    monitor = DependencyMonitor(
        [Dependency("s3", hangs_until_released)], interval=0.05, timeout=0.2
    )
    check = monitor.readiness("s3")
    assert check() == "not checked yet"
    monitor.check_once()
    monitor.check_once()
    reason = check()
    assert reason is not None
    assert "no answer within 0.2s" in reason
    assert len(calls) == 1, "a hung check holds one thread, not one per round"
    release.set()
    wait_for(lambda: (monitor.check_once(), check() is None)[1], message="answering again")
    assert len(outage_lines(caplog, "s3", logging.WARNING)) == 1


def test_a_dependency_not_required_degrades_readiness_without_failing_it() -> None:
    state = HealthState()
    state.add_check("database", lambda: None)
    state.add_check("broker", lambda: "down since 10:00:00 UTC (4s): timed out", required=False)
    ready, body = state.readiness()
    assert ready
    assert body == {
        "status": "degraded",
        "degraded": {"broker": "down since 10:00:00 UTC (4s): timed out"},
    }
    state.add_check("database", lambda: "down since 10:00:01 UTC (3s): refused")
    ready, body = state.readiness()
    assert not ready
    assert body["waiting"] == {"database": "down since 10:00:01 UTC (3s): refused"}
    assert "broker" in body["degraded"]


def test_outbox_gauges_are_read_from_the_table_whatever_the_relay_does(
    mysql_engine: Engine,
) -> None:
    rows = Gauge("test_outbox_rows", "rows", registry=None)
    oldest = Gauge("test_outbox_oldest_seconds", "age", registry=None)
    gauges = BacklogGauges(
        mysql_engine,
        outbox,
        rows=rows,
        oldest_seconds=oldest,
        interval=0.1,
        where=outbox.c.service == "analyst",
    )
    gauges.measure()
    assert (rows._value.get(), oldest._value.get()) == (0, 0)  # the gauges' own values
    with mysql_engine.begin() as connection:
        connection.execute(
            insert(outbox),
            [
                {
                    "service": service,
                    "topic": "alerts",
                    "message_key": f"k{i}",
                    "value": b"{}",
                    "created_at": when,
                }
                for i, (service, when) in enumerate(
                    [
                        ("analyst", utcnow() - timedelta(minutes=2)),
                        ("analyst", utcnow()),
                        ("registrar", utcnow() - timedelta(hours=1)),  # another service's
                    ]
                )
            ],
        )
    thread = threading.Thread(target=gauges.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: rows._value.get() == 2, message="two rows counted")
        assert 120 <= oldest._value.get() < 3600
    finally:
        gauges.stop()
        thread.join(5)

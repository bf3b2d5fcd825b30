"""bucket.registered rebuilt from the buckets table: at start, on a timer, and by hand.

Real broker (a fresh memory-only one stands for a lost topic), real MariaDB, simulated buckets
polled by a real poller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_registrar.reseed import plan_reseed
from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.directory import read_registry
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BUCKET_STATUS, BucketRegistered, BucketState
from rbr_testing.broker import Broker, free_port
from rbr_testing.kafka import read_events, read_topic
from rbr_testing.registry import (
    FAST_KAFKA,
    TEST_OPERATOR_KEY,
    TEST_SECRET_KEY,
    PollerFactory,
    RegistrarFactory,
    database_url,
)
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def record(name: str, bucket_id: str = "id-1", version: int = 1) -> BucketRegistered:
    return BucketRegistered(
        bucket_id=bucket_id,
        name=name,
        state=BucketState.ACTIVE,
        ip_address="192.0.2.1",
        token_ciphertext="x",
        registered_at=T0,
        updated_at=T0,
        version=version,
    )


def registry(engine: Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(select(buckets.c.name, buckets.c.id, buckets.c.version))
        return {row.name: (row.id, row.version) for row in rows}


def topic_view(broker: Broker) -> dict[str, tuple[str, int] | None]:
    """Returns the last record per name on bucket.registered, as (id, version)."""
    records = read_registry(CommonSettings(kafka_bootstrap=broker.bootstrap), timeout=20)
    return {
        name: (r.bucket_id, r.version) if r is not None else None for name, r in records.items()
    }


def outbox_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(outbox)).scalar_one())


def seed(name: str) -> dict[str, Any]:
    return {"name": name, "ip_address": "127.0.0.1", "operating_system": "linux", "token": TOKEN}


# -- the plan, alone --------------------------------------------------------------------------


def test_the_plan_names_what_the_topic_lacks_holds_in_another_version_or_should_not_hold() -> None:
    table = {
        "b-same": ("id-1", 3),
        "b-missing": ("id-2", 1),
        "b-older": ("id-3", 2),
        "b-reregistered": ("id-new", 1),
        "b-invalid": ("id-5", 1),
        "b-waiting": ("id-6", 4),
    }
    topic = {
        "b-same": record("b-same", "id-1", 3),
        "b-older": record("b-older", "id-3", 1),
        "b-reregistered": record("b-reregistered", "id-old", 7),
        "b-invalid": None,
        "b-gone": record("b-gone"),
        "b-gone-waiting": record("b-gone-waiting"),
    }

    plan = plan_reseed(table, topic, waiting={"b-waiting", "b-gone-waiting"})

    assert plan.missing == ["b-missing"]
    assert plan.stale == ["b-invalid", "b-older", "b-reregistered"]
    assert plan.removed == ["b-gone"]
    assert plan.waiting == ["b-gone-waiting", "b-waiting"]
    assert plan.to_publish == ["b-missing", "b-invalid", "b-older", "b-reregistered"]
    assert (plan.registered, plan.on_topic) == (6, 6)
    assert not plan.in_sync


def test_a_topic_that_holds_the_registry_needs_nothing() -> None:
    table = {"b-1": ("id-1", 2)}
    # The metrics a poll refreshes in the table change no version: no announcement needed.
    plan = plan_reseed(table, {"b-1": record("b-1", "id-1", 2)}, waiting=set())
    assert plan.in_sync
    assert plan.to_publish == []


# -- the registrar, on the real broker ---------------------------------------------------------


@pytest.mark.broker
@pytest.mark.mariadb
def test_after_a_restart_on_a_fresh_broker_the_registry_is_published_and_polled_again(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
    mysql_engine: Engine,
) -> None:
    fleet = fleet_factory(count=3)
    first = registrar_factory(enrollment_keys="fleet-key")
    assert all(result.ok for result in fleet.register(first.url, "fleet-key"))
    wait_for(lambda: len(topic_view(broker)) == 3, message="the fleet on bucket.registered")
    first.handle.stop()

    # The local stack restarted: its memory-only broker comes back empty, the database not.
    broker.stop()
    broker.start()
    assert topic_view(broker) == {}
    # Checks on a timer are far off: only the check at start can publish the registry.
    registrar_factory(enrollment_keys="fleet-key", reseed_interval=3600)

    wait_for(
        lambda: topic_view(broker) == registry(mysql_engine),
        message="bucket.registered holding the registry again",
    )
    poller_factory(bucket_ca_file=str(fleet.ca_file), poll_interval=2.0)
    polled = wait_for(
        lambda: (
            {e.data.name for e in read_events(broker.bootstrap, BUCKET_STATUS)} >= set(fleet.names)
            and {e.data.name: e.data for e in read_events(broker.bootstrap, BUCKET_STATUS)}
        ),
        timeout=30,
        message="a poll of every bucket",
    )
    assert all(polled[name].reachable for name in fleet.names), polled


@pytest.mark.broker
@pytest.mark.mariadb
def test_a_topic_deleted_while_the_registrar_runs_is_created_and_filled_again(
    broker: Broker, mysql_engine: Engine, tmp_path: Path
) -> None:
    """The registrar runs in a process of its own here: librdkafka can crash the process
    whose producer is live while its topic is deleted (confluentinc/librdkafka#5093, open).
    Where that happens the orchestrator starts the registrar again and its start-up check
    refills the topic; either way the registry must be back on the topic, which is what an
    operator relies on."""
    port = free_port()
    env = registrar_environment(broker, mysql_engine, port, reseed_interval=0.5)
    names = [f"rustbucket-del{i:05d}" for i in range(4)]
    with RegistrarProcess(env, tmp_path / "registrar.log") as registrar:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            for name in names:
                assert client.post("/register_bucket", json=seed(name)).status_code == 200
        wait_for(lambda: len(topic_view(broker)) == 4, message="the buckets on the topic")

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.delete_topics([BUCKET_REGISTERED.name], operation_timeout=10)[
            BUCKET_REGISTERED.name
        ].result()

        wait_for(
            lambda: (
                registrar.keep_running()
                and BUCKET_REGISTERED.name in admin.list_topics(timeout=5).topics
                and topic_view(broker) == registry(mysql_engine)
            ),
            timeout=60,
            message="the topic created again with every bucket",
        )
    assert sorted(topic_view(broker)) == names


def registrar_environment(
    broker: Broker, engine: Engine, port: int, **overrides: object
) -> dict[str, str]:
    """Returns the environment of a registrar process with the test fixtures' settings."""
    values: dict[str, object] = {
        "kafka_bootstrap": broker.bootstrap,
        "database_url": database_url(engine),
        "http_host": "127.0.0.1",
        "http_port": port,
        "secret_key": TEST_SECRET_KEY,
        "operator_key": TEST_OPERATOR_KEY,
        "allowed_bucket_networks": "127.0.0.0/8",
        "outbox_scan_interval": 0.5,
        "log_format": "text",
        **FAST_KAFKA,
        **overrides,
    }
    variables = {f"RBR_{name.upper()}": str(value) for name, value in values.items()}
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")} | variables


class RegistrarProcess:
    """`python -m rbr_registrar` with its output in a file; started again if it dies."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def __enter__(self) -> RegistrarProcess:
        self._start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(30)

    def _start(self) -> None:
        with self._log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rbr_registrar"],
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{self._env['RBR_HTTP_PORT']}/healthz"
        wait_for(lambda: _answers(url), timeout=60, message="the registrar process up")

    def keep_running(self) -> bool:
        """Starts the registrar again if it died (as an orchestrator would); True when up."""
        assert self._process is not None
        if self._process.poll() is None:
            return True
        self.restarts += 1
        assert self.restarts <= 3, self._log_path.read_text(errors="replace")[-3000:]
        self._start()
        return True


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.broker
@pytest.mark.mariadb
def test_rbr_topics_reseed_reports_publishes_and_then_finds_nothing_to_do(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    mysql_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A short produce timeout: after the broker restart the relay's producer is replaced soon.
    registrar = registrar_factory(reseed_interval=3600, kafka_message_timeout_ms=1500)
    a, b, c, d = (f"rustbucket-man{i:05d}" for i in range(4))
    with registrar.client() as client, registrar.operator() as operator:
        for name in (a, b, c, d):
            assert client.post("/register_bucket", json=seed(name)).status_code == 200
        assert operator.post(f"/api/v1/buckets/{b}/approve").json()["version"] == 2
        assert operator.delete(f"/api/v1/buckets/{d}").status_code == 200
    wait_for(lambda: outbox_rows(mysql_engine) == 0, message="outbox sent")
    table = registry(mysql_engine)
    assert topic_view(broker) == table

    # The topic loses its content; what is left on it is b's first version and a bucket the
    # registry never had (e.g. a backup from another time).
    broker.stop()
    broker.start()
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/test")
    ghost = "rustbucket-ghost0000"
    old_b = record(b, table[b][0], 1)
    producer.send(BUCKET_REGISTERED, b, old_b, event_id=str(uuid.uuid4()))
    producer.send(BUCKET_REGISTERED, ghost, record(ghost, "id-ghost"), event_id=str(uuid.uuid4()))
    producer.flush()
    damaged = topic_view(broker)
    assert damaged == {b: (table[b][0], 1), ghost: ("id-ghost", 1)}

    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)
    runner = CliRunner()

    dry = runner.invoke(app, ["topics", "reseed", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "3 bucket(s) registered, 2 on the topic" in dry.output
    assert f"2 missing from the topic: {a}, {c}" in dry.output
    assert f"1 older or other version on the topic: {b}" in dry.output
    assert f"1 removed but still on the topic: {ghost}" in dry.output
    assert "would publish 3 record(s) and 1 tombstone(s)" in dry.output
    assert outbox_rows(mysql_engine) == 0
    assert len(read_topic(broker.bootstrap, BUCKET_REGISTERED.name)) == 2, "nothing published"

    real = runner.invoke(app, ["topics", "reseed"])
    assert real.exit_code == 0, real.output
    assert "published again: 3 record(s) and 1 tombstone(s)" in real.output
    wait_for(lambda: topic_view(broker) == table, timeout=30, message="the registry published")
    wait_for(lambda: outbox_rows(mysql_engine) == 0, message="outbox sent")
    published = len(read_topic(broker.bootstrap, BUCKET_REGISTERED.name))

    again = runner.invoke(app, ["topics", "reseed"])
    assert again.exit_code == 0, again.output
    assert "nothing to publish: the topic holds the registry" in again.output
    assert outbox_rows(mysql_engine) == 0
    assert len(read_topic(broker.bootstrap, BUCKET_REGISTERED.name)) == published
    assert topic_view(broker) == table


@pytest.mark.broker
@pytest.mark.mariadb
def test_rbr_topics_reseed_says_what_is_wrong_without_the_operator_key(
    registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    registrar = registrar_factory(reseed_interval=3600)
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", "not-the-key")
    refused = CliRunner().invoke(app, ["topics", "reseed", "--dry-run"])
    assert refused.exit_code == 1
    assert "403" in refused.output

"""A honeypot restarting under new names: replacements, merging, pending expiry.

On the real broker and MariaDB, with registrations sent exactly as the real rustbucket sends
them (`rbr_testing.rustbucket_client`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_registrar.console.reads import log_volume
from rbr_registrar.expiry import TASK, PendingExpiry
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.aliases import NamedBucket, bucket_named
from rbr_runtime.db.tables import bucket_aliases, buckets, log_analysis, logs, task_runs
from rbr_runtime.schedule import TaskClaims
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BUCKET_REGISTERED, utcnow
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_topic
from rbr_testing.logrows import log_row
from rbr_testing.registry import (
    TEST_OPERATOR_KEY,
    TEST_SECRET_KEY,
    RegistrarFactory,
    RunningRegistrar,
)
from rbr_testing.rustbucket_client import new_identity, post_like_rustbucket
from rbr_testing.waiting import wait_for

vault = TokenVault.from_setting(TEST_SECRET_KEY)


def registry_url(registrar: RunningRegistrar) -> str:
    """The URL an operator gives the honeypot (RUSTBUCKET_REGISTRY_URL)."""
    return f"{registrar.url}/api/v1/register_bucket"


def start(registry: str) -> tuple[str, str]:
    """One start of the real honeypot: registers a fresh name and token with 0.0.0.0."""
    name, token = new_identity()
    status, answer = post_like_rustbucket(registry, name, token)
    assert status == 200, answer
    return name, token


def bucket_row(engine: Engine, name: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(buckets).where(buckets.c.name == name)).first()


def snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(buckets).order_by(buckets.c.name)).all()
        aliases = connection.execute(select(bucket_aliases).order_by(bucket_aliases.c.name)).all()
    return [tuple(r) for r in rows], [tuple(r) for r in aliases]


def add_history(engine: Engine, name: str) -> None:
    """Rows the parser and the analyst stored for the bucket before its restarts."""
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(insert(logs), [log_row(name, now, "ssh_login_failed")])
        connection.execute(
            insert(log_analysis).values(
                name=name,
                ip_address="127.0.0.1",
                log_analysis="Sustained SSH password guessing.",
                window_start=now - timedelta(hours=1),
                window_end=now,
                analyser="rules",
                severity="high",
                findings=[],
                iocs=[],
                recommended_actions=[],
                log_rows=1,
            )
        )


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)
    return CliRunner()


def test_ten_restarts_leave_one_bucket_and_a_merge_keeps_its_history(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    mysql_engine: Engine,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    url = registry_url(registrar)
    first, _ = start(url)
    with registrar.operator() as operator:
        assert operator.post(f"/api/v1/buckets/{first}/approve").status_code == 200
    add_history(mysql_engine, first)
    first_id = bucket_row(mysql_engine, first).id

    restarts = [start(url) for _ in range(10)]

    with registrar.operator() as operator:
        listed = {b["name"]: b for b in operator.get("/api/v1/buckets").json()["buckets"]}
    assert listed[first]["replaces"] is None
    assert {name: listed[name]["replaces"] for name, _ in restarts} == {
        name: first for name, _ in restarts
    }
    shown = cli.invoke(app, ["buckets", "list"])
    assert shown.exit_code == 0, shown.output
    assert sum(line.rstrip().endswith(first) for line in shown.output.splitlines()) == 10
    assert "rbr buckets merge NAME --into REPLACED" in shown.output

    latest, latest_token = restarts[-1]
    merged = cli.invoke(app, ["buckets", "merge", latest, "--into", first])

    assert merged.exit_code == 0, merged.output
    assert f"{latest} merged into {first} (token and address taken" in merged.output
    row = bucket_row(mysql_engine, first)
    assert (row.id, row.name, row.state) == (first_id, first, "active")
    assert vault.matches(latest_token, row.token_hash)
    assert bucket_row(mysql_engine, latest) is None
    with mysql_engine.connect() as connection:
        assert bucket_named(connection, latest) == NamedBucket(first_id, first, alias=latest)
        assert bucket_named(connection, first) == NamedBucket(first_id, first)
        history = [
            connection.execute(select(logs.c.name)).scalars().all(),
            connection.execute(select(log_analysis.c.name)).scalars().all(),
        ]
    assert history == [[first], [first]]
    messages = read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=14)
    assert [m.value() for m in messages if m.key() == latest.encode()][-1] is None
    newest_of_first = [m for m in messages if m.key() == first.encode()][-1]
    assert latest_token.encode() not in newest_of_first.value()

    # Merging an earlier restart late takes only its name: the bucket keeps the newest token.
    earlier, _ = restarts[0]
    older = cli.invoke(app, ["buckets", "merge", earlier, "--into", first])
    assert "only the name taken" in older.output
    assert vault.matches(latest_token, bucket_row(mysql_engine, first).token_hash)
    again = cli.invoke(app, ["buckets", "merge", latest, "--into", first])
    assert again.exit_code == 0
    assert f"{latest} was already merged into {first}" in again.output
    detail = cli.invoke(app, ["buckets", "show", first]).output
    assert f"aliases            {', '.join(sorted([earlier, latest]))}" in detail
    with registrar.operator() as operator:
        gone = operator.get(f"/api/v1/buckets/{latest}")
    assert gone.status_code == 404
    assert f"merged into bucket {first}" in gone.json()["detail"]

    # The next restart still replaces the bucket the operator cares about.
    following, _ = start(url)
    with registrar.operator() as operator:
        assert operator.get(f"/api/v1/buckets/{following}").json()["replaces"] == first


def test_a_merged_name_registering_again_designates_its_bucket(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    url = registry_url(registrar)
    first, _ = start(url)
    restart, restart_token = start(url)
    with registrar.operator() as operator:
        answer = operator.post(f"/api/v1/buckets/{restart}/merge", json={"into": first})
    assert answer.json()["status"] == "merged"

    same = post_like_rustbucket(url, restart, restart_token)
    other = post_like_rustbucket(url, restart, "z" * 32)

    assert same[0] == 200
    assert same[1]["id"] == bucket_row(mysql_engine, first).id
    assert other[0] == 409
    assert bucket_row(mysql_engine, restart) is None


def test_a_bucket_s_records_are_found_under_the_names_merged_into_it(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    url = registry_url(registrar)
    first, _ = start(url)
    restart, _ = start(url)
    unrelated, _ = start(url)
    for name in (first, restart, unrelated):
        add_history(mysql_engine, name)  # the restart was polled under its own name
    with registrar.operator() as operator:
        answer = operator.post(f"/api/v1/buckets/{restart}/merge", json={"into": first})
        assert answer.json()["status"] == "merged"

        def names_found(bucket: str) -> list[str]:
            found = operator.get("/api/v1/logs", params={"bucket": bucket})
            assert found.status_code == 200, found.text
            return sorted(entry["bucket"] for entry in found.json()["logs"])

        assert names_found(first) == sorted([first, restart])
        assert names_found(restart) == sorted([first, restart])  # an alias designates it
        assert names_found(unrelated) == [unrelated]
        assert names_found("never-registered") == []
        assert operator.delete(f"/api/v1/buckets/{unrelated}").status_code == 200
        assert names_found(unrelated) == [unrelated]  # a removed bucket's rows keep its name
    volume = log_volume(mysql_engine, first, hours=2)
    assert sum(slot.count for slot in volume) == 2


def test_approving_a_replacement_keeps_it_as_a_bucket_of_its_own(
    registrar_factory: RegistrarFactory,
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    url = registry_url(registrar)
    first, _ = start(url)
    second, _ = start(url)
    with registrar.operator() as operator:
        assert operator.get(f"/api/v1/buckets/{second}").json()["replaces"] == first
        operator.post(f"/api/v1/buckets/{second}/approve")
        assert operator.get(f"/api/v1/buckets/{second}").json()["replaces"] is None
        # Two lineages on the host now: a third start cannot be told apart.
        third, _ = start(url)
        assert operator.get(f"/api/v1/buckets/{third}").json()["replaces"] is None


def test_a_live_bucket_is_not_shown_as_replaced(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    url = registry_url(registrar)
    first, _ = start(url)
    with mysql_engine.begin() as connection:  # the poller's last successful poll: a minute ago
        connection.execute(
            update(buckets)
            .where(buckets.c.name == first)
            .values(state="active", last_seen=utcnow() - timedelta(minutes=1))
        )
    second, _ = start(url)
    with registrar.operator() as operator:
        assert operator.get(f"/api/v1/buckets/{second}").json()["replaces"] is None


def test_two_operators_merging_at_once_merge_once(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    replicas = [registrar_factory(pending_expiry=0), registrar_factory(pending_expiry=0)]
    url = registry_url(replicas[0])
    first, _ = start(url)
    restart, restart_token = start(url)
    barrier = threading.Barrier(2)

    def merge(replica: int) -> dict[str, Any]:
        with replicas[replica].operator() as operator:
            barrier.wait()
            answer = operator.post(f"/api/v1/buckets/{restart}/merge", json={"into": first})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(merge, [0, 1]))

    assert sorted(r["status"] for r in results) == ["merged", "unchanged"]
    row = bucket_row(mysql_engine, first)
    assert row.version == 2
    assert vault.matches(restart_token, row.token_hash)
    _, aliases = snapshot(mysql_engine)
    assert [a[0] for a in aliases] == [restart]
    messages = read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=4)
    assert [m.value() for m in messages if m.key() == restart.encode()][1:] == [None]


def test_merges_that_make_no_sense_are_refused_and_change_nothing(
    registrar_factory: RegistrarFactory,
    mysql_engine: Engine,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registrar = registrar_factory(pending_expiry=0)
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    url = registry_url(registrar)
    first, _ = start(url)
    other, _ = start(url)
    merged_away, _ = start(url)
    with registrar.operator() as operator:
        operator.post(f"/api/v1/buckets/{merged_away}/merge", json={"into": other})
    before = snapshot(mysql_engine)

    cases: list[tuple[str, Any, int, str]] = [
        ("rustbucket-nosuch00", {"into": first}, 404, "no bucket named rustbucket-nosuch00"),
        (first, {"into": "rustbucket-nosuch00"}, 404, "to merge into"),
        (first, {"into": first}, 422, "into itself"),
        (first, {}, 422, "into: is required"),
        (first, {"into": "bad name!"}, 422, "into: must be 1 to 128 characters"),
        (first, {"into": merged_away}, 409, f"merge into {other} instead"),
        (merged_away, {"into": first}, 409, f"already merged into {other}"),
        (first, [first], 422, "must be a JSON object"),
    ]
    with registrar.operator() as operator:
        for name, body, status, message in cases:
            answer = operator.post(f"/api/v1/buckets/{name}/merge", json=body)
            assert (answer.status_code, name, body) == (status, name, body)
            assert message in answer.json()["detail"], answer.json()
        bad_path = operator.post("/api/v1/buckets/bad%20name/merge", json={"into": first})
        assert bad_path.status_code == 422
    with registrar.client() as anonymous:
        assert anonymous.post(
            f"/api/v1/buckets/{other}/merge", json={"into": first}
        ).status_code == (401)
    with httpx.Client(base_url=registrar.url, headers={"Authorization": "Bearer wrong"}) as wrong:
        assert wrong.post(f"/api/v1/buckets/{other}/merge", json={"into": first}).status_code == 403
    refused = cli.invoke(app, ["buckets", "merge", "rustbucket-nosuch00", "--into", first])
    assert refused.exit_code == 1
    assert "404: no bucket named rustbucket-nosuch00" in refused.output
    missing_option = cli.invoke(app, ["buckets", "merge", other])
    assert missing_option.exit_code == 2

    assert snapshot(mysql_engine) == before


def expired_count() -> float:
    return REGISTRY.get_sample_value("rbr_pending_expired_total") or 0.0


def test_stale_pending_registrations_expire_and_their_removal_is_published(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(pending_expiry_interval=0.2)  # RBR_PENDING_EXPIRY: 7 days
    url = registry_url(registrar)
    stale = [start(url)[0] for _ in range(3)]
    fresh, _ = start(url)
    approved, _ = start(url)
    with registrar.operator() as operator:
        operator.post(f"/api/v1/buckets/{approved}/approve")
    counted = expired_count()
    eight_days_ago = utcnow() - timedelta(days=8)
    with mysql_engine.begin() as connection:  # as if registered eight days ago
        connection.execute(
            update(buckets)
            .where(buckets.c.name.in_([*stale, approved]))
            .values(registered_at=eight_days_ago)
        )

    wait_for(
        lambda: all(bucket_row(mysql_engine, name) is None for name in stale),
        message="stale pending registrations removed",
    )

    assert bucket_row(mysql_engine, fresh).state == "pending"
    assert bucket_row(mysql_engine, approved).state == "active"
    # The counter is bumped once the removing transaction committed: just after the rows went.
    wait_for(lambda: expired_count() - counted == 3, message="3 expiries counted")
    assert expired_count() - counted == 3
    messages = wait_for(
        lambda: [
            m
            for m in read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=9)
            if m.value() is None
        ],
        message="tombstones published",
    )
    assert sorted(m.key().decode() for m in messages) == sorted(stale)
    with mysql_engine.connect() as connection:
        details = connection.execute(
            select(task_runs.c.detail).where(task_runs.c.task == TASK)
        ).scalars()
        assert "3 pending registrations expired" in list(details)


def test_each_interval_s_expiry_runs_on_one_replica(mysql_engine: Engine) -> None:
    repository = BucketRepository(mysql_engine)
    replicas = [
        PendingExpiry(repository, TaskClaims(mysql_engine, owner), expiry=3600, interval=3600)
        for owner in ("replica-a", "replica-b")
    ]
    now = utcnow()

    outcomes = [replica.run_once(now) for replica in replicas]

    assert outcomes == [0, None]
    off = PendingExpiry(repository, TaskClaims(mysql_engine), expiry=0, interval=3600)
    assert off.run_once(now + timedelta(hours=2)) is None

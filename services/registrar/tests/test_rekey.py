"""Re-keying after a secret key rotation, on the real broker and MariaDB.

Buckets stored under the old key are found by a dry run, stored again under the new key by
`POST /api/v1/buckets/rekey` and re-published, so the old key can be dropped: pollers with
only the new key poll them, and they still authenticate to a registrar with only the new key.
"""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from rbr_runtime.db.tables import buckets
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BUCKET_REGISTERED, BUCKET_STATUS
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

OLD, NEW = "old-key", "new-key"
new_only = TokenVault.from_setting(NEW)
ENROLLMENT_KEY = "fleet-key"
COUNTS = ("checked", "current", "stale", "rekeyed")


def rekey_all(operator: httpx.Client, dry_run: bool, limit: int) -> dict[str, Any]:
    """Calls the re-key endpoint page by page, as the CLI does; returns the summed answers."""
    totals: collections.Counter[str] = collections.Counter()
    undecryptable: list[str] = []
    pages = 0
    after: str | None = None
    while True:
        params: dict[str, Any] = {"dry_run": dry_run, "limit": limit}
        if after is not None:
            params["after"] = after
        answer = operator.post("/api/v1/buckets/rekey", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["dry_run"] is dry_run
        assert page["checked"] <= limit
        totals.update({key: page[key] for key in COUNTS})
        undecryptable += page["undecryptable"]
        pages += 1
        after = page["next_after"]
        if after is None:
            return {**totals, "undecryptable": undecryptable, "pages": pages}


def stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {row.name: row for row in connection.execute(select(buckets))}


def test_buckets_under_the_old_key_are_rekeyed_and_work_with_only_the_new_key(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
    mysql_engine: Engine,
    tmp_path: Path,
) -> None:
    fleet = fleet_factory(count=5)
    before = registrar_factory(secret_key=OLD, enrollment_keys=ENROLLMENT_KEY)
    assert all(result.ok for result in fleet.register(before.url, ENROLLMENT_KEY))
    before.handle.stop()

    rotated = registrar_factory(secret_key=f"{NEW},{OLD}", enrollment_keys=ENROLLMENT_KEY)
    with rotated.operator() as operator:
        dry = rekey_all(operator, dry_run=True, limit=2)
        assert dry == {
            "checked": 5,
            "current": 0,
            "stale": 5,
            "rekeyed": 0,
            "undecryptable": [],
            "pages": 3,
        }
        assert {row.version for row in stored(mysql_engine).values()} == {1}, "dry run: no change"
        assert "token" not in str(dry)

        done = rekey_all(operator, dry_run=False, limit=2)
        assert (done["checked"], done["stale"], done["rekeyed"]) == (5, 5, 5)
        assert done["undecryptable"] == []

        after = rekey_all(operator, dry_run=True, limit=2)
        assert (after["current"], after["stale"]) == (5, 0)
        again = rekey_all(operator, dry_run=False, limit=1000)
        assert (again["current"], again["rekeyed"], again["pages"]) == (5, 0, 1)

    rows = stored(mysql_engine)
    for name in fleet.names:
        token = fleet.bucket(name).token
        assert rows[name].version == 2, "re-keyed once, a second run changes nothing"
        assert rows[name].token_hash == new_only.fingerprint(token)
        assert new_only.decrypt(rows[name].token_ciphertext) == token

    def republished() -> dict[str, Any] | None:
        latest = {e.subject: e.data for e in read_events(broker.bootstrap, BUCKET_REGISTERED)}
        versions = {name: latest[name].version for name in fleet.names if name in latest}
        return latest if set(versions.values()) == {2} and len(versions) == 5 else None

    latest = wait_for(republished, message="the re-keyed registrations published")
    for name in fleet.names:
        assert new_only.decrypt(latest[name].token_ciphertext) == fleet.bucket(name).token
    rotated.handle.stop()

    # The old key dropped everywhere: the buckets are polled and still authenticate.
    current = registrar_factory(secret_key=NEW, enrollment_keys=ENROLLMENT_KEY)
    ca_file = tmp_path / "ca.pem"
    shutil.copy(fleet.ca_file, ca_file)
    poller_factory(secret_key=NEW, bucket_ca_file=str(ca_file), poll_interval=2.0)
    statuses = wait_for(
        lambda: _reachable(broker, fleet.names), message="every bucket polled with the new key"
    )
    assert set(statuses) == set(fleet.names)
    assert all(result.ok for result in fleet.register(current.url, ENROLLMENT_KEY))
    with current.client() as client:
        for name in fleet.names:
            own = client.patch(
                f"/api/v1/buckets/{name}/self",
                json={"cpu_usage": "7%"},
                headers={"Authorization": f"Token {fleet.bucket(name).token}"},
            )
            assert own.status_code == 200, own.text


def _reachable(broker: Broker, names: list[str]) -> dict[str, Any] | None:
    statuses = {e.data.name: e.data for e in read_events(broker.bootstrap, BUCKET_STATUS)}
    reachable = {name: s for name, s in statuses.items() if s.reachable}
    return reachable if set(reachable) == set(names) else None


def test_a_bucket_no_key_decrypts_is_reported_and_the_others_rekeyed(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    token = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    payload = {"ip_address": "127.0.0.1", "operating_system": "linux", "token": token}
    lost = registrar_factory(secret_key="lost-key")
    with lost.client() as client:
        client.post("/register_bucket", json={**payload, "name": "rustbucket-l0st0000"})
    lost.handle.stop()
    before = registrar_factory(secret_key=OLD)
    with before.client() as client:
        for name in ("rustbucket-k3pt0000", "rustbucket-k3pt0001"):
            assert client.post("/register_bucket", json={**payload, "name": name}).is_success
    before.handle.stop()

    rotated = registrar_factory(secret_key=f"{NEW},{OLD}")
    with rotated.operator() as operator:
        dry = rekey_all(operator, dry_run=True, limit=100)
        assert (dry["checked"], dry["stale"], dry["undecryptable"]) == (
            3,
            2,
            ["rustbucket-l0st0000"],
        )
        done = rekey_all(operator, dry_run=False, limit=100)
    assert (done["rekeyed"], done["undecryptable"]) == (2, ["rustbucket-l0st0000"])
    assert token not in str(done)
    rows = stored(mysql_engine)
    assert rows["rustbucket-l0st0000"].version == 1, "left as it was"
    for name in ("rustbucket-k3pt0000", "rustbucket-k3pt0001"):
        assert new_only.decrypt(rows[name].token_ciphertext) == token


def test_rekey_needs_the_operator_key(registrar_factory: RegistrarFactory) -> None:
    registrar = registrar_factory()
    with registrar.client() as client:
        assert client.post("/api/v1/buckets/rekey").status_code == 401
        wrong = client.post(
            "/api/v1/buckets/rekey", headers={"Authorization": "Bearer not-the-key"}
        )
        assert wrong.status_code == 403

"""Registration -> bucket.registered -> poll -> bucket.status -> last_seen, with the simulator."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from rbr_runtime.db.tables import buckets
from rbr_schemas import BUCKET_STATUS
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for


def last_seen(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        rows = connection.execute(select(buckets.c.name, buckets.c.last_seen, buckets.c.cpu_usage))
        return {row.name: row for row in rows}


def test_registered_bucket_is_polled_and_its_last_seen_kept(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
    mysql_engine: Engine,
    tmp_path: Path,
) -> None:
    fleet = fleet_factory(count=3)
    registrar = registrar_factory(enrollment_keys="fleet-key")
    results = fleet.register(registrar.url, "fleet-key")
    assert all(result.ok for result in results), results
    # The CA bundle appears after the poller started (as on the local stack, where the
    # simulator writes it): polls wait for it instead of the poller crashing.
    ca_file = tmp_path / "later" / "ca.pem"
    _, handle = poller_factory(bucket_ca_file=str(ca_file), poll_interval=2.0)
    ca_file.parent.mkdir()
    shutil.copy(fleet.ca_file, ca_file)

    statuses = wait_for(
        lambda: (
            {e.data.name: e.data for e in read_events(broker.bootstrap, BUCKET_STATUS)}
            if len(read_events(broker.bootstrap, BUCKET_STATUS)) >= 3
            else None
        ),
        message="a status per bucket",
    )
    assert set(statuses) == set(fleet.names)
    for name, status in statuses.items():
        assert status.reachable, status
        assert status.error_class is None
        assert status.updates is not None
        assert status.updates.name == name
        assert status.latency_ms is not None
        assert status.latency_ms > 0
    wait_for(
        lambda: all(row.last_seen is not None for row in last_seen(mysql_engine).values()),
        message="last_seen of every bucket",
    )
    rows = last_seen(mysql_engine)
    assert all(rows[name].last_seen >= statuses[name].polled_at for name in fleet.names)
    assert all(rows[name].cpu_usage for name in fleet.names)
    assert handle.exit_code is None, "the poller kept running"
    # Every request carried the right token.
    for name in fleet.names:
        assert all(r.authorized for r in fleet.requests(name, "/update_bucket"))

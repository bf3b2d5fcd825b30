"""Simulated rustbucket fleets for tests.

`fleet_factory` starts fleets on demand and stops them all at teardown::

    def test_poll(fleet_factory):
        fleet = fleet_factory(count=5, bind="ports")  # any `Fleet` option
        ...  # fleet.buckets, fleet.ca_file, fleet.emit(...), fleet.set_mode(...)

The simulator is imported when the fixture runs, so loading this plugin costs nothing for
tests that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from rbr_simulator.fleet import Fleet


class FleetFactory(Protocol):
    """Starts a fleet: `fleet_factory(count=5, bind="ports", **Fleet options)`."""

    def __call__(self, count: int = 5, **options: Any) -> Fleet:
        """Returns a started fleet; it is stopped when the test ends."""
        ...


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[FleetFactory]:
    """Yields a function that starts fleets (CA files under tmp_path) and stops them after."""
    from rbr_simulator.fleet import Fleet  # noqa: PLC0415 - only tests that use fleets pay

    fleets: list[Fleet] = []

    def start(count: int = 5, **options: Any) -> Fleet:
        options.setdefault("ca_file", tmp_path / f"fleet-{len(fleets)}-ca.pem")
        fleet = Fleet(count, **options)
        fleet.start()
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in reversed(fleets):
        fleet.stop()

"""Marks integration tests by the real parts they use, and reports how many of each passed.

`make test` sets RBR_REQUIRE_INTEGRATION=1: the run then fails if no broker, MariaDB or S3
test passed, so a green run always means the real parts were exercised.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

REAL_PARTS = {
    "broker": {"broker"},
    "mariadb": {"mysql_engine", "mysql_database_url"},
    "s3": {"moto_s3", "moto_s3_process"},
}
_parts_of: dict[str, set[str]] = {}
_passed: Counter[str] = Counter()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Adds the broker/mariadb/s3 marker to every test using that real part."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        parts = {part for part, names in REAL_PARTS.items() if fixtures & names}
        parts |= {part for part in REAL_PARTS if item.get_closest_marker(part)}
        for part in parts:
            item.add_marker(part)
        _parts_of[item.nodeid] = parts


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Counts passed tests per real part."""
    if report.when == "call" and report.passed:
        for part in _parts_of.get(report.nodeid, ()):
            _passed[part] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Prints how many tests passed against each real part."""
    line = ", ".join(f"{part}: {_passed[part]} passed" for part in REAL_PARTS)
    terminalreporter.write_sep("=", f"integration tests against real parts: {line}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run when required integration tests did not run."""
    if os.environ.get("RBR_REQUIRE_INTEGRATION") != "1" or exitstatus != 0:
        return
    missing = [part for part in REAL_PARTS if _passed[part] == 0]
    if missing:
        print(f"\nerror: no {', '.join(missing)} integration test passed")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

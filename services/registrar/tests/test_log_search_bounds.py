"""Log searches an operator console can afford, on MariaDB: a text search without a time
range covers the last day (and says so), and a search past its time limit is stopped with
a message saying how to narrow it, instead of holding the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from rbr_registrar.main import Registrar
from rbr_registrar.operator.queries import SearchTooSlow, rows_within
from rbr_registrar.settings import RegistrarSettings
from rbr_testing.console import add_user, logged_in, seed_bucket
from rbr_testing.registry import database_url

BUCKET = "rustbucket-lb000001"
OPERATOR_KEY = "the-operator-key"
BOT = "bot.sh"
COMMANDS_IN_A_DAY = 29  # seed_bucket: every third record, one each 17 minutes, 34 hours
COMMANDS_IN_ALL = 40


@pytest.fixture
def make_registrar(mysql_engine: Engine) -> Iterator[Callable[[float], Registrar]]:
    built: list[Registrar] = []

    def make(timeout: float) -> Registrar:
        settings = RegistrarSettings(
            database_url=database_url(mysql_engine),
            secret_key="test-secret",
            operator_key=OPERATOR_KEY,
            kafka_bootstrap="127.0.0.1:1",
            log_search_timeout=timeout,
        )
        built.append(Registrar(settings))
        return built[-1]

    seed_bucket(mysql_engine, BUCKET)
    add_user(mysql_engine, "vera", "viewer")
    yield make
    for registrar in built:
        registrar.engine.dispose()


def api(registrar: Registrar) -> TestClient:
    return TestClient(registrar.app, headers={"Authorization": f"Bearer {OPERATOR_KEY}"})


def test_a_text_search_without_a_time_range_covers_the_last_day(
    make_registrar: Callable[[float], Registrar],
) -> None:
    client = api(make_registrar(10.0))
    day = client.get("/api/v1/logs", params={"command": BOT, "limit": 1000}).json()
    assert len(day["logs"]) == COMMANDS_IN_A_DAY
    assert "last 24 hours" in day["notice"]
    assert day["since"] is not None
    text_only = client.get("/api/v1/logs", params={"text": "eventid", "bucket": BUCKET}).json()
    assert "last 24 hours" in text_only["notice"]
    asked = {"command": BOT, "since": "2000-01-01T00:00:00Z", "limit": 1000}
    everything = client.get("/api/v1/logs", params=asked).json()
    assert len(everything["logs"]) == COMMANDS_IN_ALL
    assert everything["notice"] is None
    exact = client.get("/api/v1/logs", params={"username": "admin", "limit": 1000}).json()
    assert exact["notice"] is None  # exact filters use indexes: searched as asked
    assert len(exact["logs"]) == 60

    browser = TestClient(client.app, follow_redirects=False)
    logged_in(browser, "vera")
    page = browser.get("/console/logs", params={"command": BOT}).text
    assert 'id="search-notice"' in page
    assert page.count("<tr>") == 1 + COMMANDS_IN_A_DAY
    wider = page.split('id="search-notice"')[1].split("</div>")[0]
    month = wider.split('">the last 30 days')[0].rsplit('href="', 1)[1].replace("&amp;", "&")
    assert "command=bot.sh" in month
    widened = browser.get(month).text
    assert 'id="search-notice"' not in widened
    assert widened.count("<tr>") == 1 + COMMANDS_IN_ALL


def grow_logs(engine: Engine, doublings: int) -> None:
    """Doubles the small log records `doublings` times (copies with new record numbers)."""
    columns = (
        "name, ip_address, log, log_size, created_at, log_format, event_type, source_ip, "
        "username, command, source_key, source_sha256"
    )
    with engine.begin() as connection:
        for _ in range(doublings):
            top = connection.execute(text("SELECT MAX(record_no) FROM logs")).scalar_one()
            connection.execute(
                text(
                    f"INSERT INTO logs ({columns}, record_no) "
                    f"SELECT {columns}, record_no + :top + 1 FROM logs WHERE log_size < 1000"
                ),
                {"top": top},
            )


def test_a_search_past_its_time_limit_asks_to_narrow_it(
    make_registrar: Callable[[float], Registrar], mysql_engine: Engine
) -> None:
    grow_logs(mysql_engine, 10)  # about 120,000 records: no scan of them all takes 1 ms
    registrar = make_registrar(0.001)
    client = api(registrar)
    slow = client.get("/api/v1/logs", params={"text": "nowhere", "since": "2000-01-01"})
    assert slow.status_code == 503
    assert slow.json()["detail"].startswith("the search took longer than 0.001 s: narrow it")
    assert client.get("/api/v1/analyses").status_code == 200  # the connection serves on

    browser = TestClient(registrar.app, follow_redirects=False)
    logged_in(browser, "vera")
    page = browser.get("/console/logs", params={"text": "nowhere", "since": "2000-01-01T00:00"})
    assert page.status_code == 200
    assert "the search took longer than 0.001 s" in page.text.split('id="search-problem"')[1]


def test_the_time_limit_is_put_back_after_a_stopped_read(mysql_engine: Engine) -> None:
    limit = "SELECT @@session.max_statement_time"
    with mysql_engine.connect() as connection:
        default = connection.exec_driver_sql(limit).scalar_one()
        with pytest.raises(SearchTooSlow, match=r"longer than 0\.05 s"):
            rows_within(connection, select(func.sleep(5)), 0.05)
        assert connection.exec_driver_sql(limit).scalar_one() == default
        assert rows_within(connection, select(func.sleep(0)), 5.0) == [(0,)]
        assert connection.exec_driver_sql(limit).scalar_one() == default

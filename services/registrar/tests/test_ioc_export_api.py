"""`GET /api/v1/iocs/export` on a running registrar, and `rbr iocs export` beside it."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import stix2
from pymisp import MISPEvent
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_runtime.db.tables import iocs, technique_sightings
from rbr_runtime.intel.indicators import indicator_uuid, key_sha256
from rbr_testing.console import seed_intel
from rbr_testing.registry import RegistrarFactory, database_url

SEEN = datetime.now(UTC) - timedelta(hours=2)


def put_iocs(engine: Engine) -> None:
    rows = [
        ("ip", "45.155.205.233", 80, SEEN),
        ("sha256", "cd" * 32, 90, SEEN),
        ("ip", "45.155.205.234", 20, SEEN + timedelta(hours=1)),
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(iocs),
            [
                {
                    "ioc_type": kind,
                    "value": value,
                    "key_sha256": key_sha256(kind, value),
                    "first_seen": seen - timedelta(days=2),
                    "last_seen": seen,
                    "sightings": 3,
                    "hits": 9,
                    "bucket_count": 1,
                    "buckets": ["rustbucket-a"],
                    "techniques": ["T1105"],
                    "roles": ["download"],
                    "confidence": confidence,
                    "source": "rules",
                    "source_rule": "download",
                    "country": None,
                    "as_org": None,
                    "geo_source": None,
                    "attributes": {},
                    "updated_at": seen,
                }
                for kind, value, confidence, seen in rows
            ],
        )


def test_operator_exports_stix_misp_csv_and_a_blocklist(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    put_iocs(mysql_engine)
    registrar = registrar_factory()
    with registrar.operator() as client:
        bundle = client.get("/api/v1/iocs/export", params={"format": "stix"})
        misp = client.get("/api/v1/iocs/export", params={"format": "misp"})
        recent = client.get(
            "/api/v1/iocs/export",
            params={"format": "csv", "since": (SEEN + timedelta(minutes=30)).isoformat()},
        )
        blocklist = client.get(
            "/api/v1/iocs/export", params={"format": "blocklist", "min_confidence": 50}
        )
        refused = client.get("/api/v1/iocs/export", params={"format": "xml"})
    with registrar.client() as anonymous:
        unauthorised = anonymous.get("/api/v1/iocs/export")

    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("application/stix+json")
    parsed = stix2.parse(bundle.json(), allow_custom=False)
    ids = {o.id for o in parsed.objects}
    assert f"indicator--{indicator_uuid('sha256', 'cd' * 32)}" in ids
    event = MISPEvent()
    event.load(misp.text)
    assert len(event.attributes) == 3
    assert [r["value"] for r in csv.DictReader(io.StringIO(recent.text))] == ["45.155.205.234"]
    assert [ln for ln in blocklist.text.splitlines() if not ln.startswith("#")] == [
        "45.155.205.233"
    ]
    assert refused.status_code == 422
    assert "format" in json.dumps(refused.json())
    assert unauthorised.status_code == 401


def test_rbr_iocs_export_writes_the_same_export_from_the_database(
    mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    put_iocs(mysql_engine)
    monkeypatch.setenv("RBR_DATABASE_URL", database_url(mysql_engine))
    runner = CliRunner()
    result = runner.invoke(
        app, ["iocs", "export", "--format", "blocklist", "--min-confidence", "50"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "45.155.205.233"
    bad = runner.invoke(app, ["iocs", "export", "--since", "yesterday"])
    assert bad.exit_code != 0
    assert "not an ISO 8601 time" in bad.output


def test_rbr_iocs_overview_shows_the_intel_page_s_figures(
    mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_intel(mysql_engine, "rustbucket-a")
    monkeypatch.setenv("RBR_DATABASE_URL", database_url(mysql_engine))
    runner = CliRunner()
    shown = runner.invoke(app, ["iocs", "overview"])
    assert shown.exit_code == 0, shown.output
    assert "T1110" in shown.output.split("countries:")[0]
    assert "T1059.004" not in shown.output  # seen 3 days ago
    assert "countries: NL (2)" in shown.output
    assert "hxxp[://]203[.]0[.]113[.]9/bot[.]sh" in shown.output
    assert "\x1b" not in shown.output  # hostile AS name and command escaped
    week = json.loads(runner.invoke(app, ["iocs", "overview", "--period", "7d", "--json"]).output)
    assert [t["technique"] for t in week["techniques"]] == ["T1110", "T1105", "T1059.004"]
    assert week["new_indicators"] == 4


def test_techniques_seen_fleet_wide_and_by_bucket(
    registrar_factory: RegistrarFactory, mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        ("*", "T1110", 5, SEEN - timedelta(days=3)),
        ("*", "T1496", 1, SEEN - timedelta(days=1)),
        ("rustbucket-a", "T1110", 3, SEEN - timedelta(days=2)),
    ]
    with mysql_engine.begin() as connection:
        connection.execute(
            insert(technique_sightings),
            [
                {
                    "name": name,
                    "technique": technique,
                    "first_seen": first,
                    "last_seen": SEEN,
                    "windows": windows,
                    "findings": windows,
                }
                for name, technique, windows, first in rows
            ],
        )
    registrar = registrar_factory()
    with registrar.operator() as client:
        fleet = client.get("/api/v1/iocs/techniques").json()
        one = client.get("/api/v1/iocs/techniques", params={"bucket": "rustbucket-a"}).json()
        bad = client.get("/api/v1/iocs/techniques", params={"bucket": "no/such"})
    assert [(t["technique"], t["windows"]) for t in fleet["techniques"]] == [
        ("T1110", 5),
        ("T1496", 1),
    ]
    assert fleet["techniques"][1]["name"] == "Resource Hijacking"
    assert fleet["techniques"][1]["tactics"] == ["impact"]
    assert [t["technique"] for t in one["techniques"]] == ["T1110"]
    assert bad.status_code == 422

    monkeypatch.setenv("RBR_DATABASE_URL", database_url(mysql_engine))
    listed = CliRunner().invoke(app, ["iocs", "techniques"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].startswith("T1110")
    assert "Brute Force (credential-access)" in listed.output

"""Exports of the iocs table: STIX 2.1 (stix2), MISP (pymisp), CSV and the IP blocklist."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stix2
from pymisp import MISPEvent
from sqlalchemy import Engine, insert

from rbr_runtime.db.tables import iocs
from rbr_runtime.intel.export import ExportFormat, ExportQuery, export, iter_rows
from rbr_runtime.intel.indicators import indicator_uuid, key_sha256

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ioc(kind: str, value: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ioc_type": kind,
        "value": value,
        "key_sha256": key_sha256(kind, value),
        "first_seen": NOW - timedelta(days=3),
        "last_seen": NOW - timedelta(hours=1),
        "sightings": 4,
        "hits": 40,
        "bucket_count": 2,
        "buckets": ["rustbucket-a", "rustbucket-b"],
        "techniques": [],
        "roles": [],
        "confidence": 70,
        "source": "rules",
        "source_rule": "login",
        "attributes": {},
        "updated_at": NOW - timedelta(hours=1),
        "country": None,
        "as_org": None,
        "geo_source": None,
    }
    row.update(fields)
    return row


ROWS = [
    ioc(
        "ip",
        "45.155.205.233",
        techniques=["T1110", "T1078"],
        roles=["login"],
        country="US",
        as_org="EXAMPLE-AS",
        geo_source="GeoLite2 2024-06-18 (geoip2fast)",
    ),
    ioc("ip", "10.0.0.7", confidence=90),
    ioc("ip", "198.51.100.9", confidence=30, roles=["source"]),
    ioc("ip", "2001:db8::5", confidence=80),
    ioc("url", "http://198.51.100.77/x'sh\\y", techniques=["T1105"], confidence=85),
    ioc("domain", "evil.example.com"),
    ioc("sha256", "ab" * 32, techniques=["T1105", "T1496"], confidence=90),
    ioc("md5", "d41d8cd98f00b204e9800998ecf8427e"),
    ioc("credential", "root:12'3456", techniques=["T1078"]),
    ioc(
        "command",
        "=cmd|' /C calc'!A0; wget http://x/y",
        confidence=80,
        first_seen=NOW - timedelta(minutes=30),
        last_seen=NOW,
        updated_at=NOW,
    ),
]


@pytest.fixture
def filled(mysql_engine: Engine) -> Engine:
    with mysql_engine.begin() as connection:
        connection.execute(insert(iocs), ROWS)
    return mysql_engine


def text_of(engine: Engine, kind: ExportFormat, query: ExportQuery | None = None) -> str:
    return "".join(export(engine, kind, query or ExportQuery(), NOW))


def test_stix_bundle_parses_and_every_object_validates(filled: Engine) -> None:
    document = json.loads(text_of(filled, ExportFormat.STIX))
    bundle = stix2.parse(document, allow_custom=False)
    assert bundle.type == "bundle"
    objects = document["objects"]
    for item in objects:
        parsed = stix2.parse(item, allow_custom=False, version="2.1")  # validates it alone
        assert parsed.id == item["id"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in objects:
        by_type.setdefault(item["type"], []).append(item)
    assert len(by_type["indicator"]) == len(ROWS)
    assert len(by_type["sighting"]) == len(ROWS)
    assert len(by_type["observed-data"]) == len(ROWS)
    assert {p["external_references"][0]["external_id"] for p in by_type["attack-pattern"]} == {
        "T1110",
        "T1078",
        "T1105",
        "T1496",
    }
    assert len({i["id"] for i in objects}) == len(objects)  # no object twice
    url = next(i for i in by_type["indicator"] if "url:value" in i["pattern"])
    assert url["pattern"] == "[url:value = 'http://198.51.100.77/x\\'sh\\\\y']"
    assert url["id"] == f"indicator--{indicator_uuid('url', ROWS[4]['value'])}"
    refs = {i["id"] for i in objects}
    for sighting in by_type["sighting"]:
        assert sighting["sighting_of_ref"] in refs
        assert sighting["count"] == 4


def test_stix_ids_are_stable_between_exports(filled: Engine) -> None:
    first = json.loads(text_of(filled, ExportFormat.STIX))["objects"]
    second = json.loads(text_of(filled, ExportFormat.STIX))["objects"]
    assert [o["id"] for o in first] == [o["id"] for o in second]


def test_misp_export_loads_as_a_misp_event(filled: Engine) -> None:
    event = MISPEvent()
    event.load(text_of(filled, ExportFormat.MISP))
    values = {(a.type, a.value) for a in event.attributes}
    assert ("ip-src", "45.155.205.233") in values
    assert ("sha256", "ab" * 32) in values
    assert ("url", ROWS[4]["value"]) in values
    assert len(event.attributes) == len(ROWS)
    attacker = next(a for a in event.attributes if a.value == "45.155.205.233")
    assert attacker.uuid == str(indicator_uuid("ip", "45.155.205.233"))
    assert 'misp-galaxy:mitre-attack-pattern="Brute Force - T1110"' in {
        t.name for t in attacker.tags
    }
    assert attacker.to_ids is True


def test_csv_has_one_row_per_indicator_and_defuses_formulas(filled: Engine) -> None:
    rows = list(csv.DictReader(io.StringIO(text_of(filled, ExportFormat.CSV))))
    assert len(rows) == len(ROWS)
    command = next(r for r in rows if r["type"] == "command")
    assert command["value"].startswith("'=cmd")
    attacker = next(r for r in rows if r["value"] == "45.155.205.233")
    assert (attacker["techniques"], attacker["country"]) == ("T1110;T1078", "US")


def test_blocklist_holds_public_ips_above_the_confidence_and_age(filled: Engine) -> None:
    lines = text_of(filled, ExportFormat.BLOCKLIST, ExportQuery(min_confidence=50)).splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["45.155.205.233"]
    # 2001:db8:: is documentation space, 10/8 private, 198.51.100.9 below the confidence.
    young = ExportQuery(min_confidence=0, min_age=4 * 86400)
    assert [
        ln
        for ln in text_of(filled, ExportFormat.BLOCKLIST, young).splitlines()
        if not ln.startswith("#")
    ] == []


def test_since_returns_only_indicators_sighted_since(filled: Engine) -> None:
    query = ExportQuery(since=NOW - timedelta(minutes=5))
    rows = list(csv.DictReader(io.StringIO(text_of(filled, ExportFormat.CSV, query))))
    assert [r["type"] for r in rows] == ["command"]


def test_rows_are_read_in_pages_in_id_order(filled: Engine) -> None:
    rows = list(iter_rows(filled, ExportQuery(), NOW, page_size=3))
    assert [r.value for r in rows] == [r["value"] for r in ROWS]

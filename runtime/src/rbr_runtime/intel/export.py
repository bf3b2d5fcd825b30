"""Exports of the `iocs` table: STIX 2.1, MISP, CSV, and a plain IP blocklist, streamed.

Every export reads the table in pages by id (keyset pagination, `PAGE_SIZE` rows at a time) and
yields text chunks, so its memory stays bounded whatever the table holds; the HTTP API and the
CLI write the chunks as they come. Ids are stable: an indicator has the same STIX ids, MISP
attribute uuid and CSV id in every export (uuid5 of `type:value`), so a consumer that polls
with `since` (indicators sighted at or after a time) can merge each answer into what it has.

The STIX bundle is built with the `stix2` library (every object validated on creation):
per indicator an `indicator` (its STIX pattern), the observed object, an `observed-data`, a
`sighting` by the registry's `identity`, and `indicates` relationships to the ATT&CK
`attack-pattern`s it evidences (official MITRE STIX ids). The MISP export is one event in the
JSON form MISP and `pymisp.MISPEvent` read.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import stix2  # type: ignore[import-untyped]
from sqlalchemy import Engine, select

from rbr_runtime.db.tables import iocs, technique_sightings
from rbr_runtime.intel.attack import catalogue
from rbr_runtime.intel.indicators import indicator_uuid

PAGE_SIZE = 2000
REGISTRY_IDENTITY = "identity--7d1c4a0e-4f4e-5a8b-9b1d-2f2c3a1e0b5d"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
"""Creation time of the objects describing the registry itself (stable ids and content)."""
_STIX_NAMESPACE = uuid.UUID("2a3c2a52-7f0c-4c6e-9d6f-8a0c3e9b6d11")
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    """The export formats."""

    STIX = "stix"
    MISP = "misp"
    CSV = "csv"
    BLOCKLIST = "blocklist"


MEDIA_TYPES = {
    ExportFormat.STIX: "application/stix+json;version=2.1",
    ExportFormat.MISP: "application/json",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.BLOCKLIST: "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class ExportQuery:
    """Which indicators an export holds.

    Attributes:
        since: only indicators sighted (updated) at or after this time.
        min_confidence: only indicators at least this confident (0-100).
        types: only these indicator types (None: all; the blocklist is always `ip`).
        min_age: only indicators first seen at least this many seconds ago.
        max_age: only indicators last seen at most this many seconds ago (None: any).
    """

    since: datetime | None = None
    min_confidence: int = 0
    types: tuple[str, ...] | None = None
    min_age: float = 0
    max_age: float | None = None


def iter_rows(
    engine: Engine,
    query: ExportQuery,
    now: datetime,
    page_size: int = PAGE_SIZE,
    columns: tuple[str, ...] | None = None,
) -> Iterator[Any]:
    """Yields the matching `iocs` rows in id order, one page in memory at a time.

    `columns` limits what is read (the blocklist needs the value alone); `id` is always read.
    """
    selected = [iocs.c.id, *(iocs.c[name] for name in columns)] if columns else [iocs]
    conditions = [iocs.c.confidence >= query.min_confidence]
    if query.since is not None:
        conditions.append(iocs.c.updated_at >= query.since)
    if query.types is not None:
        conditions.append(iocs.c.ioc_type.in_(query.types))
    if query.min_age > 0:
        conditions.append(iocs.c.first_seen <= now - timedelta(seconds=query.min_age))
    if query.max_age is not None:
        conditions.append(iocs.c.last_seen >= now - timedelta(seconds=query.max_age))
    after = 0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                select(*selected)
                .where(iocs.c.id > after, *conditions)
                .order_by(iocs.c.id)
                .limit(page_size)
            ).all()
        yield from rows
        if len(rows) < page_size:
            return
        after = rows[-1].id


def export(engine: Engine, kind: ExportFormat, query: ExportQuery, now: datetime) -> Iterator[str]:
    """Yields the export as text chunks (about one per page of rows)."""
    if kind is ExportFormat.BLOCKLIST:
        query = ExportQuery(
            since=query.since,
            min_confidence=query.min_confidence,
            types=("ip",),
            min_age=query.min_age,
            max_age=query.max_age,
        )
    columns = ("value",) if kind is ExportFormat.BLOCKLIST else None
    rows = iter_rows(engine, query, now, columns=columns)
    writers = {
        ExportFormat.STIX: stix_bundle,
        ExportFormat.MISP: misp_event,
        ExportFormat.CSV: csv_rows,
        ExportFormat.BLOCKLIST: blocklist,
    }
    yield from writers[kind](rows, query, now)


# -- CSV and blocklist ----------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "type",
    "value",
    "first_seen",
    "last_seen",
    "sightings",
    "hits",
    "bucket_count",
    "buckets",
    "techniques",
    "roles",
    "confidence",
    "source",
    "country",
    "as_org",
    "geo_source",
)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Values are attacker-written: one starting like a formula would run in a spreadsheet.
    return f"'{text}" if text.startswith(_CSV_FORMULA_START) else text


def csv_rows(rows: Iterator[Any], _query: ExportQuery, _now: datetime) -> Iterator[str]:
    """Yields a CSV file, one row per indicator (lists joined with `;`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(rows, 1):
        writer.writerow(
            [
                str(indicator_uuid(row.ioc_type, row.value)),
                row.ioc_type,
                _cell(row.value),
                _iso(row.first_seen),
                _iso(row.last_seen),
                row.sightings,
                row.hits,
                row.bucket_count,
                ";".join(row.buckets or []),
                ";".join(row.techniques or []),
                ";".join(row.roles or []),
                row.confidence,
                row.source,
                row.country or "",
                _cell(row.as_org),
                row.geo_source or "",
            ]
        )
        if count % PAGE_SIZE == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def blocklist(rows: Iterator[Any], query: ExportQuery, now: datetime) -> Iterator[str]:
    """Yields one public IP address per line, after a commented header."""
    yield (
        f"# Rustbucket Registry IP blocklist, generated {_iso(now)}\n"
        f"# minimum confidence {query.min_confidence}; first seen at least {query.min_age:g} s "
        f"ago; last seen within {'any time' if query.max_age is None else f'{query.max_age:g} s'}"
        "\n"
    )
    lines: list[str] = []
    for row in rows:
        if ipaddress.ip_address(row.value).is_global:
            lines.append(row.value)
        if len(lines) >= PAGE_SIZE:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- STIX 2.1 -------------------------------------------------------------------------------------


def _stix_id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(_STIX_NAMESPACE, '|'.join(parts))}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def stix_pattern(kind: str, value: str) -> str | None:
    """Returns the STIX pattern of an indicator (None for a kind with no observable)."""
    text = _escape(value)
    if kind == "ip":
        version = ipaddress.ip_address(value).version
        return f"[ipv{version}-addr:value = '{text}']"
    patterns = {
        "domain": f"[domain-name:value = '{text}']",
        "url": f"[url:value = '{text}']",
        "sha256": f"[file:hashes.'SHA-256' = '{text}']",
        "sha1": f"[file:hashes.'SHA-1' = '{text}']",
        "md5": f"[file:hashes.MD5 = '{text}']",
        "username": f"[user-account:account_login = '{text}']",
        "password": f"[user-account:credential = '{text}']",
        "command": f"[process:command_line = '{text}']",
    }
    if kind == "credential":
        login, _, secret = value.partition(":")
        return (
            f"[user-account:account_login = '{_escape(login)}' AND "
            f"user-account:credential = '{_escape(secret)}']"
        )
    return patterns.get(kind)


def observable(kind: str, value: str) -> Any:
    """Returns the STIX cyber-observable of an indicator (its id derived from its value)."""
    if kind == "ip":
        version = ipaddress.ip_address(value).version
        return (stix2.IPv4Address if version == 4 else stix2.IPv6Address)(value=value)
    login, _, secret = value.partition(":")
    makers: dict[str, Any] = {
        "domain": lambda: stix2.DomainName(value=value),
        "url": lambda: stix2.URL(value=value),
        "sha256": lambda: stix2.File(hashes={"SHA-256": value}),
        "sha1": lambda: stix2.File(hashes={"SHA-1": value}),
        "md5": lambda: stix2.File(hashes={"MD5": value}),
        "credential": lambda: stix2.UserAccount(account_login=login, credential=secret),
        "username": lambda: stix2.UserAccount(account_login=value),
        # No id-contributing property: the id is derived here, so it is stable too.
        "password": lambda: stix2.UserAccount(
            id=_stix_id("user-account", kind, value), credential=value
        ),
    }
    process = lambda: stix2.Process(id=_stix_id("process", value), command_line=value)  # noqa: E731
    return makers.get(kind, process)()


def registry_identity() -> Any:
    """Returns the `identity` of the registry, the creator and sighter of every object."""
    return stix2.Identity(
        id=REGISTRY_IDENTITY,
        name="Rustbucket Registry honeypot fleet",
        identity_class="system",
        created=CREATED,
        modified=CREATED,
    )


def attack_pattern(technique_id: str) -> Any:
    """Returns the ATT&CK `attack-pattern` of a technique, with MITRE's own STIX id."""
    technique = catalogue().techniques[technique_id]
    return stix2.AttackPattern(
        id=technique.stix_id,
        name=technique.name,
        created=CREATED,
        modified=CREATED,
        external_references=[
            {
                "source_name": "mitre-attack",
                "external_id": technique.id,
                "url": technique.url,
                "description": f"ATT&CK Enterprise {catalogue().version}",
            }
        ],
        kill_chain_phases=[
            {"kill_chain_name": "mitre-attack", "phase_name": tactic}
            for tactic in technique.tactics
        ],
    )


@dataclass
class _StixState:
    patterns_emitted: set[str] = field(default_factory=set)


def stix_objects(row: Any, state: _StixState) -> list[Any]:
    """Returns the STIX objects of one `iocs` row (and attack-patterns not emitted yet)."""
    pattern = stix_pattern(row.ioc_type, row.value)
    if pattern is None:
        return []
    key = f"{row.ioc_type}:{row.value}"
    first, last = row.first_seen, max(row.last_seen, row.first_seen)
    indicator_id = f"indicator--{indicator_uuid(row.ioc_type, row.value)}"
    objects: list[Any] = []
    techniques = [t for t in (row.techniques or []) if catalogue().get(t) is not None]
    for technique_id in techniques:
        if technique_id not in state.patterns_emitted:
            state.patterns_emitted.add(technique_id)
            objects.append(attack_pattern(technique_id))
    labels = [*(row.roles or []), *techniques]
    indicator = stix2.Indicator(
        id=indicator_id,
        created=first,
        modified=last,
        created_by_ref=REGISTRY_IDENTITY,
        name=f"{row.ioc_type} seen by {row.bucket_count} honeypot(s)",
        indicator_types=["malicious-activity"],
        pattern=pattern,
        pattern_type="stix",
        valid_from=first,
        confidence=row.confidence,
        labels=labels or None,
    )
    seen = observable(row.ioc_type, row.value)
    observed = stix2.ObservedData(
        id=_stix_id("observed-data", key),
        created=first,
        modified=last,
        created_by_ref=REGISTRY_IDENTITY,
        first_observed=first,
        last_observed=last,
        number_observed=max(1, min(int(row.sightings), 999_999_999)),
        object_refs=[seen.id],
    )
    sighting = stix2.Sighting(
        id=_stix_id("sighting", key),
        created=first,
        modified=last,
        created_by_ref=REGISTRY_IDENTITY,
        sighting_of_ref=indicator_id,
        first_seen=first,
        last_seen=last,
        count=max(1, min(int(row.sightings), 999_999_999)),
        observed_data_refs=[observed.id],
        where_sighted_refs=[REGISTRY_IDENTITY],
    )
    relationships = [
        stix2.Relationship(
            id=_stix_id("relationship", key, technique_id),
            created=first,
            modified=last,
            created_by_ref=REGISTRY_IDENTITY,
            relationship_type="indicates",
            source_ref=indicator_id,
            target_ref=catalogue().techniques[technique_id].stix_id,
        )
        for technique_id in techniques
    ]
    return [*objects, indicator, seen, observed, sighting, *relationships]


def stix_bundle(rows: Iterator[Any], _query: ExportQuery, now: datetime) -> Iterator[str]:
    """Yields a STIX 2.1 bundle, object by object."""
    bundle_id = f"bundle--{uuid.uuid4()}"
    yield f'{{"type": "bundle", "id": "{bundle_id}", "objects": [\n'
    yield registry_identity().serialize()
    state = _StixState()
    chunk: list[str] = []
    for count, row in enumerate(rows, 1):
        chunk += [obj.serialize() for obj in stix_objects(row, state)]
        if count % 200 == 0:
            yield "".join(f",\n{text}" for text in chunk)
            chunk = []
    yield "".join(f",\n{text}" for text in chunk)
    yield "\n]}\n"


# -- MISP -----------------------------------------------------------------------------------------

_MISP_TYPES = {
    "ip": ("ip-src", "Network activity", True),
    "domain": ("domain", "Network activity", True),
    "url": ("url", "Network activity", True),
    "sha256": ("sha256", "Payload delivery", True),
    "sha1": ("sha1", "Payload delivery", True),
    "md5": ("md5", "Payload delivery", True),
    "credential": ("text", "Other", False),
    "username": ("text", "Other", False),
    "password": ("text", "Other", False),
    "command": ("text", "Other", False),
}
MISP_EVENT_UUID = "5b0d8c3e-4a5f-5f1e-9c1d-7e2a1b3c4d5e"


def misp_attribute(row: Any) -> dict[str, Any]:
    """Returns the MISP attribute of one `iocs` row (its uuid stable across exports)."""
    kind, category, to_ids = _MISP_TYPES[row.ioc_type]
    tags = [
        {"name": f'misp-galaxy:mitre-attack-pattern="{technique.name} - {technique.id}"'}
        for technique in (catalogue().get(t) for t in row.techniques or [])
        if technique is not None
    ]
    tags.append({"name": f"rbr:type={row.ioc_type}"})
    comment = (
        f"{row.ioc_type} seen by {row.bucket_count} honeypot(s), {row.sightings} sighting(s); "
        f"confidence {row.confidence}"
    )
    if row.country or row.as_org:
        comment += f"; {row.country or '?'} {row.as_org or ''} ({row.geo_source})".rstrip()
    return {
        "uuid": str(indicator_uuid(row.ioc_type, row.value)),
        "type": kind,
        "category": category,
        "value": row.value,
        "to_ids": to_ids and row.confidence >= 50,
        "comment": comment,
        "first_seen": _iso(row.first_seen),
        "last_seen": _iso(max(row.last_seen, row.first_seen)),
        "timestamp": str(int(row.updated_at.timestamp())),
        "distribution": "5",
        "Tag": tags,
    }


def misp_event(rows: Iterator[Any], query: ExportQuery, now: datetime) -> Iterator[str]:
    """Yields one MISP event (JSON) holding an attribute per indicator."""
    since = f" since {_iso(query.since)}" if query.since else ""
    header = {
        "uuid": MISP_EVENT_UUID,
        "info": f"Rustbucket Registry honeypot fleet indicators{since}",
        "date": now.date().isoformat(),
        "timestamp": str(int(now.timestamp())),
        "threat_level_id": "3",
        "analysis": "2",
        "distribution": "0",
        "published": False,
        "Tag": [{"name": "tlp:green"}, {"name": "rbr:source=honeypot"}],
    }
    opening = json.dumps({"Event": header})[:-2]
    yield f'{opening}, "Attribute": [\n'
    chunk: list[str] = []
    first = True
    for row in rows:
        chunk.append(("" if first else ",\n") + json.dumps(misp_attribute(row)))
        first = False
        if len(chunk) >= PAGE_SIZE:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk)
    yield "\n]}}\n"


# -- ATT&CK techniques seen -------------------------------------------------------------------

FLEET = "*"
"""The bucket name of the fleet-wide rows of `technique_sightings`."""


def techniques_seen(engine: Engine, bucket: str | None = None) -> list[dict[str, Any]]:
    """Returns the techniques seen by a bucket (or the fleet): first/last seen, counts.

    Ordered by windows that evidenced them, most first. Each carries its name and tactics
    from the shipped ATT&CK list and the list's version.
    """
    table = technique_sightings
    with engine.connect() as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.name == (bucket or FLEET))
            .order_by(table.c.windows.desc(), table.c.technique)
        ).all()
    seen = []
    for row in rows:
        technique = catalogue().get(row.technique)
        seen.append(
            {
                "technique": row.technique,
                "name": technique.name if technique else None,
                "tactics": list(technique.tactics) if technique else [],
                "first_seen": _iso(row.first_seen),
                "last_seen": _iso(row.last_seen),
                "windows": row.windows,
                "findings": row.findings,
                "attack_version": catalogue().version,
            }
        )
    return seen

"""Recording what an analysis sighted: indicators, their sightings, ATT&CK techniques.

Runs inside the transaction that stores the analysis (only when that analysis was new, so a
replay records nothing twice), and tells what was new to the fleet: an indicator is new when
this transaction created its row (the unique key decides between concurrent replicas), a
technique when no bucket had evidenced it before (the fleet-wide row, bucket `*`, decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection

from rbr_analyst.enrich import GeoDatabase
from rbr_analyst.indicators import Sighting
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import (
    bucket_source_ips,
    ioc_sightings,
    iocs,
    technique_sightings,
    window_objects,
    window_values,
)
from rbr_runtime.intel.attack import catalogue
from rbr_runtime.intel.indicators import IndicatorType, indicator_uuid, key_sha256
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.outbox import OutboxMessage
from rbr_schemas import IOCS, IocRecord

FLEET = "*"
"""The bucket name of fleet-wide technique rows (no bucket name can be `*`)."""
MAX_BUCKETS_LISTED = 50
MAX_TECHNIQUES = 16
MAX_ROLES = 8
BUCKET_BONUS = 5
"""Confidence added each time another bucket sights an indicator."""
SOURCE = "/rbr/analyst"
# What can make a campaign: payloads anywhere, and addresses that did more than knock.
CAMPAIGN_TYPES = frozenset({"sha256", "sha1", "md5", "url", "domain"})
CAMPAIGN_IP_ROLES = frozenset({"login", "download", "payload_host", "command"})


@dataclass(frozen=True)
class Campaign:
    """One indicator sighted by several buckets within the campaign window."""

    kind: str
    value: str
    key_sha256: str
    buckets: tuple[str, ...]


@dataclass
class RecordedIntel:
    """What recording an analysis's intelligence found new, and the `iocs` events to send."""

    new_indicators: list[Sighting] = field(default_factory=list)
    new_techniques: list[str] = field(default_factory=list)
    campaigns: list[Campaign] = field(default_factory=list)
    events: list[OutboxMessage] = field(default_factory=list)


@dataclass(frozen=True)
class CampaignPolicy:
    """When sightings on several buckets make a campaign alert."""

    window: float
    min_buckets: int
    quiet: float


def record_intel(
    connection: Connection,
    window: Window,
    *,
    analysis_id: int | None,
    sightings: Sequence[Sighting],
    techniques: dict[str, int],
    geo: GeoDatabase | None,
    campaigns: CampaignPolicy,
    now: datetime,
) -> RecordedIntel:
    """Records an analysis's sightings and techniques; returns what was new fleet-wide.

    Args:
        connection: the transaction storing the analysis.
        window: the window analysed.
        analysis_id: the `log_analysis` row.
        sightings: the indicators it sighted.
        techniques: ATT&CK technique id -> how many of its findings evidence it.
        geo: the enrichment database (None: no enrichment).
        campaigns: when several buckets' sightings make a campaign.
        now: the time of the change.
    """
    recorded = RecordedIntel()
    recorded.new_techniques = _record_techniques(connection, window, techniques)
    if not sightings:
        return recorded
    # Rows are created and locked in key order, so two replicas recording overlapping
    # indicators wait for each other instead of deadlocking.
    keyed = [(key_sha256(s.indicator.type, s.indicator.value), s) for s in sightings]
    by_key = dict(sorted(keyed, key=lambda pair: pair[0]))
    for key, sighting in by_key.items():
        if _insert_new(
            connection,
            key=key,
            sighting=sighting,
            window=window,
            analysis_id=analysis_id,
            geo=geo,
            now=now,
        ):
            recorded.new_indicators.append(sighting)
    new_keys = {key_sha256(s.indicator.type, s.indicator.value) for s in recorded.new_indicators}
    rows = connection.execute(
        select(iocs)
        .where(iocs.c.key_sha256.in_(list(by_key)))
        .order_by(iocs.c.key_sha256)
        .with_for_update()
    ).all()
    known_here = _sighted_before(connection, window, [row.id for row in rows])
    for row in rows:
        sighting = by_key[row.key_sha256]
        if not _record_sighting(connection, row.id, window, sighting):
            continue
        values = _updated(
            row,
            sighting,
            window=window,
            analysis_id=analysis_id,
            now=now,
            new_bucket=row.id not in known_here,
        )
        connection.execute(update(iocs).where(iocs.c.id == row.id).values(values))
        merged = {**row._asdict(), **values}
        recorded.events.append(_event(merged, window, new=row.key_sha256 in new_keys))
    recorded.campaigns = _campaigns(connection, window, rows, by_key, campaigns)
    return recorded


def _insert_new(
    connection: Connection,
    *,
    key: str,
    sighting: Sighting,
    window: Window,
    analysis_id: int | None,
    geo: GeoDatabase | None,
    now: datetime,
) -> bool:
    indicator = sighting.indicator
    place = geo.lookup(indicator.value) if geo and indicator.type is IndicatorType.IP else None
    values: dict[str, Any] = {
        "ioc_type": indicator.type.value,
        "value": indicator.value,
        "key_sha256": key,
        "first_seen": window.start,
        "last_seen": window.end,
        "sightings": 0,
        "hits": 0,
        "bucket_count": 0,
        "buckets": [],
        "techniques": [],
        "roles": [],
        "confidence": sighting.confidence,
        "source": sighting.source,
        "source_rule": (sighting.source_rule or "rules")[:64],
        "first_analysis_id": analysis_id,
        "last_analysis_id": analysis_id,
        "country": place.country if place else None,
        "as_org": place.as_org if place else None,
        "geo_source": place.source if place else None,
        "attributes": {"url": indicator.url.as_dict()} if indicator.url else {},
        "updated_at": now,
    }
    return bool(connection.execute(insert_ignore(connection, iocs).values(values)).rowcount)


def _sighted_before(connection: Connection, window: Window, ids: list[int]) -> set[int]:
    """Returns the indicators (of ids) this bucket sighted in other windows."""
    if not ids:
        return set()
    return set(
        connection.execute(
            select(ioc_sightings.c.ioc_id)
            .distinct()
            .where(
                ioc_sightings.c.ioc_id.in_(ids),
                ioc_sightings.c.name == window.bucket,
                ioc_sightings.c.window_start != window.start,
            )
        ).scalars()
    )


def _record_sighting(
    connection: Connection, ioc_id: int, window: Window, sighting: Sighting
) -> bool:
    values = {
        "ioc_id": ioc_id,
        "name": window.bucket,
        "window_start": window.start,
        "hits": sighting.hits,
    }
    return bool(
        connection.execute(insert_ignore(connection, ioc_sightings).values(values)).rowcount
    )


def _updated(
    row: Any,
    sighting: Sighting,
    *,
    window: Window,
    analysis_id: int | None,
    now: datetime,
    new_bucket: bool,
) -> dict[str, Any]:
    buckets = list(row.buckets or [])
    if new_bucket and window.bucket not in buckets and len(buckets) < MAX_BUCKETS_LISTED:
        buckets.append(window.bucket)
    bucket_count = int(row.bucket_count) + (1 if new_bucket else 0)
    techniques = list(row.techniques or [])
    techniques += [t for t in sighting.techniques if t not in techniques]
    roles = list(row.roles or [])
    roles += [r for r in sighting.roles if r not in roles]
    confidence = max(int(row.confidence), sighting.confidence)
    if new_bucket and bucket_count > 1:
        confidence += BUCKET_BONUS
    return {
        "first_seen": min(row.first_seen, window.start),
        "last_seen": max(row.last_seen, window.end),
        "sightings": int(row.sightings) + 1,
        "hits": int(row.hits) + sighting.hits,
        "bucket_count": bucket_count,
        "buckets": buckets,
        "techniques": techniques[:MAX_TECHNIQUES],
        "roles": roles[:MAX_ROLES],
        "confidence": min(100, confidence),
        "last_analysis_id": analysis_id,
        "updated_at": now,
    }


def _event(row: dict[str, Any], window: Window, *, new: bool) -> OutboxMessage:
    record = ioc_record(row, bucket=window.bucket, window=window, new=new)
    key = f"{record.type.value}:{record.value}"
    event = make_event(
        IOCS,
        record,
        source=SOURCE,
        subject=None,
        event_id=str(
            indicator_uuid(record.type.value, f"{record.value}|{window.bucket}|{window.start}")
        ),
        time=window.end,
    )
    # Kafka keys are capped at 255 characters in the outbox; long URLs key by their hash.
    return OutboxMessage(
        IOCS.name, key if len(key) <= 255 else f"sha256:{row['key_sha256']}", encode(event)
    )


def ioc_record(
    row: Any, *, bucket: str | None = None, window: Window | None = None, new: bool = False
) -> IocRecord:
    """Returns the `iocs` event data of an `iocs` row (a mapping or a row)."""
    data = row if isinstance(row, dict) else row._asdict()
    url = (data.get("attributes") or {}).get("url")
    return IocRecord(
        id=str(indicator_uuid(data["ioc_type"], data["value"])),
        type=data["ioc_type"],
        value=data["value"],
        first_seen=data["first_seen"],
        last_seen=data["last_seen"],
        sightings=data["sightings"],
        hits=data["hits"],
        bucket_count=data["bucket_count"],
        buckets=list(data["buckets"] or []),
        techniques=list(data["techniques"] or []),
        attack_version=catalogue().version,
        roles=list(data["roles"] or []),
        confidence=data["confidence"],
        source=data["source"],
        country=data["country"],
        as_org=data["as_org"],
        geo_source=data["geo_source"],
        url=url,
        new=new,
        bucket=bucket,
        window_start=window.start if window else None,
        window_end=window.end if window else None,
    )


def _campaign_candidate(row: Any, sighting: Sighting) -> bool:
    if row.ioc_type in CAMPAIGN_TYPES:
        return True
    return row.ioc_type == "ip" and bool(CAMPAIGN_IP_ROLES.intersection(sighting.roles))


def _campaigns(
    connection: Connection,
    window: Window,
    rows: Sequence[Any],
    by_key: dict[str, Sighting],
    policy: CampaignPolicy,
) -> list[Campaign]:
    quiet_since = window.end - timedelta(seconds=policy.quiet)
    candidates = {
        row.id: row
        for row in rows
        if _campaign_candidate(row, by_key[row.key_sha256])
        and (row.campaign_at is None or row.campaign_at <= quiet_since)
    }
    if not candidates:
        return []
    span = timedelta(seconds=policy.window)
    pairs = connection.execute(
        select(ioc_sightings.c.ioc_id, ioc_sightings.c.name)
        .distinct()
        .where(
            ioc_sightings.c.ioc_id.in_(list(candidates)),
            ioc_sightings.c.window_start > window.start - span,
            ioc_sightings.c.window_start < window.start + span,
        )
    ).all()
    buckets: dict[int, set[str]] = {}
    for ioc_id, name in pairs:
        buckets.setdefault(ioc_id, set()).add(name)
    found: list[Campaign] = []
    for ioc_id, names in sorted(buckets.items()):
        if len(names) < policy.min_buckets:
            continue
        row = candidates[ioc_id]
        connection.execute(update(iocs).where(iocs.c.id == ioc_id).values(campaign_at=window.end))
        found.append(Campaign(row.ioc_type, row.value, row.key_sha256, tuple(sorted(names))))
    return found


def _record_techniques(
    connection: Connection, window: Window, techniques: dict[str, int]
) -> list[str]:
    """Counts the techniques for the bucket and the fleet; returns those new to the fleet."""
    new: list[str] = []
    for technique, findings in sorted(techniques.items()):
        for name in (window.bucket, FLEET):
            created = connection.execute(
                insert_ignore(connection, technique_sightings).values(
                    name=name,
                    technique=technique,
                    first_seen=window.start,
                    last_seen=window.end,
                    windows=0,
                    findings=0,
                )
            ).rowcount
            if created and name == FLEET:
                new.append(technique)
            row_key = (
                technique_sightings.c.name == name,
                technique_sightings.c.technique == technique,
            )
            row = connection.execute(
                select(technique_sightings).where(*row_key).with_for_update()
            ).one()
            connection.execute(
                update(technique_sightings)
                .where(*row_key)
                .values(
                    first_seen=min(row.first_seen, window.start),
                    last_seen=max(row.last_seen, window.end),
                    windows=row.windows + 1,
                    findings=row.findings + findings,
                )
            )
    return new


@dataclass
class PruneReport:
    """What one IOC retention run deleted."""

    indicators: int = 0
    sightings: int = 0
    techniques: int = 0
    tallies: int = 0
    source_ips: int = 0
    cutoff: datetime | None = None

    def line(self) -> str:
        """Returns the report as one line."""
        if self.cutoff is None:
            return "indicators kept forever (RBR_IOC_RETENTION_DAYS=0)"
        return (
            f"deleted {self.indicators} indicators, {self.sightings} sightings and "
            f"{self.techniques} technique rows not seen since {self.cutoff:%Y-%m-%d %H:%M}; "
            f"{self.tallies} window tallies and {self.source_ips} first sightings of addresses "
            "older than that"
        )


def prune_intel(engine: Engine, now: datetime, days: int, chunk: int = 5000) -> PruneReport:
    """Deletes indicators, sightings and technique rows not seen for `days` (0: none).

    And the window digest's leftover tallies older than that (`_prune_tallies`).

    The same rule as `logs` rows (RBR_LOG_RETENTION_DAYS): what is older than the retention
    goes; an indicator seen again later starts over as new. Deleted in chunks, so no long
    lock is held on a large table.
    """
    report = PruneReport()
    if days <= 0:
        return report
    report.cutoff = now - timedelta(days=days)
    report.sightings = _delete_chunks(
        engine, ioc_sightings, ioc_sightings.c.window_start < report.cutoff, chunk
    )
    report.indicators = _delete_chunks(engine, iocs, iocs.c.last_seen < report.cutoff, chunk)
    with engine.begin() as connection:
        report.techniques = connection.execute(
            delete(technique_sightings).where(technique_sightings.c.last_seen < report.cutoff)
        ).rowcount
    _prune_tallies(engine, report.cutoff, report)
    return report


def _prune_tallies(engine: Engine, cutoff: datetime, report: PruneReport) -> None:
    """Deletes the digest's tallies of windows that ended before the cutoff.

    An analysed window's tallies go when its analysis is stored; these are the windows never
    analysed (a bucket removed, a backlog entry dropped). A bucket's first sighting of an
    address older than the cutoff goes too, as the rows it was read from did: an address
    back after the retention counts as new again, as it did when read from `logs`.
    """
    with engine.begin() as connection:
        report.tallies = connection.execute(
            delete(window_values).where(window_values.c.window_end < cutoff)
        ).rowcount
        connection.execute(delete(window_objects).where(window_objects.c.window_end < cutoff))
        report.source_ips = connection.execute(
            delete(bucket_source_ips).where(bucket_source_ips.c.first_seen_at < cutoff)
        ).rowcount


def _delete_chunks(engine: Engine, table: Any, condition: Any, chunk: int) -> int:
    """Deletes the rows matching condition, a bounded batch per transaction."""
    total = 0
    while True:
        with engine.begin() as connection:
            if table is iocs:
                ids = list(
                    connection.execute(select(iocs.c.id).where(condition).limit(chunk)).scalars()
                )
                batch = iocs.c.id.in_(ids)
                found = len(ids)
            else:  # ioc_sightings: one window's sightings at a time
                start = connection.execute(
                    select(ioc_sightings.c.window_start).where(condition).limit(1)
                ).scalar()
                batch = ioc_sightings.c.window_start == start
                found = 0 if start is None else chunk
            if not found:
                return total
            total += connection.execute(delete(table).where(batch)).rowcount

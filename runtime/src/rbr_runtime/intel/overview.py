"""The fleet's threat intelligence over a period: top techniques, where attackers sit, new IOCs.

Read-only over the analyst's `technique_sightings` and `iocs` tables, for the operator API's
`GET /api/v1/intel/overview` and the console's Intel page. Indicator values are written by
attackers: each carries a defanged form, and renderers must still escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.engine import Connection

from rbr_runtime.db.tables import iocs, technique_sightings
from rbr_runtime.intel.attack import catalogue
from rbr_runtime.intel.indicators import IndicatorType

FLEET = "*"
"""The bucket name of the fleet-wide rows of `technique_sightings` (left out here)."""
TOP = 10
NEW_INDICATORS_SHOWN = 50
_DEFANGED_TYPES = (IndicatorType.IP, IndicatorType.DOMAIN, IndicatorType.URL)


class Period(StrEnum):
    """The periods the overview covers, ending now."""

    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"

    @property
    def length(self) -> timedelta:
        """Returns how long the period is."""
        return {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}[
            self.value
        ]


@dataclass(frozen=True)
class TechniqueSeen:
    """One ATT&CK technique seen in the period, over the buckets that saw it."""

    technique: str
    name: str | None
    tactics: list[str]
    url: str | None
    buckets: int
    windows: int
    findings: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class Place:
    """A country or AS organisation and how many attacker addresses sat there."""

    name: str
    addresses: int


@dataclass(frozen=True)
class NewIndicator:
    """An indicator first seen in the period (`value` is attacker-controlled text)."""

    type: str
    value: str
    defanged: str
    first_seen: datetime
    last_seen: datetime
    buckets: int
    confidence: int
    country: str | None
    as_org: str | None


@dataclass
class IntelOverview:
    """What the Intel page and `GET /api/v1/intel/overview` show."""

    period: Period
    since: datetime
    until: datetime
    attack_version: str
    techniques: list[TechniqueSeen] = field(default_factory=list)
    countries: list[Place] = field(default_factory=list)
    as_orgs: list[Place] = field(default_factory=list)
    new_indicators: int = 0
    new_indicators_by_type: dict[str, int] = field(default_factory=dict)
    newest_indicators: list[NewIndicator] = field(default_factory=list)


def defang(kind: str, value: str) -> str:
    """Returns an address, domain or URL in the defanged form reports use (hxxp, [.])."""
    if kind not in _DEFANGED_TYPES:
        return value
    scheme, separator, rest = value.partition("://")
    if kind != IndicatorType.URL or not separator:
        return value.replace(".", "[.]")
    defanged = rest.replace(".", "[.]")
    return f"{scheme.replace('http', 'hxxp').replace('ftp', 'fxp')}[://]{defanged}"


def overview(engine: Engine, period: Period, until: datetime) -> IntelOverview:
    """Returns the fleet's intelligence over the period ending at `until`."""
    since = until - period.length
    found = IntelOverview(
        period=period, since=since, until=until, attack_version=catalogue().version
    )
    with engine.connect() as connection:
        found.techniques = _techniques(connection, since, bucket=None)
        found.countries = places(connection, iocs.c.country, since, until)
        found.as_orgs = places(connection, iocs.c.as_org, since, until)
        _new_indicators(connection, found)
    return found


def bucket_techniques(
    engine: Engine, bucket: str, since: datetime | None = None
) -> list[TechniqueSeen]:
    """Returns the techniques one bucket saw (last seen at or after `since`), most first."""
    with engine.connect() as connection:
        return _techniques(connection, since, bucket=bucket, limit=None)


def _techniques(
    connection: Connection, since: datetime | None, *, bucket: str | None, limit: int | None = TOP
) -> list[TechniqueSeen]:
    """Per technique: the buckets that saw it, their windows and findings (over their records).

    The counts are those of the technique's whole record (kept for the IOC retention); the
    period selects which techniques were seen in it.
    """
    t = technique_sightings.c
    buckets = func.count().label("buckets")
    windows = func.sum(t.windows).label("windows")
    query = (
        select(
            t.technique,
            buckets,
            windows,
            func.sum(t.findings).label("findings"),
            func.min(t.first_seen).label("first_seen"),
            func.max(t.last_seen).label("last_seen"),
        )
        .where(t.name == bucket if bucket is not None else t.name != FLEET)
        .group_by(t.technique)
        .order_by(buckets.desc(), windows.desc(), t.technique)
    )
    if since is not None:
        query = query.where(t.last_seen >= since)
    if limit is not None:
        query = query.limit(limit)
    seen = []
    for row in connection.execute(query):
        technique = catalogue().get(row.technique)
        seen.append(
            TechniqueSeen(
                technique=row.technique,
                name=technique.name if technique else None,
                tactics=list(technique.tactics) if technique else [],
                url=technique.url if technique else None,
                buckets=int(row.buckets),
                windows=int(row.windows or 0),
                findings=int(row.findings or 0),
                first_seen=row.first_seen,
                last_seen=row.last_seen,
            )
        )
    return seen


def places(
    connection: Connection,
    column: ColumnElement[Any],
    since: datetime,
    until: datetime,
    limit: int = TOP,
) -> list[Place]:
    """Attacker addresses (IP indicators sighted in the period) per country or AS organisation.

    Also the daily summary's (the analyst's) top countries and AS.
    """
    addresses = func.count().label("addresses")
    rows = connection.execute(
        select(column, addresses)
        .where(
            iocs.c.last_seen >= since,
            iocs.c.first_seen < until,
            iocs.c.ioc_type == IndicatorType.IP.value,
            column.is_not(None),
        )
        .group_by(column)
        .order_by(addresses.desc(), column)
        .limit(limit)
    )
    return [Place(name=str(name), addresses=int(count)) for name, count in rows]


def new_indicator_counts(
    connection: Connection, since: datetime, until: datetime
) -> dict[str, int]:
    """Returns how many indicators of each type were first seen in the period."""
    c = iocs.c
    rows = connection.execute(
        select(c.ioc_type, func.count()).where(*_first_seen_in(since, until)).group_by(c.ioc_type)
    )
    return {str(kind): int(count) for kind, count in rows}


def _first_seen_in(since: datetime, until: datetime) -> tuple[ColumnElement[bool], ...]:
    c = iocs.c
    # last_seen >= first_seen: the condition on it lets the index on last_seen narrow the scan.
    return (c.last_seen >= since, c.first_seen >= since, c.first_seen < until)


def _new_indicators(connection: Connection, found: IntelOverview) -> None:
    """Indicators first seen in the period: counts by type, and the most confident ones."""
    c = iocs.c
    found.new_indicators_by_type = new_indicator_counts(connection, found.since, found.until)
    found.new_indicators = sum(found.new_indicators_by_type.values())
    rows = connection.execute(
        select(c.ioc_type, c.value, c.first_seen, c.last_seen, c.bucket_count, c.confidence)
        .add_columns(c.country, c.as_org)
        .where(*_first_seen_in(found.since, found.until))
        .order_by(c.confidence.desc(), c.first_seen.desc(), c.id.desc())
        .limit(NEW_INDICATORS_SHOWN)
    )
    found.newest_indicators = [
        NewIndicator(
            type=row.ioc_type,
            value=row.value,
            defanged=defang(row.ioc_type, row.value),
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            buckets=int(row.bucket_count),
            confidence=int(row.confidence),
            country=row.country,
            as_org=row.as_org,
        )
        for row in rows
    ]

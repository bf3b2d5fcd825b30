"""Which bucket a name designates: its own name, or the name of a registration merged into it.

The real rustbucket registers under a new random name at every start. An operator merges
such a registration into the bucket it replaces (`rbr buckets merge NEW --into OLD`): the
bucket keeps its name and history, and NEW becomes an alias of it in `bucket_aliases`
(written by the registrar only). Anything that meets a bucket name from outside the registry
(a honeypot's own log file naming its registered name, an S3 folder) looks it up here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from rbr_runtime.db.tables import bucket_aliases, buckets


@dataclass(frozen=True)
class NamedBucket:
    """The bucket a name designates."""

    bucket_id: str
    name: str
    """The bucket's own (current) name."""
    alias: str | None = None
    """The name looked up, when it is an alias (a registration merged into the bucket)."""


def bucket_named(connection: Connection, name: str) -> NamedBucket | None:
    """Returns the registered bucket a name designates, or None when it designates none.

    A bucket's own name designates it; so does the name of a registration merged into it.
    """
    return buckets_named(connection, [name]).get(name)


def buckets_named(
    connection: Connection, names: Iterable[str], chunk: int = 500
) -> dict[str, NamedBucket]:
    """Returns the bucket each name designates (`bucket_named`), for many names at once.

    Names that designate no bucket are left out. A few queries per `chunk` names, so a scan
    of many folders stays cheap.
    """
    wanted = sorted(set(names))
    found: dict[str, NamedBucket] = {}
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        own = connection.execute(
            select(buckets.c.id, buckets.c.name).where(buckets.c.name.in_(part))
        )
        found |= {row.name: NamedBucket(row.id, row.name) for row in own}
        rest = [name for name in part if name not in found]
        if not rest:
            continue
        merged = connection.execute(
            select(bucket_aliases.c.name.label("alias"), buckets.c.id, buckets.c.name)
            .join(bucket_aliases, bucket_aliases.c.bucket_id == buckets.c.id)
            .where(bucket_aliases.c.name.in_(rest))
        )
        found |= {row.alias: NamedBucket(row.id, row.name, alias=row.alias) for row in merged}
    return found


def aliases_of(connection: Connection, bucket_ids: list[str]) -> dict[str, list[str]]:
    """Returns the names merged into each of the buckets (by id), sorted."""
    if not bucket_ids:
        return {}
    rows = connection.execute(
        select(bucket_aliases.c.bucket_id, bucket_aliases.c.name)
        .where(bucket_aliases.c.bucket_id.in_(bucket_ids))
        .order_by(bucket_aliases.c.name)
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.bucket_id, []).append(row.name)
    return found


def names_designating(connection: Connection, name: str) -> list[str]:
    """Returns every name that designates the same bucket as `name`, the bucket's own first.

    Rows stored under a registration's name before it was merged keep that name, so what
    reads a bucket's rows by name reads them under all of these. A name that designates no
    bucket (removed, or never registered) is returned alone: its rows keep it.
    """
    named = bucket_named(connection, name)
    if named is None:
        return [name]
    merged = aliases_of(connection, [named.bucket_id]).get(named.bucket_id, [])
    return [named.name, *merged]

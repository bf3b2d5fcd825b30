"""Which bucket a name designates: its own name, or the name of a registration merged into it.

The real rustbucket registers under a new random name at every start. An operator merges
such a registration into the bucket it replaces (`rbr buckets merge NEW --into OLD`): the
bucket keeps its name and history, and NEW becomes an alias of it in `bucket_aliases`
(written by the registrar only). Anything that meets a bucket name from outside the registry
(a honeypot's own log file naming its registered name, an S3 folder) looks it up here.
"""

from __future__ import annotations

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
    own = connection.execute(select(buckets.c.id).where(buckets.c.name == name)).first()
    if own is not None:
        return NamedBucket(own.id, name)
    merged = connection.execute(
        select(buckets.c.id, buckets.c.name)
        .join(bucket_aliases, bucket_aliases.c.bucket_id == buckets.c.id)
        .where(bucket_aliases.c.name == name)
    ).first()
    if merged is None:
        return None
    return NamedBucket(merged.id, merged.name, alias=name)


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

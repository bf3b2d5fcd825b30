"""Merging a registration into the bucket it replaces, and what operators see of lineages.

`rbr buckets merge NEW --into OLD` folds NEW into OLD in one transaction, both rows locked in
name order: OLD takes NEW's token, address and metrics as a new version; NEW's name becomes an
alias of OLD, its drop folders feed OLD, and its tombstone is queued. The rules are
`lineage.plan_merge`; merging again is a no-op, nonsense is refused with a 4xx.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from rbr_registrar.domain import BucketRow
from rbr_registrar.lineage import identity_since, plan_merge
from rbr_registrar.store import BucketRepository, with_retries
from rbr_runtime.db.aliases import aliases_of, bucket_named
from rbr_runtime.db.tables import bucket_aliases, buckets, drop_sources
from rbr_schemas import BucketState, utcnow

log = logging.getLogger(__name__)

MERGES = Counter(
    "rbr_bucket_merges_total",
    "Registrations an operator merged into a bucket, by outcome: identity (token and address "
    "taken), name (an older registration: only its name), unchanged (merged before).",
    ["outcome"],
)


class MergeRefused(Exception):
    """A merge that makes no sense; nothing was changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class MergeResult:
    """What a merge did."""

    merged: str
    """The name merged (now an alias of the bucket)."""
    bucket: BucketRow
    """The bucket it was merged into, as it is now."""
    status: str
    """merged, or unchanged (it had been merged before)."""
    identity_taken: bool = False
    """The bucket took the merged registration's token and address."""


@dataclass(frozen=True)
class Lineage:
    """What a bucket replaces and which names were merged into it."""

    replaces: str | None = None
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Alias:
    name: str
    bucket_id: str
    bucket_name: str


class BucketMerges:
    """Merges registrations into buckets; reads lineages for the operator views."""

    def __init__(self, repository: BucketRepository) -> None:
        self._repository = repository
        self._engine = repository.engine

    def merge(self, name: str, into: str) -> MergeResult:
        """Merges registration `name` into bucket `into`.

        Raises:
            MergeRefused: 404 unknown name, 409 a name already merged elsewhere, 422 a
                bucket into itself. Nothing was changed.
        """
        if name == into:
            raise MergeRefused(422, f"cannot merge {name} into itself: name another bucket")
        result = with_retries(lambda: self._merge_once(name, into))
        outcome = "unchanged"
        if result.status == "merged":
            outcome = "identity" if result.identity_taken else "name"
        MERGES.labels(outcome).inc()
        return result

    def _merge_once(self, name: str, into: str) -> MergeResult:
        now = utcnow()
        with self._engine.begin() as connection:
            rows = self._repository.lock_rows(connection, sorted({name, into}))
            aliases = self._lock_aliases(connection, [n for n in (name, into) if n not in rows])
            target = rows.get(into)
            if target is None:
                raise _no_target(into, aliases.get(into))
            merged = rows.get(name)
            if merged is None:
                return _merged_before(name, target, aliases.get(name))
            plan = plan_merge(
                merged,
                target,
                identity_since(merged, self._merged_times(connection, merged.id)),
                identity_since(target, self._merged_times(connection, target.id)),
                now,
            )
            bucket = plan.decision.row
            assert bucket is not None
            self._repository._write_decision(connection, plan.decision, now)
            self._inherit(connection, merged, target)
            connection.execute(
                insert(bucket_aliases).values(
                    name=merged.name,
                    bucket_id=target.id,
                    merged_id=merged.id,
                    registered_at=merged.registered_at,
                    merged_at=now,
                )
            )
            self._repository.delete_bucket(
                connection, merged, now, resolve_alert=merged.state != BucketState.PENDING
            )
        return MergeResult(name, bucket, "merged", plan.identity_taken)

    def _inherit(self, connection: Connection, merged: BucketRow, target: BucketRow) -> None:
        """Gives the target what pointed at the merged registration.

        Names merged into it, registrations marked as replacing it, and the drop folders
        linked to it (they feed the target from now on; how they were linked is kept).
        """
        connection.execute(
            update(bucket_aliases)
            .where(bucket_aliases.c.bucket_id == merged.id)
            .values(bucket_id=target.id)
        )
        connection.execute(
            update(drop_sources)
            .where(drop_sources.c.bucket_id == merged.id)
            .values(bucket_id=target.id)
        )
        connection.execute(
            update(buckets)
            .where(buckets.c.replaces_id == merged.id, buckets.c.id != target.id)
            .values(replaces_id=target.id)
        )
        # A bucket cannot replace what was merged into it.
        connection.execute(
            update(buckets)
            .where(buckets.c.id == target.id, buckets.c.replaces_id == merged.id)
            .values(replaces_id=None)
        )

    def _lock_aliases(self, connection: Connection, names: Sequence[str]) -> dict[str, _Alias]:
        if not names:
            return {}
        rows = connection.execute(
            select(bucket_aliases.c.name, bucket_aliases.c.bucket_id, buckets.c.name.label("to"))
            .join(buckets, buckets.c.id == bucket_aliases.c.bucket_id)
            .where(bucket_aliases.c.name.in_(names))
            .order_by(bucket_aliases.c.name)
            .with_for_update()
        )
        return {r.name: _Alias(r.name, r.bucket_id, r.to) for r in rows}

    def _merged_times(self, connection: Connection, bucket_id: str) -> list[datetime]:
        return list(
            connection.execute(
                select(bucket_aliases.c.registered_at).where(
                    bucket_aliases.c.bucket_id == bucket_id
                )
            ).scalars()
        )

    # -- what operators see ------------------------------------------------------------------

    def lineages(self, rows: Sequence[BucketRow]) -> dict[str, Lineage]:
        """Returns, by bucket id, the name of the bucket each replaces and its aliases."""
        replaced_ids = sorted({row.replaces_id for row in rows if row.replaces_id})
        with self._engine.connect() as connection:
            names: dict[str, str] = {}
            if replaced_ids:
                found = connection.execute(
                    select(buckets.c.id, buckets.c.name).where(buckets.c.id.in_(replaced_ids))
                )
                names = {r.id: r.name for r in found}
            aliases = aliases_of(connection, [row.id for row in rows])
        return {
            row.id: Lineage(
                names.get(row.replaces_id) if row.replaces_id else None, aliases.get(row.id, [])
            )
            for row in rows
        }

    def merged_into(self, name: str) -> str | None:
        """Returns the bucket a merged name now designates, if it is one."""
        with self._engine.connect() as connection:
            named = bucket_named(connection, name)
        return named.name if named is not None and named.alias is not None else None


def _no_target(into: str, alias: _Alias | None) -> MergeRefused:
    if alias is not None:
        return MergeRefused(
            409,
            f"{into} was merged into {alias.bucket_name}; merge into {alias.bucket_name} instead",
        )
    return MergeRefused(404, f"no bucket named {into} to merge into (unknown or removed)")


def _merged_before(name: str, target: BucketRow, alias: _Alias | None) -> MergeResult:
    if alias is None:
        raise MergeRefused(404, f"no bucket named {name} (unknown, removed or expired)")
    if alias.bucket_id != target.id:
        raise MergeRefused(
            409, f"{name} was already merged into {alias.bucket_name}; nothing was changed"
        )
    return MergeResult(name, target, "unchanged")

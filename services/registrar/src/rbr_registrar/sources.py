"""S3 drop sources: the instance folders the log-extractor finds, and the bucket each feeds.

The registrar records every `drop.discovered` report in `drop_sources` and links a folder to a
bucket by name (or alias), after a restart (its files name an already linked instance), or by
the identity its files record; otherwise it stays unclaimed for an operator to adopt. Only
starts naming a known folder are believed: attackers can write log lines, not instance names.
The rules are in docs/real-honeypots.md.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from rbr_registrar.domain import (
    BucketRow,
    Decision,
    Verdict,
    mode_after_link,
)
from rbr_registrar.store import BucketRepository, with_retries
from rbr_runtime.db.aliases import bucket_named, buckets_named
from rbr_runtime.db.tables import buckets, drop_sources
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BucketState, DeliveryMode, DropFolderSeen, InstanceStart, utcnow

MAX_STARTS = 100


class LinkReason(StrEnum):
    """Why a folder feeds its bucket."""

    NAME = "name"
    IDENTITY = "identity"
    RESTART = "restart"
    OPERATOR = "operator"


def folder_uri(location: str, folder: str) -> str:
    """Returns the URI of an instance folder: `s3://BUCKET/PREFIX/FOLDER/`."""
    return f"{location}{folder}/"


def uri_digest(uri: str) -> str:
    """Returns the key of a folder URI in `drop_sources`."""
    return hashlib.sha256(uri.encode()).hexdigest()


@dataclass(frozen=True)
class Link:
    """A folder's link to a bucket."""

    bucket_id: str
    reason: LinkReason


def link_for(
    seen: DropFolderSeen,
    bucket_named: Callable[[str], str | None],
    bucket_of_folder: Callable[[str], str | None],
) -> Link | None:
    """Decides which bucket an unlinked folder feeds, if any (see the module's rules).

    Args:
        seen: what the folder holds.
        bucket_named: returns the id of the registered bucket a name designates, if any: its
            own name, or a registration's merged into it (`rbr_runtime.db.aliases`).
        bucket_of_folder: returns the id of the bucket another folder of the same location
            is linked to, if any.
    """
    named = bucket_named(seen.folder)
    if named is not None:
        return Link(named, LinkReason.NAME)
    for start in seen.starts:
        if start.instance_name != seen.folder:
            earlier = bucket_of_folder(start.instance_name)
            if earlier is not None:
                return Link(earlier, LinkReason.RESTART)
    for start in seen.starts:
        if start.instance_name == seen.folder and start.registered_name:
            registered = bucket_named(start.registered_name)
            if registered is not None:
                return Link(registered, LinkReason.IDENTITY)
    return None


@dataclass(frozen=True)
class SourceRow:
    """One row of `drop_sources`, with the linked bucket's name."""

    id: int
    location: str
    region: str
    folder: str
    bucket_id: str | None
    bucket: str | None
    linked_by: str | None
    linked_at: datetime | None
    objects: int
    size_bytes: int
    newest_upload_at: datetime | None
    starts: list[list[str | None]]
    first_seen_at: datetime
    last_seen_at: datetime

    @property
    def uri(self) -> str:
        """Returns the folder's URI."""
        return folder_uri(self.location, self.folder)


class SourceError(Exception):
    """An operator's request on sources that cannot be done (nothing was changed).

    Attributes:
        status: the HTTP status to answer.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DropSources:
    """Reads and writes `drop_sources`; bucket changes go through the bucket repository."""

    def __init__(self, buckets_repository: BucketRepository, vault: TokenVault) -> None:
        self._buckets = buckets_repository
        self._engine = buckets_repository.engine
        self._vault = vault

    # -- reports from the log-extractor ---------------------------------------------------------

    def record(self, reports: Sequence[DropFolderSeen]) -> list[str]:
        """Records what the log-extractor found and links new folders; returns URIs linked."""
        return with_retries(lambda: self._record_once(reports))

    def _record_once(self, reports: Sequence[DropFolderSeen]) -> list[str]:
        """Records a batch of reports in one transaction, with a few queries per batch."""
        now = utcnow()
        latest = {uri_digest(seen.uri): seen for seen in reports}  # the last report wins
        with self._engine.begin() as connection:
            current = self._current(connection, sorted(latest))
            starts = {
                digest: _merged_starts(current[digest].starts if digest in current else [], seen)
                for digest, seen in latest.items()
            }
            self._write_facts(connection, latest, current, starts, now)
            unlinked = {
                digest: seen.model_copy(update={"starts": _as_starts(starts[digest])})
                for digest, seen in latest.items()
                if digest not in current or current[digest].bucket_id is None
            }
            links = self._decide_links(connection, unlinked)
            for digest, link in links.items():
                self._link(connection, digest, link, now)
        return sorted(unlinked[digest].uri for digest in links)

    @staticmethod
    def _current(connection: Connection, digests: list[str]) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for chunk in _chunks(digests):
            query = select(drop_sources).where(drop_sources.c.uri_sha256.in_(chunk))
            for row in connection.execute(
                query.order_by(drop_sources.c.uri_sha256).with_for_update()
            ):
                rows[row.uri_sha256] = row
        return rows

    @staticmethod
    def _write_facts(
        connection: Connection,
        latest: dict[str, DropFolderSeen],
        current: dict[str, Any],
        starts: dict[str, list[list[str | None]]],
        now: datetime,
    ) -> None:
        def facts(digest: str) -> dict[str, Any]:
            seen = latest[digest]
            return {
                "objects": seen.objects,
                "size_bytes": seen.size_bytes,
                "newest_upload_at": seen.newest_upload_at,
                "starts": starts[digest],
                "last_seen_at": now,
                "region": seen.region,
            }

        new = [
            {
                "uri_sha256": digest,
                "location": latest[digest].location,
                "folder": latest[digest].folder,
                "first_seen_at": now,
                **facts(digest),
            }
            for digest in sorted(latest)
            if digest not in current
        ]
        if new:
            connection.execute(insert(drop_sources), new)
        known = [
            {"key": digest, **{f"new_{name}": value for name, value in facts(digest).items()}}
            for digest in sorted(latest)
            if digest in current
        ]
        if known:
            table = drop_sources.c
            connection.execute(
                update(drop_sources)
                .where(table.uri_sha256 == bindparam("key"))
                .values(
                    objects=bindparam("new_objects"),
                    size_bytes=bindparam("new_size_bytes"),
                    newest_upload_at=bindparam("new_newest_upload_at"),
                    starts=bindparam("new_starts", type_=drop_sources.c.starts.type),
                    last_seen_at=bindparam("new_last_seen_at"),
                    region=bindparam("new_region"),
                ),
                known,
            )

    def _decide_links(
        self, connection: Connection, unlinked: dict[str, DropFolderSeen]
    ) -> dict[str, Link]:
        """Decides the links of unlinked folders (the batch's own links count for later ones)."""
        if not unlinked:
            return {}
        names = {seen.folder for seen in unlinked.values()} | {
            start.registered_name
            for seen in unlinked.values()
            for start in seen.starts
            if start.registered_name
        }
        named = {
            name: bucket.bucket_id for name, bucket in buckets_named(connection, names).items()
        }
        others = {
            uri_digest(folder_uri(seen.location, start.instance_name))
            for seen in unlinked.values()
            for start in seen.starts
            if start.instance_name != seen.folder
        }
        linked = self._linked(connection, sorted(others))
        links: dict[str, Link] = {}
        for digest in sorted(unlinked):
            seen = unlinked[digest]

            def bucket_of_folder(folder: str, location: str = seen.location) -> str | None:
                return linked.get(uri_digest(folder_uri(location, folder)))

            link = link_for(seen, named.get, bucket_of_folder)
            if link is not None:
                links[digest] = link
                linked[digest] = link.bucket_id
        return links

    @staticmethod
    def _linked(connection: Connection, digests: list[str]) -> dict[str, str]:
        table = drop_sources.c
        found: dict[str, str] = {}
        for chunk in _chunks(digests):
            query = select(table.uri_sha256, table.bucket_id).where(
                table.uri_sha256.in_(chunk), table.bucket_id.is_not(None)
            )
            for row in connection.execute(query):
                found[row.uri_sha256] = row.bucket_id
        return found

    # -- operators ---------------------------------------------------------------------------

    def list_sources(
        self, *, unclaimed: bool | None, bucket: str | None, after: int | None, limit: int
    ) -> tuple[list[SourceRow], int]:
        """Returns a page of sources by id, and how many match in all."""
        conditions: list[ColumnElement[bool]] = []
        if unclaimed is True:
            conditions.append(drop_sources.c.bucket_id.is_(None))
        elif unclaimed is False:
            conditions.append(drop_sources.c.bucket_id.is_not(None))
        if bucket is not None:
            conditions.append(buckets.c.name == bucket)
        joined = drop_sources.outerjoin(buckets, buckets.c.id == drop_sources.c.bucket_id)
        query = (
            select(drop_sources, buckets.c.name.label("bucket"))
            .select_from(joined)
            .where(*conditions)
            .order_by(drop_sources.c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(drop_sources.c.id > after)
        count = select(func.count()).select_from(joined).where(*conditions)
        with self._engine.connect() as connection:
            rows = [_source_row(row._mapping) for row in connection.execute(query)]
            total = int(connection.execute(count).scalar_one())
        return rows, total

    def find(self, uri: str) -> SourceRow | None:
        """Returns the source of a folder URI, if the log-extractor reported it."""
        with self._engine.connect() as connection:
            return self._find(connection, uri)

    def adopt(self, uri: str, bucket_name: str, *, move: bool) -> tuple[SourceRow, Decision]:
        """Links a folder to an existing bucket (an operator's choice).

        Raises:
            SourceError: no such source or bucket (404), or the folder is linked to another
                bucket and `move` was not asked (409). Nothing is changed then.
        """
        return with_retries(lambda: self._adopt_once(uri, bucket_name, move=move))

    def _adopt_once(self, uri: str, bucket_name: str, *, move: bool) -> tuple[SourceRow, Decision]:
        now = utcnow()
        with self._engine.begin() as connection:
            source = self._find(connection, uri, lock=True)
            if source is None:
                raise SourceError(404, f"no drop source {uri}: see rbr sources list")
            bucket = self._buckets.lock_rows(connection, [bucket_name]).get(bucket_name)
            if bucket is None:
                raise SourceError(404, _unknown_bucket(connection, bucket_name))
            if source.bucket_id not in (None, bucket.id) and not move:
                raise SourceError(
                    409,
                    f"{uri} feeds bucket {source.bucket}; nothing was changed (set move to "
                    "link it to another bucket)",
                )
            decision = self._link(
                connection, uri_digest(uri), Link(bucket.id, LinkReason.OPERATOR), now
            )
            adopted = self._find(connection, uri)
        assert adopted is not None
        return adopted, decision

    def create_bucket(
        self,
        uri: str,
        *,
        name: str | None,
        ip_address: str,
        operating_system: str | None,
    ) -> tuple[SourceRow, BucketRow]:
        """Makes a new active `s3-drop` bucket of an unclaimed folder and links the folder.

        The bucket gets a random token (it never calls the registry nor is called); its
        name is the folder's unless given.

        Raises:
            SourceError: no such source (404); the folder feeds a bucket already, or the name
                is taken, or the folder's name is not a valid bucket name and none was given
                (409/422). Nothing is changed then.
        """
        return with_retries(
            lambda: self._create_once(
                uri, name=name, ip_address=ip_address, operating_system=operating_system
            )
        )

    def _create_once(
        self, uri: str, *, name: str | None, ip_address: str, operating_system: str | None
    ) -> tuple[SourceRow, BucketRow]:
        now = utcnow()
        with self._engine.begin() as connection:
            source = self._find(connection, uri, lock=True)
            if source is None:
                raise SourceError(404, f"no drop source {uri}: see rbr sources list")
            if source.bucket_id is not None:
                raise SourceError(409, f"{uri} feeds bucket {source.bucket} already")
            bucket_name = name or source.folder
            if self._buckets.lock_rows(connection, [bucket_name]):
                raise SourceError(409, f"a bucket named {bucket_name} exists; choose a name")
            token = secrets.token_urlsafe(32)
            row = BucketRow(
                id=str(uuid.uuid4()),
                name=bucket_name,
                state=BucketState.ACTIVE.value,
                ip_address=ip_address,
                port=None,
                operating_system=operating_system,
                cpu_usage=None,
                memory_usage=None,
                disk_space=None,
                uptime=None,
                connections=None,
                s3_bucket_name=None,
                s3_region=None,
                s3_prefix=None,
                token_hash=self._vault.fingerprint(token),
                token_ciphertext=self._vault.encrypt(token),
                version=1,
                registered_at=now,
                updated_at=now,
                approved_at=now,
                delivery_mode=DeliveryMode.S3_DROP.value,
                delivery_mode_pinned=True,
            )
            connection.execute(insert(buckets), [row.values()])
            self._buckets.announce(connection, [row], now)
            self._link(connection, uri_digest(uri), Link(row.id, LinkReason.OPERATOR), now)
            created = self._find(connection, uri)
        assert created is not None
        return created, row

    # -- helpers ----------------------------------------------------------------------------

    def _link(self, connection: Connection, digest: str, link: Link, now: datetime) -> Decision:
        """Links the folder and makes its bucket `s3-drop` if it never answered a poll."""
        connection.execute(
            update(drop_sources)
            .where(drop_sources.c.uri_sha256 == digest)
            .values(bucket_id=link.bucket_id, linked_by=link.reason.value, linked_at=now)
        )
        row = connection.execute(
            select(buckets).where(buckets.c.id == link.bucket_id).with_for_update()
        ).first()
        assert row is not None
        decision = mode_after_link(BucketRow.from_mapping(row._mapping), now)
        if decision.verdict is Verdict.UPDATED and decision.row is not None:
            self._buckets.write_row(connection, decision.row)
            self._buckets.announce(connection, [decision.row], now)
        return decision

    def _find(self, connection: Connection, uri: str, *, lock: bool = False) -> SourceRow | None:
        joined = drop_sources.outerjoin(buckets, buckets.c.id == drop_sources.c.bucket_id)
        query = (
            select(drop_sources, buckets.c.name.label("bucket"))
            .select_from(joined)
            .where(drop_sources.c.uri_sha256 == uri_digest(uri))
        )
        if lock:
            query = query.with_for_update(of=drop_sources)
        row = connection.execute(query).first()
        return _source_row(row._mapping) if row else None


def _unknown_bucket(connection: Connection, name: str) -> str:
    """Says that no bucket has that name, and which bucket it designates if merged."""
    merged = bucket_named(connection, name)
    if merged is not None and merged.alias is not None:
        return f"no bucket named {name}: it was merged into bucket {merged.name}"
    return f"no bucket named {name}"


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _merged_starts(stored: Any, seen: DropFolderSeen) -> list[list[str | None]]:
    """Returns the starts known of a folder: those stored, then new ones (at most 100)."""
    merged: list[list[str | None]] = [list(pair) for pair in (stored or [])]
    for start in seen.starts:
        pair = [start.instance_name, start.registered_name]
        if pair not in merged:
            merged.append(pair)
    return merged[:MAX_STARTS]


def _as_starts(pairs: list[list[str | None]]) -> list[InstanceStart]:
    return [InstanceStart(instance_name=str(pair[0]), registered_name=pair[1]) for pair in pairs]


def _source_row(mapping: Any) -> SourceRow:
    return SourceRow(
        id=mapping["id"],
        location=mapping["location"],
        region=mapping["region"],
        folder=mapping["folder"],
        bucket_id=mapping["bucket_id"],
        bucket=mapping["bucket"],
        linked_by=mapping["linked_by"],
        linked_at=mapping["linked_at"],
        objects=mapping["objects"],
        size_bytes=mapping["size_bytes"],
        newest_upload_at=mapping["newest_upload_at"],
        starts=list(mapping["starts"] or []),
        first_seen_at=mapping["first_seen_at"],
        last_seen_at=mapping["last_seen_at"],
    )

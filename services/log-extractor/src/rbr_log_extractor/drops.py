"""Discovering instance folders in the S3 drop locations and reporting them to the registrar.

One replica per RBR_DROP_SCAN_INTERVAL lists each location, reads unclaimed folders for the
honeypot's identity lines and reports on `drop.discovered` (see the README's Discovery).
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine, select

from rbr_log_extractor.locations import DropLocation
from rbr_log_extractor.settings import ExtractorSettings
from rbr_runtime.db.tables import drop_sources
from rbr_runtime.kafka import EventProducer
from rbr_runtime.rustbucket_identity import read_identities
from rbr_runtime.schedule import TaskClaims, slot_of
from rbr_schemas import DROP_DISCOVERED, DropFolderSeen, InstanceStart, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

TASK = "drop_scan"
CHUNK = 500
IDENTITY_READERS = 8
MAX_STARTS = 100
SCAN_SECONDS = Histogram(
    "rbr_drop_scan_seconds",
    "Time one scan of the drop locations took.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
FOLDERS = Gauge("rbr_drop_folders", "Instance folders in the drop locations (last scan).")
REPORTS = Counter("rbr_drop_reports_total", "Drop folders reported on drop.discovered.")
IDENTITY_READS = Counter(
    "rbr_drop_identity_reads_total", "Files of unlinked drop folders read for identity lines."
)


def uri_digest(uri: str) -> str:
    """Returns the key of a folder URI in `drop_sources` (the registrar's)."""
    return hashlib.sha256(uri.encode()).hexdigest()


@dataclass
class Folder:
    """One instance folder as listed now."""

    name: str
    files: dict[str, Any] = field(default_factory=dict)
    """File name (relative to the folder) -> the listing's item."""

    @property
    def size_bytes(self) -> int:
        """Returns the total size of its files."""
        return sum(int(item["Size"]) for item in self.files.values())

    @property
    def newest_upload_at(self) -> datetime | None:
        """Returns the latest LastModified of its files."""
        return max((item["LastModified"] for item in self.files.values()), default=None)


@dataclass(frozen=True)
class Known:
    """What the registrar has recorded of a folder."""

    linked: bool
    objects: int
    size_bytes: int
    newest_upload_at: datetime | None


@dataclass
class Identity:
    """The identity lines read so far from one folder's files (this process's memory)."""

    read: set[tuple[str, str]] = field(default_factory=set)
    """(key, ETag) of the file versions read."""
    starts: list[InstanceStart] = field(default_factory=list)


def list_folders(client: S3Client, location: DropLocation) -> dict[str, Folder]:
    """Lists a location whole and returns its instance folders (objects under a folder)."""
    folders: dict[str, Folder] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            folder, _, name = item["Key"][len(location.prefix) :].partition("/")
            if not folder or not name or not plausible_folder(folder):
                continue  # a file beside the folders, a folder marker, or no honeypot's name
            folders.setdefault(folder, Folder(folder)).files[name] = item
    return folders


def plausible_folder(name: str) -> bool:
    """Tells whether a folder name can be shown to operators (printable, at most 255)."""
    return len(name) <= 255 and not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name)


def decisive(start: InstanceStart, folder: str, linked_folders: set[str]) -> bool:
    """Tells whether a start settles which bucket the folder feeds (no more reading needed)."""
    if start.instance_name == folder:
        return start.registered_name is not None
    return start.instance_name in linked_folders


class DropScanner:
    """Scans the drop locations and reports their folders (a periodic task's action)."""

    def __init__(
        self,
        settings: ExtractorSettings,
        *,
        engine: Engine,
        source_s3: Callable[[str], S3Client],
        producer: EventProducer,
        claims: TaskClaims | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._source_s3 = source_s3
        self._producer = producer
        self._claims = claims
        self._identities: dict[str, Identity] = {}

    def scan(self, now: datetime | None = None) -> int:
        """Scans every location once (if this replica claims the slot); returns reports sent."""
        moment = now or utcnow()
        slot = str(slot_of(moment, self._settings.drop_scan_interval))
        if self._claims is not None and not self._claims.claim(TASK, slot):
            return 0
        started = time.monotonic()
        try:
            reported = sum(self._scan_location(location) for location in self._settings.locations)
        except BaseException:
            if self._claims is not None:
                self._claims.release(TASK, slot)
            raise
        if self._claims is not None:
            self._claims.finish(TASK, slot, "ok", f"{reported} folders reported")
        SCAN_SECONDS.observe(time.monotonic() - started)
        return reported

    def _scan_location(self, location: DropLocation) -> int:
        client = self._source_s3(location.region)
        folders = list_folders(client, location)
        FOLDERS.set(len(folders))
        known = self._known(location, folders)
        linked_folders = {name for name, fact in known.items() if fact.linked}
        reported: list[tuple[Folder, bool]] = []
        for folder in sorted(folders.values(), key=lambda f: f.name):
            fact = known.get(folder.name)
            changed = fact is None or (
                fact.objects,
                fact.size_bytes,
                fact.newest_upload_at,
            ) != (len(folder.files), folder.size_bytes, folder.newest_upload_at)
            if fact is not None and fact.linked and not changed:
                continue
            reported.append((folder, fact is None or not fact.linked))

        def starts_of(entry: tuple[Folder, bool]) -> list[InstanceStart]:
            folder, unclaimed = entry
            if not unclaimed:
                return []
            return self._read_identity(client, location, folder, linked_folders)

        # Identity reads are S3 round trips: a few at once.
        with ThreadPoolExecutor(IDENTITY_READERS) as pool:
            starts = list(pool.map(starts_of, reported))
        reports = [
            DropFolderSeen(
                location=location.uri,
                region=location.region,
                folder=folder.name,
                objects=len(folder.files),
                size_bytes=folder.size_bytes,
                newest_upload_at=folder.newest_upload_at,
                starts=found[:MAX_STARTS],
                seen_at=utcnow(),
            )
            for (folder, _), found in zip(reported, starts, strict=True)
        ]
        for chunk in _chunks(reports):
            self._producer.send_events(
                DROP_DISCOVERED,
                [
                    (seen.uri, self._producer.event(DROP_DISCOVERED, seen, subject=seen.uri))
                    for seen in chunk
                ],
            )
        REPORTS.inc(len(reports))
        if reports:
            log.info(
                "drop location %s: %d folders, %d reported",
                location.uri,
                len(folders),
                len(reports),
            )
        return len(reports)

    def _known(self, location: DropLocation, folders: dict[str, Folder]) -> dict[str, Known]:
        """Returns what the registrar recorded of the listed folders."""
        by_digest = {uri_digest(location.folder_uri(name)): name for name in folders}
        known: dict[str, Known] = {}
        table = drop_sources.c
        with self._engine.connect() as connection:
            for chunk in _chunks(list(by_digest)):
                rows = connection.execute(
                    select(
                        table.uri_sha256,
                        table.bucket_id,
                        table.objects,
                        table.size_bytes,
                        table.newest_upload_at,
                    ).where(table.uri_sha256.in_(chunk))
                )
                for row in rows:
                    known[by_digest[row.uri_sha256]] = Known(
                        row.bucket_id is not None, row.objects, row.size_bytes, row.newest_upload_at
                    )
        return known

    def _read_identity(
        self, client: S3Client, location: DropLocation, folder: Folder, linked_folders: set[str]
    ) -> list[InstanceStart]:
        """Reads the folder's unread files for identity lines until one settles it."""
        identity = self._identities.setdefault(location.folder_uri(folder.name), Identity())
        for name in sorted(folder.files):
            if any(decisive(s, folder.name, linked_folders) for s in identity.starts):
                break
            item = folder.files[name]
            version = (item["Key"], item["ETag"])
            if version in identity.read or int(item["Size"]) == 0:
                continue
            identity.read.add(version)
            IDENTITY_READS.inc()
            found = self._starts_in(client, location.bucket, item)
            identity.starts.extend(s for s in found if s not in identity.starts)
        return list(identity.starts)

    def _starts_in(self, client: S3Client, bucket: str, item: Any) -> list[InstanceStart]:
        last = min(int(item["Size"]), self._settings.drop_identity_bytes) - 1
        body = client.get_object(
            Bucket=bucket, Key=item["Key"], IfMatch=item["ETag"], Range=f"bytes=0-{last}"
        )["Body"]
        identity = read_identities(body.iter_lines(), max_lines=10**9)
        return [
            InstanceStart(instance_name=s.instance_name, registered_name=s.registered_name)
            for s in identity.starts
        ]


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]

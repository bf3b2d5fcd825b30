"""S3 copies from a bucket's drop folders: each file name is one logical file.

The real honeypot uploads its daily files again and again, and after a restart again under
its new instance's folder, possibly grown. So a file is copied from where its last copy
ended, whichever folder it is in, smallest version first; other content under its name is
a rewrite, copied whole again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rbr_log_extractor.announce import Announcer
from rbr_log_extractor.copies import REWRITTEN, ObjectCopier, prefix_digest
from rbr_log_extractor.locations import parse_location
from rbr_log_extractor.outcome import Outcome, check_stopping
from rbr_log_extractor.storage import StoredObject
from rbr_log_extractor.store import DropFile, DropFolder, DropState, ExtractState, LedgerEntry
from rbr_schemas import BucketRegistered

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# The object an earlier copy was read from is gone, or was replaced meanwhile.
MISSING_OR_CHANGED = ("404", "NoSuchKey", "412", "PreconditionFailed")


@dataclass(frozen=True)
class DropObject:
    """One object of a bucket's drop folders, as listed."""

    uri: str
    file_name: str
    bucket: str
    client: Any
    item: Any

    @property
    def size(self) -> int:
        """Returns its size."""
        return int(self.item["Size"])


class DropCopies:
    """Copies what is new in the drop folders linked to a bucket."""

    def __init__(
        self,
        *,
        state: ExtractState,
        drops: DropState,
        copier: ObjectCopier,
        source_s3: Callable[[str], S3Client],
        announcer: Announcer,
    ) -> None:
        self._state = state
        self._drops = drops
        self._copier = copier
        self._source_s3 = source_s3
        self._announcer = announcer

    def copy(
        self,
        record: BucketRegistered,
        folders: list[DropFolder],
        stopping: Callable[[], bool],
        outcome: Outcome,
    ) -> None:
        """Copies what is new in the bucket's drop folders, file name by file name."""
        objects = self._list(folders, outcome)
        done = self._state.copied(record.name, [o.uri for o in objects])
        new = [
            o
            for o in objects
            if (entry := done.get(o.uri)) is None or entry.source_etag != o.item["ETag"]
        ]
        files = self._drops.files(record.name, [o.file_name for o in new])
        for drop in sorted(new, key=lambda o: (o.file_name, o.size, o.uri)):
            check_stopping(stopping)
            file, stored = self._copy_object(record, drop, files.get(drop.file_name), stopping)
            files[drop.file_name] = file
            outcome.add(stored)

    def _list(self, folders: list[DropFolder], outcome: Outcome) -> list[DropObject]:
        objects: list[DropObject] = []
        for folder in folders:
            location = parse_location(f"{folder.location}?region={folder.region}")
            client = self._source_s3(folder.region)
            prefix = location.folder_prefix(folder.folder)
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix) :]
                    if not name:
                        continue
                    outcome.saw(item)
                    uri = f"s3://{location.bucket}/{item['Key']}"
                    objects.append(DropObject(uri, name, location.bucket, client, item))
        return objects

    def _copy_object(
        self,
        record: BucketRegistered,
        drop: DropObject,
        file: DropFile | None,
        stopping: Callable[[], bool],
    ) -> tuple[DropFile, StoredObject | None]:
        """Copies what one drop object adds to its logical file; returns the file's state."""
        item = drop.item
        offset, whole = 0, hashlib.sha256()
        if file is not None and drop.size >= file.size_bytes:
            offset, whole = self._matching_prefix(drop, file.size_bytes, file.source_sha256)
        elif file is not None and self._is_prefix_of(drop, file):
            # An earlier, smaller version of what was copied (from another instance's folder).
            self._drops.record_copy(
                record.name, source=_ledger_entry(drop, None, None), file=file,
                pending_event=None,
            )  # fmt: skip
            return file, None
        if file is not None and file.size_bytes > 0 and offset == 0:
            _rewritten(drop.uri, item["ETag"])
        if offset == drop.size:
            kept = DropFile(
                drop.file_name, drop.size, whole.hexdigest(), drop.uri, item["ETag"],
                file.target_key if file is not None else None,
            )  # fmt: skip
            self._drops.record_copy(
                record.name, source=_ledger_entry(drop, kept.source_sha256, kept.target_key),
                file=kept, pending_event=None,
            )  # fmt: skip
            return kept, None
        stored, whole_sha, event = self._copier.copy_bytes(
            record, drop.client, drop.bucket, drop.uri, item, offset, whole, stopping
        )
        copied = DropFile(drop.file_name, drop.size, whole_sha, drop.uri, item["ETag"], stored.key)
        source = _ledger_entry(drop, whole_sha, stored.key)
        self._announcer.announce(
            event,
            lambda payload: self._drops.record_copy(
                record.name, source=source, file=copied, pending_event=payload
            ),
        )
        return copied, stored

    def _matching_prefix(self, drop: DropObject, length: int, expected: str) -> tuple[int, Any]:
        """Returns (length, its hash) if the object starts with the bytes copied, else (0, new)."""
        if length == 0:
            return 0, hashlib.sha256()
        digest = prefix_digest(
            drop.client, drop.bucket, drop.item["Key"], drop.item["ETag"], length
        )
        if digest.hexdigest() != expected:
            return 0, hashlib.sha256()
        return length, digest

    def _is_prefix_of(self, drop: DropObject, file: DropFile) -> bool:
        """Tells whether a smaller object holds the first bytes of what was copied of its file.

        Compared with the object the copied bytes were last read from (still in S3); if it
        is gone or changed, the smaller object counts as rewritten.
        """
        mine = prefix_digest(
            drop.client, drop.bucket, drop.item["Key"], drop.item["ETag"], drop.size
        )
        bucket, _, key = file.reference_uri.removeprefix("s3://").partition("/")
        try:
            theirs = prefix_digest(drop.client, bucket, key, file.reference_etag, drop.size)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in MISSING_OR_CHANGED:
                raise
            return False
        return bool(mine.hexdigest() == theirs.hexdigest())


def _ledger_entry(drop: DropObject, sha256: str | None, target_key: str | None) -> LedgerEntry:
    return LedgerEntry(drop.uri, drop.item["ETag"], drop.size, sha256, target_key)


def _rewritten(uri: str, etag: str) -> None:
    REWRITTEN.inc()
    log.warning(
        "%s holds other content than what was copied of that file (ETag %s); copying it "
        "whole again",
        uri,
        etag,
    )

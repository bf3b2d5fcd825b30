"""S3 copies: a bucket's own S3 source copied into raw objects, and the copying they share.

The objects under `{s3_prefix}{name}/` not in the copy ledger yet are copied (server-side
when both are on one S3 service); a source that grew since its copy gets only its new bytes
copied, one rewritten otherwise is copied whole again. Each copy is keyed by the moment it
is made, and recorded in the ledger together with its event (see `announce`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from prometheus_client import Counter

from rbr_log_extractor.announce import EVENT_NAMESPACE, Announcer
from rbr_log_extractor.outcome import ExtractionError, Outcome, check_stopping
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import (
    StoredObject,
    copy_with_metadata,
    head_metadata,
    object_metadata,
    raw_key,
    raw_object_writer,
)
from rbr_log_extractor.store import ExtractState, LedgerEntry
from rbr_schemas import BucketRegistered, LogsExtracted, LogSource, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
REWRITTEN = Counter(
    "rbr_extractor_rewritten_total",
    "S3 source objects rewritten with other content after a copy (copied whole again).",
)


def source_prefix(prefix: str, bucket_name: str) -> str:
    """Returns where a bucket's own log objects are: `{prefix}{name}/`.

    Several honeypots may share one S3 bucket and prefix; their objects differ by name, so
    listing only this bucket's folder never attributes another honeypot's logs to it.
    """
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{folder}{bucket_name}/"


def prefix_digest(client: S3Client, bucket: str, key: str, etag: str | None, length: int) -> Any:
    """Returns the sha256 object of a source's first `length` bytes (of that ETag, if given)."""
    digest = hashlib.sha256()
    if length <= 0:
        return digest
    span = f"bytes=0-{length - 1}"
    if etag:
        body = client.get_object(Bucket=bucket, Key=key, Range=span, IfMatch=etag)["Body"]
    else:
        body = client.get_object(Bucket=bucket, Key=key, Range=span)["Body"]
    for chunk in body.iter_chunks(READ_CHUNK):
        digest.update(chunk)
    return digest


def source_sha256(client: S3Client, bucket: str, key: str, etag: str) -> tuple[int, str]:
    """Returns a source object's size and sha256: from its full-object checksum, or read."""
    head = client.head_object(Bucket=bucket, Key=key, IfMatch=etag, ChecksumMode="ENABLED")
    size = int(head["ContentLength"])
    checksum = head.get("ChecksumSHA256")
    if checksum and head.get("ChecksumType") == "FULL_OBJECT":
        return size, base64.b64decode(checksum).hex()
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
    for chunk in body.iter_chunks(READ_CHUNK):
        digest.update(chunk)
    return size, digest.hexdigest()


class ObjectCopier:
    """Copies (part of) a source object into a raw object of its own, with its event."""

    def __init__(self, settings: ExtractorSettings, s3: S3Client) -> None:
        self._settings = settings
        self._s3 = s3

    def copy_bytes(  # noqa: PLR0917 - one call site per kind of source, all positional
        self,
        record: BucketRegistered,
        client: S3Client,
        bucket: str,
        uri: str,
        item: Any,
        offset: int,
        whole: Any,
        stopping: Callable[[], bool],
    ) -> tuple[StoredObject, str, LogsExtracted]:
        """Copies a source object's bytes from offset on into a raw object of its own.

        Returns the stored object, the sha256 of the whole source, and the object's
        `logs.extracted` event (to be recorded, then sent).
        """
        key, etag = item["Key"], item["ETag"]
        version = f"{uri}#{etag}" if offset == 0 else f"{uri}#{etag}@{offset}"
        object_id = str(uuid.uuid5(EVENT_NAMESPACE, version))
        # Keyed by the copy's own time, as a pull is: retention goes by the key's date.
        copied_at = utcnow()
        final_key = raw_key(record.name, copied_at, object_id)
        if offset == 0 and self._settings.server_side_copy:
            stored = self._server_side_copy(client, bucket, key, etag, final_key)
            whole_sha = stored.sha256
        else:
            stored = self._stream_copy(
                client,
                bucket=bucket,
                key=key,
                etag=etag,
                name=record.name,
                final_key=final_key,
                object_id=object_id,
                offset=offset,
                whole=whole,
                stopping=stopping,
            )
            whole_sha = whole.hexdigest()
        event = LogsExtracted(
            object_id=object_id,
            name=record.name,
            ip_address=record.ip_address,
            s3_bucket=self._settings.s3_bucket,
            s3_key=stored.key,
            size_bytes=stored.size,
            sha256=stored.sha256,
            source=LogSource.S3,
            source_ref=uri,
            extracted_at=copied_at,
        )
        return stored, whole_sha, event

    def stored_sha256(self, target_key: str | None) -> str | None:
        """Returns the sha256 of an earlier whole copy, from its metadata (None if gone)."""
        if target_key is None:
            return None
        try:
            _, metadata = head_metadata(self._s3, self._settings.s3_bucket, target_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                raise
            return None  # gone with retention: nothing to compare with, the source is copied
        return metadata.get("sha256")

    def _server_side_copy(
        self, client: S3Client, bucket: str, key: str, etag: str, final_key: str
    ) -> StoredObject:
        """Copies a whole source within one S3 service (the bytes do not pass through here)."""
        size, sha256 = source_sha256(client, bucket, key, etag)
        copy_with_metadata(
            self._s3,
            source_bucket=bucket,
            source_key=key,
            bucket=self._settings.s3_bucket,
            key=final_key,
            metadata=object_metadata(size, sha256, LogSource.S3.value),
            source_client=client,
            source_etag=etag,
        )
        return StoredObject(final_key, size, sha256)

    def _stream_copy(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        etag: str,
        name: str,
        final_key: str,
        object_id: str,
        offset: int,
        whole: Any,
        stopping: Callable[[], bool],
    ) -> StoredObject:
        """Copies through this process the source's bytes from offset on.

        Used when the source is on another S3 service than ours, or when only what a
        source gained since its last copy is copied. `whole` is fed the bytes too. When the
        service stops, the copy is abandoned (its upload aborted) and done next cycle.
        """
        writer = raw_object_writer(
            self._s3,
            self._settings,
            name=name,
            object_id=object_id,
            final_key=final_key,
            source=LogSource.S3.value,
        )
        try:
            body = client.get_object(
                Bucket=bucket, Key=key, IfMatch=etag, Range=f"bytes={offset}-"
            )["Body"]
            for chunk in body.iter_chunks(READ_CHUNK):
                check_stopping(stopping)
                whole.update(chunk)
                writer.write(chunk)
            stored = writer.finish()
        except BaseException:
            writer.abort()
            raise
        if stored is None:
            raise ExtractionError(f"{key} was empty when read")
        return stored


class SourceCopies:
    """Copies what is new under a bucket's own S3 folder (`record.s3`)."""

    def __init__(
        self,
        *,
        state: ExtractState,
        copier: ObjectCopier,
        source_s3: Callable[[str], S3Client],
        announcer: Announcer,
    ) -> None:
        self._state = state
        self._copier = copier
        self._source_s3 = source_s3
        self._announcer = announcer

    def copy(
        self, record: BucketRegistered, stopping: Callable[[], bool], outcome: Outcome
    ) -> None:
        """Copies the objects not copied yet, or what they gained; counts them in outcome.

        Every listing is complete, so an object appearing out of key order is still copied.
        """
        source = record.s3
        assert source is not None
        client = self._source_s3(source.region)
        prefix = source_prefix(source.prefix, record.name)
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=source.bucket_name, Prefix=prefix):
            items = {
                f"s3://{source.bucket_name}/{item['Key']}": item
                for item in page.get("Contents", [])
            }
            for item in items.values():
                outcome.saw(item)
            done = self._state.copied(record.name, items)
            for uri in sorted(items):
                entry = done.get(uri)
                if entry is not None and entry.source_etag == items[uri]["ETag"]:
                    continue
                check_stopping(stopping)
                outcome.add(
                    self._copy_one(record, client, uri, items[uri], entry, stopping=stopping)
                )

    def _copy_one(
        self,
        record: BucketRegistered,
        client: S3Client,
        uri: str,
        item: Any,
        entry: LedgerEntry | None,
        *,
        stopping: Callable[[], bool],
    ) -> StoredObject | None:
        """Copies a source object not copied yet, or what it gained since its last copy.

        A source that was copied and then grew (same key, longer, its earlier bytes
        unchanged: a log file uploaded again with more lines) gets only its new bytes copied,
        as an object of their own, so no record is parsed twice. A source rewritten
        otherwise (shorter, or its earlier bytes changed) is copied whole again: its records
        become rows beside those of the version copied before.
        """
        source = record.s3
        assert source is not None
        etag, size = item["ETag"], int(item["Size"])
        offset, whole = self._unchanged_prefix(client, source.bucket_name, item, entry)
        if offset == size:
            # Nothing new (an empty object, or the same bytes uploaded again).
            self._state.record_copy(
                record.name,
                source_uri=uri,
                source_etag=etag,
                size_bytes=size,
                source_sha256=whole.hexdigest(),
                target_key=entry.target_key if entry is not None else None,
            )
            return None
        stored, whole_sha, event = self._copier.copy_bytes(
            record, client, source.bucket_name, uri, item, offset, whole, stopping
        )
        # The ledger row and the pending event in one transaction: once the ledger says the
        # source was copied, its copy is sure to be announced.
        self._announcer.announce(
            event,
            lambda payload: self._state.record_copy(
                record.name,
                source_uri=uri,
                source_etag=etag,
                size_bytes=size,
                source_sha256=whole_sha,
                target_key=stored.key,
                pending_event=payload,
            ),
        )
        return stored

    def _unchanged_prefix(
        self, client: S3Client, bucket: str, item: Any, entry: LedgerEntry | None
    ) -> tuple[int, Any]:
        """Returns how many of the source's first bytes were copied before, and their hash.

        The hash object is returned to be fed the rest of the source, so the ledger gets the
        sha256 of the whole new version without reading it twice. (0, an empty hash) means
        the source is to be copied whole.
        """
        copied = entry.size_bytes if entry is not None else 0
        if entry is None or copied == 0 or copied > int(item["Size"]):
            return 0, hashlib.sha256()
        # Ledger rows from before 0009 have no sha256: the earlier copy's metadata has it.
        expected = entry.source_sha256 or self._copier.stored_sha256(entry.target_key)
        digest = prefix_digest(client, bucket, item["Key"], item["ETag"], copied)
        if digest.hexdigest() != expected:
            REWRITTEN.inc()
            log.warning(
                "%s was rewritten after it was copied (ETag %s, was %s); copying it whole again",
                item["Key"],
                item["ETag"],
                entry.source_etag,
            )
            return 0, hashlib.sha256()
        return copied, digest

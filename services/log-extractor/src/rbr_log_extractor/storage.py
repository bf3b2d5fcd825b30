"""Raw log objects in the registry's bucket, with their size and sha256 as metadata.

Key layout: `raw/{bucket}/{yyyy}/{mm}/{dd}/{timestamp}-{object id}.log`; large objects are
staged under `staging/` and never visible under `raw/` without their metadata.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import TransferConfig

from rbr_log_extractor.settings import ExtractorSettings
from rbr_schemas import utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

RAW_PREFIX = "raw/"
STAGING_PREFIX = "staging/"
CONTENT_TYPE = "text/plain"
GIB = 1024**3
# copy_object handles up to 5 GiB; beyond that the managed copy switches to a multipart copy.
COPY_CONFIG = TransferConfig(multipart_threshold=5 * GIB, multipart_chunksize=512 * 1024**2)
STALE_AFTER = timedelta(days=1)


def raw_key(bucket_name: str, moment: datetime, object_id: str) -> str:
    """Returns the key of a raw object taken at `moment` (UTC)."""
    return f"{RAW_PREFIX}{bucket_name}/{moment:%Y/%m/%d}/{moment:%Y%m%dT%H%M%SZ}-{object_id}.log"


def staging_key(bucket_name: str, object_id: str) -> str:
    """Returns where a large pull is streamed before it gets its final key."""
    return f"{STAGING_PREFIX}{bucket_name}/{object_id}.log"


def object_metadata(size: int, sha256: str, source: str) -> dict[str, str]:
    """Returns the user metadata stored with a raw object."""
    return {"sha256": sha256, "size": str(size), "source": source}


@dataclass(frozen=True)
class StoredObject:
    """A raw object in the registry's bucket."""

    key: str
    size: int
    sha256: str


class TooLarge(Exception):
    """The stream is larger than the configured maximum."""


class RawObjectWriter:
    """Streams one raw object into S3 with bounded memory (about two parts)."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        final_key: str,
        staging: str,
        part_bytes: int,
        max_bytes: int,
        source: str,
    ) -> None:
        """Prepares a writer; nothing is sent until the first part is full or finish().

        Args:
            s3: a client for the registry's bucket.
            bucket: the registry's bucket.
            final_key: the object's key under raw/.
            staging: where a multipart upload goes first.
            part_bytes: multipart part size (at least 5 MiB).
            max_bytes: the most bytes accepted.
            source: "http" or "s3", stored in the metadata.
        """
        self._s3 = s3
        self._bucket = bucket
        self._final_key = final_key
        self._staging_key = staging
        self._part_bytes = part_bytes
        self._max_bytes = max_bytes
        self._source = source
        self._buffer = bytearray()
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        """Returns how many bytes were written so far."""
        return self._size

    def write(self, data: bytes) -> None:
        """Adds bytes; uploads a part whenever one is full.

        Raises:
            TooLarge: more than max_bytes were written.
        """
        if not data:
            return
        self._size += len(data)
        if self._size > self._max_bytes:
            raise TooLarge(f"more than {self._max_bytes} bytes")
        self._sha256.update(data)
        self._buffer += data
        while len(self._buffer) >= self._part_bytes:
            with memoryview(self._buffer) as view:
                part = bytes(view[: self._part_bytes])  # one copy, not two
            del self._buffer[: self._part_bytes]
            self._upload_part(part)
            del part

    def finish(self) -> StoredObject | None:
        """Stores the object under its final key with its metadata; None if it is empty."""
        if self._size == 0:
            return None
        sha256 = self._sha256.hexdigest()
        metadata = object_metadata(self._size, sha256, self._source)
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=self._final_key,
                Body=bytes(self._buffer),
                Metadata=metadata,
                ContentType=CONTENT_TYPE,
            )
            self._buffer.clear()
            return StoredObject(self._final_key, self._size, sha256)
        if self._buffer:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._staging_key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
        )
        self._upload_id = None
        copy_with_metadata(
            self._s3,
            source_bucket=self._bucket,
            source_key=self._staging_key,
            bucket=self._bucket,
            key=self._final_key,
            metadata=metadata,
        )
        self._s3.delete_object(Bucket=self._bucket, Key=self._staging_key)
        return StoredObject(self._final_key, self._size, sha256)

    def abort(self) -> None:
        """Gives up: the multipart upload (if any) is aborted; nothing is left under raw/."""
        self._buffer.clear()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=self._staging_key, UploadId=upload_id
            )
        except Exception:  # noqa: BLE001 - housekeeping removes it later
            log.warning("could not abort upload %s of %s", upload_id, self._staging_key)

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._staging_key, ContentType=CONTENT_TYPE
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        response = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._staging_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})


def raw_object_writer(
    s3: S3Client,
    settings: ExtractorSettings,
    *,
    name: str,
    object_id: str,
    final_key: str,
    source: str,
) -> RawObjectWriter:
    """Returns a writer of one new raw object of the bucket `name`, as the settings bound it."""
    return RawObjectWriter(
        s3,
        settings.s3_bucket,
        final_key=final_key,
        staging=staging_key(name, object_id),
        part_bytes=settings.extract_part_bytes,
        max_bytes=settings.extract_max_bytes,
        source=source,
    )


def head_metadata(s3: S3Client, bucket: str, key: str) -> tuple[int, dict[str, str]]:
    """Returns an object's size and user metadata (keys in lower case)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    return int(head.get("ContentLength", 0)), metadata


def copy_with_metadata(
    s3: S3Client,
    *,
    source_bucket: str,
    source_key: str,
    bucket: str,
    key: str,
    metadata: dict[str, str],
    source_client: S3Client | None = None,
    source_etag: str | None = None,
) -> None:
    """Copies an object server-side to key, giving it metadata (multipart above 5 GiB).

    Args:
        s3: a client for the destination bucket.
        source_bucket: where the object is.
        source_key: its key.
        bucket: the destination bucket.
        key: the destination key.
        metadata: the destination's user metadata.
        source_client: a client for the source's region, when it differs.
        source_etag: copy only if the source still has this ETag (it was hashed as such).
    """
    extra: dict[str, Any] = {
        "Metadata": metadata,
        "MetadataDirective": "REPLACE",
        "ContentType": CONTENT_TYPE,
    }
    if source_etag is not None:
        extra["CopySourceIfMatch"] = source_etag
    s3.copy(
        {"Bucket": source_bucket, "Key": source_key},
        bucket,
        key,
        ExtraArgs=extra,
        SourceClient=source_client,
        Config=COPY_CONFIG,
    )


def remove_stale_staging(s3: S3Client, bucket: str, now: datetime | None = None) -> int:
    """Aborts uploads and deletes objects a crash left under staging/; returns how many."""
    cutoff = (now or utcnow()) - STALE_AFTER
    removed = 0
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=STAGING_PREFIX).get("Uploads", [])
    for upload in uploads:
        if upload["Initiated"] < cutoff:
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            removed += 1
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=STAGING_PREFIX):
        for item in page.get("Contents", []):
            if item["LastModified"] < cutoff:
                s3.delete_object(Bucket=bucket, Key=item["Key"])
                removed += 1
    return removed

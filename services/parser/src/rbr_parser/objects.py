"""Reading a raw log object from S3 as a stream: hashed as it goes, gunzipped if need be."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rbr_runtime.kafka import PermanentError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK_BYTES = 1 << 20
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class OpenedObject:
    """A raw object being read.

    Attributes:
        size: its size according to S3.
        metadata: its user metadata (sha256 and size, when the log-extractor stored it).
    """

    body: Any
    size: int
    metadata: dict[str, str]
    sha256: Any = field(default_factory=hashlib.sha256)
    bytes_read: int = 0

    def chunks(self) -> Iterator[bytes]:
        """Yields the object's bytes, hashing and counting them."""
        try:
            for chunk in self.body.iter_chunks(CHUNK_BYTES):
                self.sha256.update(chunk)
                self.bytes_read += len(chunk)
                yield chunk
        finally:
            self.body.close()

    @property
    def hexdigest(self) -> str:
        """Returns the sha256 of what was read so far."""
        digest: str = self.sha256.hexdigest()
        return digest


def _missing(error: ClientError, bucket: str, key: str) -> PermanentError | None:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code not in _MISSING:
        return None
    return PermanentError(
        f"raw object s3://{bucket}/{key} does not exist ({code}); was it deleted by "
        "retention before it was parsed?"
    )


def head_object(s3: S3Client, bucket: str, key: str) -> tuple[int, dict[str, str]]:
    """Returns an object's size and user metadata (keys in lower case).

    Raises:
        PermanentError: the object (or its bucket) does not exist.
    """
    try:
        response = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        raise _missing(error, bucket, key) or error from None
    metadata = {k.lower(): v for k, v in response.get("Metadata", {}).items()}
    return int(response.get("ContentLength", 0)), metadata


def open_object(s3: S3Client, bucket: str, key: str) -> OpenedObject:
    """Opens s3://bucket/key for streaming.

    Raises:
        PermanentError: the object (or its bucket) does not exist, so it never will be
            parsed; any other failure (network, credentials, throttling) is raised as is,
            to be retried.
    """
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        raise _missing(error, bucket, key) or error from None
    return OpenedObject(
        body=response["Body"],
        size=int(response.get("ContentLength", 0)),
        metadata={k.lower(): v for k, v in response.get("Metadata", {}).items()},
    )


def hash_object(s3: S3Client, bucket: str, key: str) -> tuple[str, int]:
    """Returns the sha256 and size of an object, read as a stream."""
    opened = open_object(s3, bucket, key)
    for _ in opened.chunks():
        pass
    return opened.hexdigest, opened.bytes_read


def decompressed(chunks: Iterator[bytes], limit: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yields the stream as is, or gunzipped when it starts with the gzip magic.

    Decompression output is produced at most `limit` bytes at a time, so a small compressed
    chunk that expands enormously (a gzip bomb) never sits in memory whole. Concatenated
    gzip members are all read.
    """
    first = next(chunks, b"")
    if not first.startswith(_GZIP_MAGIC):
        if first:
            yield first
        yield from chunks
        return
    try:
        yield from _gunzip(_prepend(first, chunks), limit)
    except zlib.error as error:
        raise PermanentError(f"raw object is not valid gzip: {error}") from None


def _gunzip(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    started = False
    for chunk in chunks:
        data = chunk
        while data:
            started = True
            yield inflater.decompress(data, limit)
            if inflater.eof:
                # The member ended: what follows is the next member (unconsumed_tail repeats
                # it at this point, so only unused_data is read).
                data = inflater.unused_data
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
                started = False
            else:
                data = inflater.unconsumed_tail
    yield inflater.flush()
    if started and not inflater.eof:
        raise zlib.error("the stream ends in the middle of a gzip member (truncated)")


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest

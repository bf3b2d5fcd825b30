"""The local stack's S3 endpoint: moto, with every bucket and object kept on disk.

moto's WSGI application, wrapped: once a request that changes a bucket or an object has
succeeded, and before its client gets the answer, the object's state is written to the data
folder (fsynced, then renamed into place) or removed from it; at start everything there is
loaded back. Why, and what is kept: docs/local-stack.md, "What survives what".

    python -m rbr_cli.durable_s3 --port 9000 --data-dir var/s3
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any
from xml.etree import ElementTree

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import FakeBucket, FakeKey, s3_backends
from moto.utilities.utils import get_partition
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request

# S3 bucket names: nothing that could step out of the data folder.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
COPY_CHUNK = 1024 * 1024
LOCK_STRIPES = 64

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class BucketRecord:
    """A bucket as kept on disk."""

    name: str
    account_id: str
    region: str


class ObjectStore:
    """The data folder: `<bucket>/bucket.json` and `<bucket>/objects/<aa>/<sha256 of key>`."""

    def __init__(self, root: Path) -> None:
        """Uses (and creates) the folder `root`."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _bucket_dir(self, bucket: str) -> Path:
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            raise ValueError(f"not a bucket name: {bucket!r}")
        return self.root / bucket

    def _object_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._bucket_dir(bucket) / "objects" / digest[:2] / digest

    def save_bucket(self, record: BucketRecord) -> None:
        """Keeps a bucket."""
        folder = self._bucket_dir(record.name)
        _make_dirs(folder)
        document = {"account_id": record.account_id, "region": record.region}
        _write_atomically(folder / "bucket.json", [json.dumps(document).encode()])

    def drop_bucket(self, bucket: str) -> None:
        """Forgets a bucket and everything in it."""
        folder = self._bucket_dir(bucket)
        if folder.exists():
            shutil.rmtree(folder)
            _fsync_dir(self.root)

    def save_object(self, bucket: str, key: FakeKey) -> None:
        """Keeps an object's bytes, ETag, metadata and time."""
        header = {
            "key": key.name,
            "etag": key.etag.strip('"'),
            "metadata": dict(key.metadata),
            "last_modified": key.last_modified.isoformat(),
            "size": key.size,
        }
        path = self._object_path(bucket, key.name)
        _make_dirs(path.parent)
        _write_atomically(path, _object_chunks(header, key))

    def drop_object(self, bucket: str, key: str) -> None:
        """Forgets an object."""
        path = self._object_path(bucket, key)
        if path.exists():
            path.unlink()
            _fsync_dir(path.parent)

    def buckets(self) -> Iterator[BucketRecord]:
        """Yields every bucket kept."""
        for document in sorted(self.root.glob("*/bucket.json")):
            info = json.loads(document.read_text())
            yield BucketRecord(document.parent.name, info["account_id"], info["region"])

    def objects(self, bucket: str) -> Iterator[tuple[dict[str, Any], IO[bytes]]]:
        """Yields each object of a bucket: its header and a file positioned at its bytes."""
        for path in sorted((self._bucket_dir(bucket) / "objects").glob("*/*")):
            if path.name.endswith(".tmp"):
                path.unlink()  # a write a crash cut short: never acknowledged
                continue
            with path.open("rb") as stream:
                yield json.loads(stream.readline()), stream


def _object_chunks(header: dict[str, Any], key: FakeKey) -> Iterator[bytes]:
    yield json.dumps(header).encode() + b"\n"
    with key.lock:
        # Copied from moto's buffer in chunks: a large object is never read whole into memory.
        key._value_buffer.seek(0)
        while chunk := key._value_buffer.read(COPY_CHUNK):
            yield chunk


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as stream:
        for chunk in chunks:
            stream.write(chunk)
        stream.flush()
        os.fsync(stream.fileno())
    temporary.replace(path)
    _fsync_dir(path.parent)


def _make_dirs(folder: Path) -> None:
    """Creates a folder and its missing parents, each one's entry synced to disk."""
    if folder.is_dir():
        return
    _make_dirs(folder.parent)
    folder.mkdir(exist_ok=True)
    _fsync_dir(folder.parent)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def restore(store: ObjectStore) -> tuple[int, int]:
    """Loads every kept bucket and object into moto; returns how many of each."""
    buckets = objects = 0
    for record in store.buckets():
        backend = s3_backends[record.account_id][get_partition(record.region)]
        bucket = backend.buckets.get(record.name) or backend.create_bucket(
            record.name, record.region
        )
        buckets += 1
        for header, stream in store.objects(record.name):
            bucket.keys[header["key"]] = _restored_key(record, header, stream)
            objects += 1
    return buckets, objects


def _restored_key(record: BucketRecord, header: dict[str, Any], stream: IO[bytes]) -> FakeKey:
    key = FakeKey(
        name=header["key"],
        value=b"",
        account_id=record.account_id,
        region_name=record.region,
        bucket_name=record.name,
        etag=header["etag"],
    )
    while chunk := stream.read(COPY_CHUNK):
        key._value_buffer.write(chunk)  # moto has no streaming setter
    key.contentsize = header["size"]
    key.set_metadata(header["metadata"], replace=True)
    key.last_modified = datetime.fromisoformat(header["last_modified"])
    return key


def _current_bucket(name: str) -> tuple[FakeBucket, str] | None:
    """Returns moto's bucket of that name and its account, or None."""
    located = s3_backends.bucket_accounts.get(name)
    if located is None:
        return None
    partition, account_id = located
    bucket = s3_backends[account_id][partition].buckets.get(name)
    return None if bucket is None else (bucket, account_id)


class DurableS3:
    """WSGI middleware writing what a successful request changed before it is answered."""

    def __init__(self, app: WsgiApp, store: ObjectStore) -> None:
        """Wraps moto's application."""
        self._app = app
        self._store = store
        # One lock per stripe of (bucket, key): two writes of one object are kept in order.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Serves one request."""
        request = Request(environ)
        bucket, _, key = request.path.lstrip("/").partition("/")
        change = _change_of(request.method, bool(key), request.args)
        if change is None or not BUCKET_NAME.match(bucket):
            return self._app(environ, start_response)
        deleted = _deleted_keys(environ) if change == "delete-objects" else []
        statuses: list[str] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        result = self._app(environ, capture)
        try:
            body = list(result)  # answers to writes are small; nothing is sent before the sync
        finally:
            if hasattr(result, "close"):
                result.close()
        if statuses and statuses[-1].startswith("2"):
            self._keep(change, bucket, [key] if key else deleted)
        return body

    def _keep(self, change: str, bucket: str, keys: list[str]) -> None:
        if change == "bucket":
            self._keep_bucket(bucket)
            return
        for key in keys:
            with self._locks[hash((bucket, key)) % LOCK_STRIPES]:
                self._keep_object(bucket, key)

    def _keep_bucket(self, name: str) -> None:
        current = _current_bucket(name)
        if current is None:
            self._store.drop_bucket(name)
            return
        bucket, account_id = current
        self._store.save_bucket(BucketRecord(name, account_id, bucket.region_name))

    def _keep_object(self, bucket_name: str, key: str) -> None:
        current = _current_bucket(bucket_name)
        found = current[0].keys.get(key) if current is not None else None
        if isinstance(found, FakeKey):
            self._store.save_object(bucket_name, found)
        else:
            self._store.drop_object(bucket_name, key)


def _change_of(method: str, has_key: bool, args: Any) -> str | None:
    """Returns what a request may change: "bucket", "object", "delete-objects" or None."""
    if not has_key:
        if method == "POST" and "delete" in args:
            return "delete-objects"
        return "bucket" if method in {"PUT", "DELETE"} else None
    if method == "PUT":
        # Uploading one part of a multipart upload changes no object until it completes.
        return None if "uploadId" in args else "object"
    if method == "POST":
        return "object" if "uploadId" in args else None  # completing a multipart upload
    if method == "DELETE":
        return None if "uploadId" in args else "object"  # aborting an upload changes none
    return None


def _deleted_keys(environ: dict[str, Any]) -> list[str]:
    """Reads a DeleteObjects body (and puts it back for moto); returns the keys it names."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - parsed by moto right after, too
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if _local(element.tag) == "Key"]


def _local(tag: str) -> str:
    """Returns an XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def main(argv: list[str] | None = None) -> None:
    """Loads the kept state and serves until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    store = ObjectStore(args.data_dir)
    buckets, objects = restore(store)
    print(f"kept state loaded from {args.data_dir}: {buckets} buckets, {objects} objects")
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    app = DurableS3(DomainDispatcherApplication(create_backend_app), store)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


def _exit(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    sys.exit(0)


if __name__ == "__main__":
    main()

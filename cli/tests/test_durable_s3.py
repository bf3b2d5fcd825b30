"""The local stack's S3 endpoint keeps what it acknowledged across a SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_s3 import S3Client

from rbr_testing.waiting import wait_for

PART = 5 * 1024 * 1024
pytestmark = pytest.mark.s3


class Endpoint:
    """`python -m rbr_cli.durable_s3` on a free port, restartable on the same data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "rbr_cli.durable_s3", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--data-dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=30, message="the S3 endpoint answering")

    def _answers(self) -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{self.port}/moto-api/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def client(self) -> S3Client:
        client: S3Client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        return client


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = Endpoint(tmp_path / "s3")
    endpoint.start()
    yield endpoint
    if endpoint.process is not None and endpoint.process.poll() is None:
        endpoint.kill()


def test_objects_buckets_and_deletes_survive_a_sigkill(endpoint: Endpoint) -> None:
    s3 = endpoint.client()
    s3.create_bucket(Bucket="raw")
    s3.put_object(Bucket="raw", Key="a/b c+d.log", Body=b"first", Metadata={"sha256": "x1"})
    s3.put_object(Bucket="raw", Key="a/b c+d.log", Body=b"second", Metadata={"sha256": "x2"})
    for name in ("gone-1", "gone-2", "gone-3", "kept"):
        s3.put_object(Bucket="raw", Key=name, Body=name.encode())
    s3.delete_object(Bucket="raw", Key="gone-1")
    s3.delete_objects(Bucket="raw", Delete={"Objects": [{"Key": "gone-2"}, {"Key": "gone-3"}]})
    big = os.urandom(PART) + os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket="raw", Key="big")
    parts = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(
                Bucket="raw",
                Key="big",
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=chunk,
            )["ETag"],
        }
        for number, chunk in ((1, big[:PART]), (2, big[PART:]))
    ]
    s3.complete_multipart_upload(
        Bucket="raw", Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    etag_before = s3.head_object(Bucket="raw", Key="big")["ETag"]
    s3.create_bucket(Bucket="dropped")
    s3.delete_bucket(Bucket="dropped")

    endpoint.kill()
    endpoint.start()

    s3 = endpoint.client()
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"raw"}
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket="raw")["Contents"]}
    assert listed == {"a/b c+d.log", "kept", "big"}
    kept = s3.get_object(Bucket="raw", Key="a/b c+d.log")
    assert kept["Body"].read() == b"second"
    assert kept["Metadata"] == {"sha256": "x2"}
    assert s3.get_object(Bucket="raw", Key="big")["Body"].read() == big
    assert s3.head_object(Bucket="raw", Key="big")["ETag"] == etag_before


def test_conditional_writes_hold_across_a_restart(endpoint: Endpoint) -> None:
    # The broker's storage engine updates its metadata with If-Match and creates with
    # If-None-Match: an ETag it read before the restart must still decide.
    s3 = endpoint.client()
    s3.create_bucket(Bucket="broker")
    etag = s3.put_object(Bucket="broker", Key="meta.json", Body=b"{}", IfNoneMatch="*")["ETag"]

    endpoint.kill()
    endpoint.start()

    s3 = endpoint.client()
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="broker", Key="meta.json", Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.put_object(Bucket="broker", Key="meta.json", Body=b'{"v": 2}', IfMatch=etag)
    with pytest.raises(ClientError):
        s3.put_object(Bucket="broker", Key="meta.json", Body=b'{"v": 3}', IfMatch=etag)
    assert s3.get_object(Bucket="broker", Key="meta.json")["Body"].read() == b'{"v": 2}'

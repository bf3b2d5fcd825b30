"""A real S3 endpoint for tests: moto in server mode, one per test session.

`moto_s3` starts `moto.server.ThreadedMotoServer` on 127.0.0.1 with a port the kernel picks,
sets fake AWS credentials in the environment for the whole session (so no test can reach a
real account) and yields a `MotoS3` with the endpoint and helpers::

    def test_upload(moto_s3):
        bucket = moto_s3.create_bucket()
        moto_s3.client().put_object(Bucket=bucket, Key="k", Body=b"v")

`moto_s3_process` starts a server of the test's own in a separate process, which the test can
freeze (SIGSTOP: connections stay open, nothing answers, as with a hung endpoint) and thaw::

    def test_hung_s3(moto_s3_process):
        moto_s3_process.freeze(); ...; moto_s3_process.thaw()
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from rbr_testing.broker import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server.

    Attributes:
        endpoint_url: `http://127.0.0.1:<port>`.
        region: Region to use with it.
        access_key_id: Fake access key (also set in the environment).
        secret_access_key: Fake secret key (also set in the environment).
    """

    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    secret_access_key: str = FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]

    def client(self) -> S3Client:
        """Returns a boto3 S3 client for this server (path-style addressing)."""
        return make_client(self)

    def create_bucket(self, prefix: str = "test") -> str:
        """Creates a bucket with a unique name starting with `prefix`; returns the name."""
        return create_unique_bucket(self.client(), prefix)


def make_client(server: MotoS3) -> S3Client:
    """Returns a boto3 S3 client for a moto server."""
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=Config(region_name=server.region, s3={"addressing_style": "path"}),
    )
    return client


def create_unique_bucket(client: S3Client, prefix: str = "test") -> str:
    """Creates a bucket named `<prefix>-<random>` (valid S3 name); returns the name."""
    name = f"{prefix.lower()[:40]}-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


def _use_fake_credentials(patch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_CREDENTIALS.items():
        patch.setenv(key, value)
    # Keep boto3 away from the developer's real configuration and the metadata service.
    patch.setenv("AWS_CONFIG_FILE", "/dev/null")
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    patch.delenv("AWS_PROFILE", raising=False)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """Yields a moto S3 server shared by the session, with fake AWS credentials set."""
    with pytest.MonkeyPatch.context() as patch:
        _use_fake_credentials(patch)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield MotoS3(endpoint_url=f"http://{host}:{port}")
        finally:
            server.stop()
            _close_listening_socket(server)


def _close_listening_socket(server: ThreadedMotoServer) -> None:
    # ThreadedMotoServer.stop() shuts the WSGI server down but leaves its socket open.
    wsgi_server = getattr(server, "_server", None)
    if wsgi_server is not None:
        wsgi_server.server_close()


MOTO_STARTUP_TIMEOUT = 30.0


@dataclass
class MotoProcess:
    """A moto S3 server in a process of its own, which a test can freeze and thaw."""

    server: MotoS3
    process: subprocess.Popen[bytes]

    def freeze(self) -> None:
        """Stops the process (SIGSTOP): it holds its connections and answers nothing."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Lets the process run again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)


def _wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + MOTO_STARTUP_TIMEOUT
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def moto_s3_process() -> Iterator[MotoProcess]:
    """Yields a moto S3 server in its own process for this test, with fake credentials set."""
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        _use_fake_credentials(patch)
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running = MotoProcess(MotoS3(endpoint_url=f"http://127.0.0.1:{port}"), process)
        try:
            _wait_until_answering(f"{running.server.endpoint_url}/moto-api/", process)
            yield running
        finally:
            running.thaw()
            process.kill()
            process.wait(10)

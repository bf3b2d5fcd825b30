"""S3 clients for AWS, MinIO or moto, chosen by the endpoint override."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from rbr_runtime.settings import CommonSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# A read timeout bounds a silence, not a transfer: S3 answers a GET or a part upload within
# seconds even when busy, and keeps a long CompleteMultipartUpload alive with whitespace, so
# 20 s of silence means the endpoint is stuck. Three attempts in all (adaptive mode, which
# also paces throttled requests) absorb a dropped connection or a SlowDown; a frozen endpoint
# then fails a call in about a minute rather than six (botocore's "max_attempts": 5 meant
# five retries of 60 s each after the first try), and the caller's own retry with backoff
# takes over while the dependency monitor reports the outage.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0
MAX_ATTEMPTS = 3


def make_s3_client(
    settings: CommonSettings,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeout: float | None = None,
) -> S3Client:
    """Returns an S3 client honouring RBR_S3_ENDPOINT_URL.

    With an endpoint override (MinIO, moto) path-style addressing is used, since such servers
    rarely have wildcard DNS for virtual-hosted buckets. Credentials come from the default
    chain (environment, profile, instance or pod role): none are stored by the registry.
    Retries use botocore's adaptive mode, so throttling and brief outages are absorbed.

    Args:
        settings: the service settings.
        region: region of the bucket to reach, when not the registry's own.
        endpoint_url: endpoint to use instead of the configured one.
        timeout: for a health probe: connect and read timeout, and a single attempt.
    """
    endpoint = endpoint_url or settings.s3_endpoint_url
    config = Config(
        region_name=region or settings.s3_region,
        retries={"total_max_attempts": 1 if timeout else MAX_ATTEMPTS, "mode": "adaptive"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=timeout or CONNECT_TIMEOUT,
        read_timeout=timeout or READ_TIMEOUT,
    )
    kwargs: dict[str, Any] = {"config": config}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    client: S3Client = boto3.session.Session().client("s3", **kwargs)
    return client


def ensure_bucket(client: S3Client, bucket: str, region: str = "us-east-1") -> bool:
    """Creates the bucket if it does not exist; returns True if it created it."""
    existing = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return False
    if region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
        )
    return True

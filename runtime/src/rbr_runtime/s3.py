"""S3 clients for AWS, MinIO or moto, chosen by the endpoint override."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from rbr_runtime.settings import CommonSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_s3_client(
    settings: CommonSettings, *, region: str | None = None, endpoint_url: str | None = None
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
    """
    endpoint = endpoint_url or settings.s3_endpoint_url
    config = Config(
        region_name=region or settings.s3_region,
        retries={"max_attempts": 5, "mode": "adaptive"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=5,
        read_timeout=60,
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

"""Registering simulated buckets without the registrar: their `bucket.registered` records.

Poller and log-extractor tests need buckets in `bucket.registered`; the registrar builds
those records from registrations, and these helpers build the same records for a fleet's
buckets directly, with tokens encrypted under a test secret key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rbr_runtime.kafka import EventProducer
from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings
from rbr_schemas import (
    BUCKET_REGISTERED,
    BucketRegistered,
    BucketState,
    S3Source,
    utcnow,
)

if TYPE_CHECKING:
    from rbr_simulator.bucket import BucketInfo

TEST_SECRET_KEY = "test-secret-key-for-bucket-tokens-0123456789"


def registration(
    info: BucketInfo,
    *,
    secret_key: str = TEST_SECRET_KEY,
    state: BucketState = BucketState.ACTIVE,
    version: int = 1,
) -> BucketRegistered:
    """Returns the bucket.registered record of a simulated bucket."""
    now = utcnow()
    s3 = None
    if info.s3 is not None:
        s3 = S3Source(bucket_name=info.s3.bucket_name, region=info.s3.region, prefix=info.s3.prefix)
    return BucketRegistered(
        bucket_id=str(uuid.uuid5(uuid.NAMESPACE_URL, info.name)),
        name=info.name,
        state=state,
        ip_address=info.ip,
        port=None if info.port == 443 else info.port,
        operating_system=info.operating_system,
        s3=s3,
        token_ciphertext=TokenVault.from_setting(secret_key).encrypt(info.token),
        registered_at=now,
        updated_at=now,
        version=version,
    )


def publish_registrations(
    bootstrap: str, records: Iterable[BucketRegistered]
) -> list[BucketRegistered]:
    """Publishes records on bucket.registered (keyed by name) and returns them."""
    published = list(records)
    producer = EventProducer(CommonSettings(kafka_bootstrap=bootstrap), source="/rbr/test")
    producer.send_events(
        BUCKET_REGISTERED,
        [(r.name, producer.event(BUCKET_REGISTERED, r, subject=r.name)) for r in published],
    )
    producer.flush()
    return published

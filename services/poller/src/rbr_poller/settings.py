"""The poller's configuration (`RBR_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from rbr_runtime.buckets import BucketAccessSettings

DEFAULT_PORT = 9101


class PollerSettings(BucketAccessSettings):
    """Settings of the poller: schedule, health threshold, and how buckets are called."""

    service_name: str = "poller"
    http_port: int = Field(
        default=DEFAULT_PORT, ge=0, le=65535, description="Health and metrics port."
    )
    poll_interval: float = Field(
        default=300.0, ge=1.0, description="Seconds between two polls of a bucket (a slot)."
    )
    poll_jitter: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Fraction of the interval the buckets' polls are spread over: each bucket "
        "is polled at its own stable offset into the slot.",
    )
    unresponsive_after: float = Field(
        default=900.0,
        gt=0,
        description="Seconds of polling without a successful poll after which a "
        "bucket_unresponsive alert fires (counted from the last success, or from when polling "
        "of the bucket began or resumed after a gap; time no poller polled is not counted).",
    )
    upload_stale_after: float = Field(
        default=36 * 3600.0,
        gt=0,
        description="Seconds without a new upload after which an s3-drop bucket's "
        "bucket_unresponsive alert fires (the real rustbucket uploads each day's file after "
        "the day ended, up to a day late: 36 h). Counted from the newest upload to the "
        "log-extractor's latest listing of the bucket's folders.",
    )
    max_response_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest /update_bucket answer read; a bigger one is recorded as too_large.",
    )
    health_check_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between health checks of every owned bucket (polls that fail to "
        "happen at all are noticed here).",
    )
    max_unpublished_statuses: int = Field(
        default=20_000,
        ge=1,
        description="Most poll results kept while they cannot be published (broker or database "
        "down); beyond it the oldest are dropped (rbr_statuses_dropped_total).",
    )

"""The log-extractor's configuration (`RBR_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, field_validator

from rbr_log_extractor.locations import DropLocation, parse_location
from rbr_runtime.buckets import BucketAccessSettings
from rbr_runtime.settings import CsvList

MIB = 1024 * 1024


class ExtractorSettings(BucketAccessSettings):
    """Settings of the log-extractor service (port 9102)."""

    service_name: str = "log-extractor"
    http_port: int = Field(default=9102, ge=0, le=65535)
    extract_interval: float = Field(
        default=900.0, gt=0, description="Seconds between two extractions of one bucket."
    )
    extract_spread: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Fraction of the interval the buckets' extraction times are spread over.",
    )
    extract_tick: float = Field(
        default=5.0, gt=0, description="Seconds between two looks for buckets that are due."
    )
    extract_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Extractions in flight at once (one per bucket); buckets whose last "
        "extraction failed hold at most half of them.",
    )
    extract_part_bytes: int = Field(
        default=8 * MIB,
        ge=5 * MIB,
        le=512 * MIB,
        description="Multipart part size; a pull smaller than this is stored in one PUT. "
        "Memory per extraction in flight is about twice this.",
    )
    extract_max_bytes: int = Field(
        default=20 * 1024 * MIB,
        ge=1,
        description="Largest pull accepted; a bucket sending more is cut off (failure).",
    )
    extract_timeout: float = Field(
        default=1800.0, gt=0, description="Seconds one extraction may take in all."
    )
    extract_min_rate: float = Field(
        default=1024.0,
        ge=0,
        description="Bytes per second a pull must average over each RBR_EXTRACT_RATE_WINDOW, "
        "else it is abandoned as a failure (0: no minimum).",
    )
    extract_rate_window: float = Field(
        default=60.0,
        gt=0,
        description="Seconds over which a pull's rate is measured against RBR_EXTRACT_MIN_RATE.",
    )
    source_s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of the buckets' own S3 buckets when not RBR_S3_ENDPOINT_URL "
        "(e.g. AWS while the registry uses MinIO: objects are then streamed, not copied "
        "server-side).",
    )

    drop_locations: CsvList = Field(
        default_factory=list,
        description="S3 drop locations honeypots upload their log files to, comma-separated: "
        "s3://BUCKET/PREFIX/ (PREFIX may be empty), with ?region=REGION when not us-east-1. "
        "Their instance folders are discovered and linked to buckets. Read with the "
        "registry's own credentials (its IAM role); none are stored.",
    )
    drop_scan_interval: float = Field(
        default=900.0, gt=0, description="Seconds between two scans of the drop locations."
    )
    drop_identity_bytes: int = Field(
        default=8 * MIB,
        ge=4096,
        description="Most bytes of each file of an unlinked drop folder read to find the "
        "honeypot's identity lines (its instance and registered names).",
    )

    @field_validator("drop_locations")
    @classmethod
    def _valid_locations(cls, values: list[str]) -> list[str]:
        return [parse_location(value).setting for value in values]

    @property
    def locations(self) -> list[DropLocation]:
        """Returns the configured drop locations."""
        return [parse_location(value) for value in self.drop_locations]

    @field_validator("source_s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @property
    def source_endpoint(self) -> str | None:
        """Returns the endpoint of the buckets' own S3 buckets."""
        return self.source_s3_endpoint_url or self.s3_endpoint_url

    @property
    def server_side_copy(self) -> bool:
        """Tells whether source and registry buckets are on one S3 service."""
        return self.source_endpoint == self.s3_endpoint_url

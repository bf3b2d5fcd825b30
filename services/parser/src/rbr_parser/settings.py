"""The parser's configuration (`RBR_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, field_validator

from rbr_runtime.schedule import parse_time_of_day
from rbr_runtime.settings import CommonSettings, known_timezone


class ParserSettings(CommonSettings):
    """Settings of the parser service (port 9103)."""

    service_name: str = "parser"
    http_port: int = Field(default=9103, ge=0, le=65535)
    consumer_batch_size: int = Field(
        default=1,
        ge=1,
        description="logs.extracted events handled per batch (objects). One: a batch must "
        "end within RBR_KAFKA_MAX_POLL_INTERVAL_MS, and several large objects in one batch "
        "could take longer, get the member evicted and their commit refused; the objects "
        "parsed by then are not parsed again (parsed_objects), the others are.",
    )
    kafka_max_poll_interval_ms: int = Field(
        default=14_400_000,
        ge=1000,
        le=86_400_000,
        description="Longest one batch may take before the group evicts the member: above "
        "the parse time of the largest object (RBR_EXTRACT_MAX_BYTES at about 2 MB/s).",
    )
    parser_insert_batch: int = Field(
        default=1000, ge=1, le=20_000, description="Rows per multi-row INSERT and transaction."
    )
    parser_max_log_bytes: int = Field(
        default=65_536,
        ge=1024,
        le=16_000_000,
        description="Bytes of a raw record kept in logs.log (log_size keeps the true size).",
    )
    parser_max_line_bytes: int = Field(
        default=1_048_576,
        ge=4096,
        description="Bytes of one line (or one multi-line record) read for parsing; beyond "
        "that the record is counted, not parsed further. Bounds memory per record.",
    )
    syslog_timezone: str = Field(
        default="UTC", description="Zone of classic syslog timestamps (they carry none)."
    )
    retention_at: str = Field(
        default="02:00",
        description="Time of day (HH:MM, zone RBR_TIMEZONE) the daily retention run starts.",
    )
    log_retention_days: int = Field(
        default=90, ge=0, description="Delete logs rows older than this (0: keep forever)."
    )
    raw_retention_days: int = Field(
        default=90, ge=0, description="Delete raw objects older than this (0: keep forever)."
    )
    retention_chunk: int = Field(
        default=5000, ge=100, description="Rows deleted per statement by retention."
    )

    @field_validator("syslog_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_timezone(value)

    @field_validator("retention_at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        try:
            parse_time_of_day(value)
        except ValueError as error:
            raise ValueError(f"{value!r} is not a time of day (HH:MM)") from error
        return value

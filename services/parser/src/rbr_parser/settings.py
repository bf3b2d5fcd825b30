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
        description="logs.extracted events handled per batch (objects). A batch is committed "
        "when its last object is parsed, and its objects are parsed one after another: more "
        "than one gains nothing, while a stop, a rebalance or a crash parses the whole batch "
        "in hand again.",
    )
    parser_insert_batch: int = Field(
        default=5000,
        ge=1,
        le=20_000,
        description="Rows per LOAD DATA (MySQL) or multi-row INSERT (SQLite) and transaction.",
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
        default=90,
        ge=0,
        description="Delete logs rows created before the start (UTC) of the day this many "
        "days ago (0: keep forever). MySQL drops whole day partitions.",
    )
    log_partition_days_ahead: int = Field(
        default=7,
        ge=1,
        le=365,
        description="MySQL: days of logs partitions kept created ahead of today (at start-up "
        "and daily); rows beyond them go to a catch-all partition until their day is made.",
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

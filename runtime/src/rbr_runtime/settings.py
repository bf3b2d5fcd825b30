"""Configuration from `RBR_*` environment variables.

Every service subclasses `CommonSettings` with its own fields; `load_settings` turns
pydantic's validation errors into a `ConfigError` that names the environment variable, so an
operator sees `RBR_SECRET_KEY is required` rather than a stack trace.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

ENV_PREFIX = "RBR_"
SettingsT = TypeVar("SettingsT", bound="CommonSettings")


class ConfigError(Exception):
    """The environment does not describe a usable configuration."""


class CommonSettings(BaseSettings):
    """Settings every service shares. Defaults work on the local stack (`make run`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    service_name: str = Field(default="rbr", description="Name used in logs and metrics.")
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated."
    )
    kafka_client_config: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Extra librdkafka settings as a JSON object, e.g. SASL/TLS for a managed cluster: "
            '{"security.protocol": "SASL_SSL", ...}.'
        ),
    )
    kafka_session_timeout_ms: int = Field(
        default=6000,
        ge=1000,
        description="Consumer group session timeout. Keep at 6000 or below on the embedded "
        "broker (group joins take half of it); 45000 is the Kafka default.",
    )
    kafka_max_poll_interval_ms: int = Field(
        default=300_000, ge=1000, description="Longest a consumer may take between polls."
    )
    # 30 s rides out a leader election or a broker restart; a longer wait only keeps a
    # caller blocked in a send while the broker is away (callers retry a failed send anyway).
    kafka_message_timeout_ms: int = Field(
        default=30_000, ge=1000, description="How long a produce may wait for the broker."
    )
    database_url: str = Field(
        default="sqlite:///./var/rbr.db",
        description="SQLAlchemy URL: mysql+pymysql://user:pass@host/db or sqlite:///path.",
    )
    s3_endpoint_url: str | None = Field(
        default="http://127.0.0.1:9000",
        description="S3 endpoint (moto, MinIO). Set empty to use AWS's own endpoints.",
    )
    s3_bucket: str = Field(default="rbr-raw-logs", description="The registry's raw-log bucket.")
    s3_region: str = Field(default="us-east-1", description="Region of the raw-log bucket.")
    http_host: str = Field(default="127.0.0.1", description="Address the service port binds.")
    http_port: int = Field(default=0, ge=0, le=65535, description="Health and metrics port.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line; text: for a terminal."
    )
    timezone: str = Field(
        default="UTC", description="Time zone of the daily tasks' times of day (IANA name)."
    )
    consumer_batch_size: int = Field(
        default=200, ge=1, description="Most messages of one partition handed to a handler at once."
    )
    consumer_batch_wait: float = Field(
        default=0.5,
        gt=0,
        description="Seconds the poll loop waits for messages (at most 0.2) before tending to "
        "commits and paused partitions.",
    )
    consumer_concurrency: int = Field(
        default=4,
        ge=1,
        description="Handler calls running at once, each on its own partition (a partition's "
        "messages are handled in order, one batch at a time).",
    )
    consumer_buffer_size: int = Field(
        default=5000,
        ge=1,
        description="Messages fetched ahead per partition; beyond that the partition is paused "
        "until its handler catches up.",
    )
    consumer_drain_timeout: float = Field(
        default=10.0,
        ge=0,
        description="On a rebalance, how long a revoked partition's batch in hand may take to "
        "finish and be committed; past that it is abandoned uncommitted to the next owner.",
    )
    retry_initial_backoff: float = Field(
        default=0.5, gt=0, description="First pause before retrying after an outage."
    )
    retry_max_backoff: float = Field(
        default=30.0, gt=0, description="Longest pause between retries (doubling up to it)."
    )
    unexpected_error_retries: int = Field(
        default=5,
        ge=0,
        description="Tries of a message whose handler raises an unexpected exception (not an "
        "outage) before it is dead-lettered; outages are retried for as long as they last.",
    )
    dlq_max_consecutive: int = Field(
        default=20,
        ge=1,
        description="Stop the consumer when this many messages in a row were dead-lettered: "
        "something is systematically wrong and dead-lettering everything would hide it.",
    )
    dependency_check_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between checks of the database, S3 and the broker (what "
        "/readyz and rbr_dependency_up report), and between measures of an outbox's backlog.",
    )
    dependency_check_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a dependency has to answer a check before it counts as down.",
    )
    shutdown_timeout: float = Field(
        default=20.0, gt=0, description="Seconds to drain in-flight work on SIGTERM."
    )

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_means_aws(cls, value: Any) -> Any:
        return value or None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return known_timezone(value)

    @field_validator("kafka_client_config", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


def known_timezone(value: str) -> str:
    """Validates an IANA time zone name (a field validator for zone settings).

    Raises:
        ValueError: not a zone this system knows.
    """
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value[:64]!r} (use an IANA name)") from None
    return value


def split_csv(value: Any) -> Any:
    """Splits a comma-separated environment value into a list (a `mode="before"` validator)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]
"""A list read from a comma-separated environment variable."""


def _key_list(value: SecretStr) -> SecretStr:
    keys = value.get_secret_value().split(",")
    if not all(key.strip() for key in keys):
        raise ValueError("must be one or more non-empty keys, comma-separated")
    return value


SecretKeys = Annotated[SecretStr, AfterValidator(_key_list)]
"""Secret keys from a comma-separated variable (first encrypts, all decrypt): none empty."""


def env_var_name(settings_cls: type[CommonSettings], field_name: str) -> str:
    """Returns the environment variable that sets a field."""
    field: FieldInfo | None = settings_cls.model_fields.get(field_name)
    alias = field.validation_alias if field else None
    if isinstance(alias, str):
        return alias
    if alias is not None and hasattr(alias, "choices"):
        return " or ".join(str(choice) for choice in alias.choices)
    return f"{ENV_PREFIX}{field_name.upper()}"


def describe_errors(settings_cls: type[CommonSettings], error: ValidationError) -> str:
    """Turns a validation error into one line per bad environment variable."""
    lines = []
    for detail in error.errors():
        field_name = str(detail["loc"][0]) if detail["loc"] else "?"
        variable = env_var_name(settings_cls, field_name)
        if detail["type"] == "missing":
            lines.append(f"{variable} is required but not set")
        else:
            lines.append(f"{variable} is invalid: {detail['msg']}")
    return "; ".join(lines)


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Reads settings from the environment, with keyword overrides (used by tests).

    Raises:
        ConfigError: a required variable is missing or a value is invalid; the message names
            the variables and never repeats their values.
    """
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        raise ConfigError(f"configuration error: {describe_errors(settings_cls, error)}") from None
    except SettingsError as error:
        raise ConfigError(f"configuration error: {error}") from None

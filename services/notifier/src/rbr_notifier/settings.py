"""The notifier's configuration: `RBR_*` environment variables (durations in seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from rbr_runtime.settings import CommonSettings

NOTIFIER_PORT = 9105


class NotifierSettings(CommonSettings):
    """Settings of the notifier; the channels themselves live in the YAML file."""

    service_name: str = "notifier"
    http_port: int = Field(default=NOTIFIER_PORT, ge=0, le=65535)
    notifier_channels: Path | None = Field(
        default=None,
        description="Path of the channels YAML file. Unset: no channels; alerts are recorded "
        "in the alerts table but delivered nowhere (a warning says so at start-up).",
    )

    @field_validator("notifier_channels", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    consumer_concurrency: int = Field(
        default=2,
        ge=1,
        description="Handler calls running at once, each on its own partition of alerts. Two "
        "keep the core busy while one waits for the database or its channels; more cost CPU "
        "time per delivery in thread switches (13% more at 4, measured) for no more throughput "
        "in one process.",
    )
    notifier_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Tries in a row per notification (timeouts, connection errors, 5xx, 429) "
        "before it waits for its channel's retry schedule (or, without one, its alert goes to "
        "alerts.dlq). A channel may set its own max_attempts.",
    )
    notifier_retry_initial_backoff: float = Field(
        default=1.0, gt=0, description="Pause after the first failed try; doubles each time."
    )
    notifier_retry_max_backoff: float = Field(
        default=30.0, gt=0, description="Longest pause between two tries."
    )
    notifier_retry_after_max: float = Field(
        default=120.0,
        gt=0,
        description="Longest Retry-After (on 429/503) honoured; longer answers are cut to it.",
    )
    notifier_retry_sweep_interval: float = Field(
        default=5.0,
        gt=0,
        description="How often notifications waiting for a retry are checked for being due "
        "(the retry schedules themselves are per channel, in the channels file).",
    )
    notifier_timeout: float = Field(
        default=10.0, gt=0, description="Per-try timeout (connect, send, answer)."
    )
    notifier_concurrency: int = Field(
        default=8,
        ge=1,
        le=128,
        description="Notifications sent at the same time (across channels and alerts), so a "
        "slow channel does not hold up the others.",
    )
    notifier_throttle_max: int = Field(
        default=20,
        ge=0,
        description="Firings (triggers) per channel per throttle window; what exceeds is "
        "folded into one digest sent when the window ends. Resolves are never throttled. 0 "
        "disables throttling by default.",
    )
    notifier_throttle_window: float = Field(
        default=300.0, gt=0, description="Length of a throttle window."
    )
    notifier_digest_interval: float = Field(
        default=5.0, gt=0, description="How often ended windows are checked for digests to send."
    )
    notifier_digest_max_items: int = Field(
        default=50, ge=1, description="Alerts listed in one digest; the rest are counted."
    )
    notifier_reopen_after: float = Field(
        default=86_400.0,
        ge=0,
        description="An open alert whose dedupe key has not fired for this long is superseded "
        "by a new occurrence (which notifies again). 0: an open alert absorbs every later "
        "firing of its dedupe key until it is resolved.",
    )
    notifier_retention_days: int = Field(
        default=90,
        ge=0,
        description="Resolved alerts, their deliveries and attempts, and throttle windows are "
        "deleted this many days after they ended (daily, at RBR_NOTIFIER_CLEANUP_AT). 0 keeps "
        "everything.",
    )
    notifier_cleanup_at: str = Field(
        default="03:30",
        pattern=r"^\d{1,2}:\d{2}$",
        description="Daily cleanup time (HH:MM, zone RBR_TIMEZONE).",
    )

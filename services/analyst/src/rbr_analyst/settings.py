"""The analyst's configuration (`RBR_*` and `ANTHROPIC_*` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rbr_runtime.schedule import parse_time_of_day
from rbr_runtime.settings import CommonSettings, CsvList
from rbr_schemas import Severity

DEFAULT_MODEL = "claude-sonnet-5-5"


class AnalystSettings(CommonSettings):
    """Settings of the analyst service (port 9104)."""

    # populate_by_name: tests and tools set the aliased fields by name.
    model_config = SettingsConfigDict(**CommonSettings.model_config, populate_by_name=True)

    service_name: str = "analyst"
    http_port: int = Field(default=9104, ge=0, le=65535)

    analysis_interval: float = Field(
        default=14_400,
        ge=60,
        description="Window length in seconds: each bucket's logs are analysed per window of "
        "ingestion time, aligned to multiples of this interval since the epoch (4 h).",
    )
    analysis_grace: float = Field(
        default=300,
        ge=0,
        description="Seconds to wait after a window ends before analysing it, so rows whose "
        "insert was in flight at the boundary are in.",
    )
    analysis_check_interval: float = Field(
        default=60, gt=0, description="How often the backlog is checked for ended windows."
    )
    analysis_lease: float = Field(
        default=900,
        gt=0,
        description="How long one replica holds a window it is analysing before another may "
        "take it over (a replica that died mid-analysis).",
    )
    alert_min_severity: Severity = Field(
        default=Severity.MEDIUM, description="Findings at or above this severity raise alerts."
    )
    alert_grading: Literal["novelty", "kind"] = Field(
        default="novelty",
        description="novelty: a finding alerts at its severity (at least high) only when it "
        "evidences something new to the fleet; otherwise it is routine (low). kind: every "
        "finding alerts at the severity of its kind of attack (before issue 15).",
    )
    novelty_types: CsvList = Field(
        default_factory=lambda: ["sha256", "sha1", "md5", "url", "domain", "technique"],
        description="Indicator types (and `technique`) whose first sighting in the fleet makes "
        "a finding alert; add ip, credential, command for more pages.",
    )
    campaign_window: float = Field(
        default=14_400,
        ge=0,
        description="Seconds within which sightings by several buckets make a campaign.",
    )
    campaign_min_buckets: int = Field(
        default=3, ge=2, description="Buckets that must sight one indicator for a campaign."
    )
    campaign_quiet: float = Field(
        default=604_800,
        ge=0,
        description="Seconds after a campaign alert before the same indicator can raise another.",
    )
    baseline_windows: int = Field(
        default=6, ge=1, description="Earlier windows a bucket needs before its baseline counts."
    )
    baseline_factor: float = Field(
        default=5.0,
        ge=0,
        description="A window this many times above (or below) the bucket's median is an "
        "activity change (0 or 1: off).",
    )
    baseline_min_rows: int = Field(
        default=500, ge=0, description="Records a surge (or a collapsing baseline) must reach."
    )
    silence_after: float = Field(
        default=28_800,
        ge=0,
        description="A bucket the poller reached within the last analysis interval but that "
        "logged nothing for this many seconds raises logs_silent (0: off).",
    )
    ioc_retention_days: int = Field(
        default=90,
        ge=0,
        description="Indicators not sighted for this many days are deleted, with their "
        "sightings (0: keep forever); like RBR_LOG_RETENTION_DAYS for logs.",
    )
    enrichment: bool = Field(
        default=True,
        description="Add country and AS to IP indicators from the offline database.",
    )
    digest_top_n: int = Field(
        default=25, ge=1, le=200, description="Entries kept in each top-N list of a digest."
    )
    digest_samples: int = Field(
        default=8, ge=0, le=50, description="Raw records sampled into a digest."
    )

    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "RBR_ANTHROPIC_API_KEY"),
        description="Claude API key; without one the rule-based analyser is used.",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RBR_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        description="Another endpoint speaking the Anthropic API (a proxy, a test server).",
    )
    analyst_model: str = Field(
        default=DEFAULT_MODEL, description="Claude model id; empty means the default."
    )
    analyst_token_budget: int = Field(
        default=50_000,
        ge=2_000,
        description="Input tokens all model requests of one window may use together.",
    )
    analyst_request_tokens: int = Field(
        default=20_000,
        ge=1_000,
        description="Input tokens one model request may use; a larger digest is analysed in "
        "stages (chunks, then a combining request).",
    )
    analyst_max_stages: int = Field(
        default=6, ge=2, le=20, description="At most this many chunk requests per window."
    )
    analyst_max_output_tokens: int = Field(default=4_096, ge=256, le=64_000)
    analyst_max_retries: int = Field(
        default=4,
        ge=0,
        le=10,
        description="Retries of a request the API answered 429, 5xx or 529 (overloaded), with "
        "backoff honouring retry-after.",
    )
    analyst_timeout: float = Field(default=120.0, gt=0, description="Seconds per request.")
    analyst_fallback_after: float = Field(
        default=3600,
        ge=0,
        description="Seconds a window may wait for an unavailable Claude API before the "
        "rule-based analysis stands in (marked as such), so alerts are not held up for long.",
    )
    analyst_structured_output: bool = Field(
        default=True,
        description="Ask the API to constrain the answer to the JSON schema (output_config); "
        "turn off for a model or endpoint that does not support it.",
    )

    daily_summary_at: str = Field(
        default="08:00", description="Local time of the daily summary (zone: RBR_TIMEZONE)."
    )

    @field_validator("daily_summary_at")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        parse_time_of_day(value)
        return value

    @field_validator("analyst_model", mode="before")
    @classmethod
    def _empty_model_means_default(cls, value: object) -> object:
        return value or DEFAULT_MODEL

    @field_validator("anthropic_api_key", mode="before")
    @classmethod
    def _empty_key_means_none(cls, value: object) -> object:
        return value or None

    @field_validator("anthropic_base_url", mode="before")
    @classmethod
    def _empty_url_means_default(cls, value: object) -> object:
        return value or None

    @property
    def uses_claude(self) -> bool:
        """Tells whether an API key is configured."""
        return self.anthropic_api_key is not None

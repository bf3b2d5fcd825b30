"""The channels file: where alerts go, validated at start-up with errors naming channel and field.

Secrets are never written in the file itself but referenced as `${ENV_VAR}` inside any string
value (`url: ${SLACK_WEBHOOK_URL}`, `url: https://example.com/hook/${HOOK_TOKEN}`); `$${`
writes a literal `${`. A reference to an unset variable is a start-up error naming the channel,
field and variable, never a value. Every error message is built from names and positions only,
so a secret can never leak through one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rbr_schemas import Severity

CHANNEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_DISPLAY_ADDRESS = re.compile(r"^[^<>\r\n]*<([^<>\s]+@[^<>\s]+)>$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class ChannelConfigError(ValueError):
    """The channels file cannot be used; the message says where and why, without values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Filters(_Strict):
    """Which alerts a channel receives; every filter set must match (all are optional)."""

    min_severity: Severity | None = Field(
        default=None, description="Lowest severity delivered (info < low < medium < ...)."
    )
    types: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]] | None = (
        Field(default=None, description="Alert types delivered, e.g. [bucket_unresponsive].")
    )
    buckets: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        default=None,
        description="Bucket names or shell patterns (prod-*); alerts without a bucket (the "
        "daily summary) do not match a channel that filters buckets.",
    )

    def accepts(self, severity: Severity, alert_type: str, bucket: str | None) -> bool:
        """Tells whether an alert passes every filter."""
        if self.min_severity is not None and severity < self.min_severity:
            return False
        if self.types is not None and alert_type not in self.types:
            return False
        if self.buckets is None:
            return True
        return bucket is not None and any(fnmatchcase(bucket, p) for p in self.buckets)


class Throttle(_Strict):
    """At most `max` notifications per `window` seconds; the rest go into one digest."""

    max: int = Field(ge=1)
    window: float = Field(gt=0)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_RETRY_AGE = 7 * 86400.0


def _seconds(value: Any) -> Any:
    """Reads a duration: a number of seconds, or a string like 30s, 5m, 6h, 1d."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value.strip())
    if match is None:
        raise ValueError("must be seconds or a duration like 30s, 5m, 6h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


Interval = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=86400)]
Age = Annotated[float, BeforeValidator(_seconds), Field(ge=0, le=MAX_RETRY_AGE)]


class RetrySchedule(_Strict):
    """How a delivery the channel did not take is retried after its first tries.

    Each field omitted takes the channel type's default (see `retry_schedule`); durations are
    seconds or strings like 30s, 5m, 6h, 1d.
    """

    initial: Interval | None = Field(default=None, description="First wait; waits then grow.")
    max_interval: Interval | None = Field(default=None, description="Longest wait between tries.")
    max_age: Age | None = Field(
        default=None,
        description="How long after the first failed try the delivery is given up on and its "
        "alert dead-lettered; 0: at once (no retry schedule).",
    )


def _check_http_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value()
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("must be an http:// or https:// URL")
    return value


class _Channel(_Strict):
    name: Annotated[str, StringConstraints(pattern=CHANNEL_NAME_PATTERN)]
    enabled: bool = True
    filters: Filters = Field(default_factory=Filters)
    throttle: Throttle | Literal[False] | None = Field(
        default=None,
        description="Omitted: the RBR_NOTIFIER_THROTTLE_* defaults; false: never throttled.",
    )
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    timeout: float | None = Field(default=None, gt=0, le=300)
    retry: RetrySchedule | None = Field(
        default=None,
        description="Omitted: the type's retry schedule; false: none (after max_attempts tries "
        "the alert goes to alerts.dlq at once).",
    )

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_switch(cls, value: Any) -> Any:
        # `retry: false` is no schedule at all (max_age 0), `retry: true` the type's.
        if isinstance(value, bool):
            return {"max_age": 0} if value is False else {}
        return value

    def secrets(self) -> list[str]:
        """Returns every secret value of the channel, to scrub from error texts."""
        return [
            value.get_secret_value()
            for value in self._secret_fields()
            if value is not None and value.get_secret_value()
        ]

    def _secret_fields(self) -> list[SecretStr | None]:
        return []

    def target(self) -> str:
        """Returns where the channel sends, without any secret (for --list)."""
        return ""


class HttpChannel(_Channel):
    """Settings every HTTP channel has: TLS verification."""

    tls_verify: bool = Field(default=True, description="Verify the server's certificate.")
    ca_file: Path | None = Field(
        default=None, description="Extra CA bundle, trusted in addition to the usual CAs."
    )


class EmailChannel(_Channel):
    """SMTP delivery with STARTTLS (port 587) or implicit TLS (465), to several recipients."""

    type: Literal["email"]
    host: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from", description="From address, e.g. RBR <alerts@example.com>.")
    to: list[str] = Field(min_length=1, max_length=100)
    subject_prefix: Annotated[str, StringConstraints(max_length=40)] = "[rbr]"
    tls_verify: bool = True
    ca_file: Path | None = None

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("sender")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        if not (_EMAIL_ADDRESS.match(value) or _DISPLAY_ADDRESS.match(value)):
            raise ValueError("must be an address like alerts@example.com or Name <a@b.example>")
        return value

    @field_validator("to")
    @classmethod
    def _valid_recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL_ADDRESS.match(address):
                raise ValueError("every recipient must be a plain address like ops@example.com")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> EmailChannel:
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self

    @property
    def effective_port(self) -> int:
        """Returns the port: the configured one, or the usual one for the security mode."""
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]

    @property
    def from_address(self) -> str:
        """Returns the bare address of the sender (the SMTP envelope sender)."""
        match = _DISPLAY_ADDRESS.match(self.sender)
        return match.group(1) if match else self.sender

    def _secret_fields(self) -> list[SecretStr | None]:
        return [self.password]

    def target(self) -> str:
        """Returns host, port, security and recipients."""
        return f"{self.host}:{self.effective_port} ({self.security}) to {', '.join(self.to)}"


class SlackChannel(HttpChannel):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    url: SecretStr = Field(description="The webhook URL; it is a secret: use ${VAR}.")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: SecretStr) -> SecretStr:
        return _check_http_url(value)

    def _secret_fields(self) -> list[SecretStr | None]:
        return [self.url]

    def target(self) -> str:
        """Returns the webhook's host only."""
        return _host_only(self.url)


class WebhookChannel(HttpChannel):
    """Any HTTP endpoint taking a JSON POST, signed with HMAC-SHA256 when `secret` is set."""

    type: Literal["webhook"]
    url: SecretStr
    secret: SecretStr | None = Field(default=None, description="HMAC key for X-Rbr-Signature.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers, e.g. an Authorization token."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: SecretStr) -> SecretStr:
        return _check_http_url(value)

    @field_validator("headers")
    @classmethod
    def _valid_header_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError("header names may hold only letters, digits and '-'")
            if name.lower().startswith("x-rbr-") or name.lower() in ("content-type", "host"):
                raise ValueError(f"header {name} is set by the notifier itself")
        return value

    def _secret_fields(self) -> list[SecretStr | None]:
        return [self.url, self.secret, *self.headers.values()]

    def target(self) -> str:
        """Returns the endpoint's host only, and whether bodies are signed."""
        signed = "signed" if self.secret else "UNSIGNED"
        return f"{_host_only(self.url)} ({signed})"


class PagerDutyChannel(HttpChannel):
    """PagerDuty Events API v2 (`POST {base_url}/v2/enqueue`)."""

    type: Literal["pagerduty"]
    routing_key: SecretStr = Field(description="The integration key of the service.")
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] = (
        "https://events.pagerduty.com"
    )
    client_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = None

    def _secret_fields(self) -> list[SecretStr | None]:
        return [self.routing_key]

    def target(self) -> str:
        """Returns the events endpoint (without any user:password@ in base_url)."""
        return _without_userinfo(f"{self.base_url.rstrip('/')}/v2/enqueue")


class OpsgenieResponder(_Strict):
    """A team, user, escalation or schedule an Opsgenie alert is routed to, by name or id.

    For a user, `name` is the Opsgenie username (the user's e-mail address); the Alert API
    takes it as `username`, teams, escalations and schedules as `name`.
    """

    type: Literal["team", "user", "escalation", "schedule"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> OpsgenieResponder:
        if (self.name is None) == (self.id is None):
            raise ValueError("a responder needs exactly one of name or id")
        return self

    def as_json(self) -> dict[str, str]:
        """Returns the responder as the Alert API's create request takes it."""
        if self.id is not None:
            return {"type": self.type, "id": self.id}
        assert self.name is not None
        return {"type": self.type, "username" if self.type == "user" else "name": self.name}


class OpsgenieChannel(HttpChannel):
    """Opsgenie Alert API: create by alias, close by alias."""

    type: Literal["opsgenie"]
    api_key: SecretStr
    region: Literal["us", "eu"] = "us"
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = Field(
        default=None, description="Overrides the region's API URL."
    )
    responders: list[OpsgenieResponder] = Field(default_factory=list, max_length=50)
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=10
    )

    @property
    def api_url(self) -> str:
        """Returns the API base URL: base_url, or the region's."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}[self.region]

    def _secret_fields(self) -> list[SecretStr | None]:
        return [self.api_key]

    def target(self) -> str:
        """Returns the alerts endpoint (without any user:password@ in base_url)."""
        return _without_userinfo(f"{self.api_url}/v2/alerts")


ChannelConfig = Annotated[
    EmailChannel | SlackChannel | WebhookChannel | PagerDutyChannel | OpsgenieChannel,
    Field(discriminator="type"),
]
CHANNEL_TYPES = ("email", "slack", "webhook", "pagerduty", "opsgenie")


# Scheme, then userinfo up to the authority's last "@" (greedy: a password may hold a raw "@"),
# then host and port.
_URL_AUTHORITY = re.compile(r"^([a-z][a-z0-9+.-]*://)(?:[^/?#]*@)?([^/?#]*)(.*)$", re.IGNORECASE)


def _host_only(url: SecretStr) -> str:
    """Returns scheme, host and port of a secret URL: no userinfo, path or query (for logs)."""
    match = _URL_AUTHORITY.match(url.get_secret_value())
    if match is None or not match.group(2):
        return "(invalid URL)"
    return f"{match.group(1)}{match.group(2)}/…"


def _without_userinfo(url: str) -> str:
    """Returns a URL without its user:password@ part, which is a secret wherever it appears."""
    match = _URL_AUTHORITY.match(url)
    return f"{match.group(1)}{match.group(2)}{match.group(3)}" if match else "(invalid URL)"


class ChannelsFile(_Strict):
    """The whole file: a list of channels."""

    channels: list[ChannelConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ChannelsFile:
        seen: set[str] = set()
        for channel in self.channels:
            if channel.name in seen:
                raise ValueError(f"channel name {channel.name!r} is used twice")
            seen.add(channel.name)
        return self

    def get(self, name: str) -> ChannelConfig | None:
        """Returns a channel by name."""
        return next((c for c in self.channels if c.name == name), None)

    @property
    def enabled(self) -> list[ChannelConfig]:
        """Returns the enabled channels, in file order."""
        return [c for c in self.channels if c.enabled]


_CHANNEL_ADAPTER: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


def load_channels(path: Path | None, environ: Mapping[str, str] | None = None) -> ChannelsFile:
    """Reads and validates the channels file.

    Args:
        path: the YAML file; None means no channels at all.
        environ: where ${VAR} references are looked up (os.environ by default).

    Raises:
        ChannelConfigError: the file is missing, not YAML, or describes an unusable channel;
            the message names the file, channel and field, and never contains a value.
    """
    if path is None:
        return ChannelsFile()
    if not path.is_file():
        raise ChannelConfigError(f"channels file {path} does not exist (RBR_NOTIFIER_CHANNELS)")
    document = _read_yaml(path)
    return parse_channels(document, source=str(path), environ=environ)


def parse_channels(
    document: Any, *, source: str = "channels", environ: Mapping[str, str] | None = None
) -> ChannelsFile:
    """Validates an already-parsed channels document (see `load_channels`)."""
    if document is None:
        return ChannelsFile()
    if not isinstance(document, dict) or set(document) - {"channels"}:
        raise ChannelConfigError(f"{source}: the top level must be a mapping with 'channels'")
    raw_channels = document.get("channels") or []
    if not isinstance(raw_channels, list):
        raise ChannelConfigError(f"{source}: 'channels' must be a list of channels")
    channels = [
        _parse_channel(raw, index, source, os.environ if environ is None else environ)
        for index, raw in enumerate(raw_channels)
    ]
    try:
        return ChannelsFile(channels=channels)
    except ValidationError as error:
        raise ChannelConfigError(f"{source}: {_first_message(error)}") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        # The error's own text quotes the offending line, which may hold a secret.
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ChannelConfigError(f"{path}: not valid YAML at {where}: {error.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
        raise ChannelConfigError(f"{path}: cannot be read: {type(error).__name__}") from None


def _describe_channel(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    kind = raw.get("type") if isinstance(raw, dict) else None
    label = f"channel {name!r}" if isinstance(name, str) else f"channel #{index + 1}"
    return f"{label} (type {kind})" if isinstance(kind, str) else label


def _parse_channel(raw: Any, index: int, source: str, environ: Mapping[str, str]) -> ChannelConfig:
    label = _describe_channel(raw, index)
    if not isinstance(raw, dict):
        raise ChannelConfigError(f"{source}: {label}: must be a mapping of fields")
    if raw.get("type") not in CHANNEL_TYPES:
        raise ChannelConfigError(
            f"{source}: {label}: field 'type' must be one of {', '.join(CHANNEL_TYPES)}"
        )
    expanded = _expand(raw, environ, f"{source}: {label}", ())
    try:
        return _CHANNEL_ADAPTER.validate_python(expanded)
    except ValidationError as error:
        raise ChannelConfigError(f"{source}: {label}: {_describe(error)}") from None


def _expand(value: Any, environ: Mapping[str, str], where: str, path: tuple[str, ...]) -> Any:
    """Replaces ${VAR} references in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {
            key: _expand(item, environ, where, (*path, str(key))) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item, environ, where, (*path, str(i))) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1)
        field = ".".join(path)
        if not _ENV_NAME.match(name):
            raise ChannelConfigError(
                f"{where}: field '{field}' has a malformed ${{...}} reference "
                "(use ${NAME} with letters, digits and _)"
            )
        if name not in environ:
            raise ChannelConfigError(
                f"{where}: field '{field}' refers to environment variable {name}, which is not set"
            )
        return environ[name]

    return _ENV_REFERENCE.sub(substitute, value)


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_input=False, include_url=False)[:5]:
        # The first location item is the union member (the channel type); drop it.
        location = [str(item) for item in detail["loc"][1:]]
        field = ".".join(location) or "(channel)"
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"field '{field}': {message}")
    return "; ".join(parts)


def _first_message(error: ValidationError) -> str:
    detail = error.errors(include_input=False, include_url=False)[0]
    return str(detail["msg"]).removeprefix("Value error, ")

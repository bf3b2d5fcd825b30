"""The channels file: validation, secrets from the environment, errors that leak nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from rbr_notifier.channels import (
    ChannelConfigError,
    EmailChannel,
    OpsgenieChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    load_channels,
    parse_channels,
)
from rbr_schemas import Severity

EXAMPLE = Path(__file__).resolve().parents[1] / "channels.example.yaml"
SECRETS = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
    "SMTP_PASSWORD": "smtp-pass-SECRET",
    "WEBHOOK_SECRET": "whsec-SECRET-value",
    "WEBHOOK_TOKEN": "siem-token-SECRET",
    "PAGERDUTY_ROUTING_KEY": "R0UTINGKEYSECRET0000000000000000",
    "OPSGENIE_API_KEY": "genie-key-SECRET",
}


def test_example_file_is_valid_and_covers_every_channel_type() -> None:
    channels = load_channels(EXAMPLE, environ=SECRETS)

    kinds = {type(c) for c in channels.channels}
    assert kinds == {EmailChannel, SlackChannel, WebhookChannel, PagerDutyChannel, OpsgenieChannel}
    slack = channels.get("security-slack")
    assert isinstance(slack, SlackChannel)
    assert slack.url.get_secret_value() == SECRETS["SLACK_WEBHOOK_URL"]
    assert slack.filters.min_severity is Severity.MEDIUM


def test_references_expand_inside_strings_and_dollar_dollar_escapes() -> None:
    channels = parse_channels(
        {
            "channels": [
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": "https://example.com/hook/${TOKEN}?x=$${literal}",
                }
            ]
        },
        environ={"TOKEN": "abc123"},
    )
    hook = channels.get("hook")
    assert isinstance(hook, WebhookChannel)
    assert hook.url.get_secret_value() == "https://example.com/hook/abc123?x=${literal}"


def test_missing_variable_names_channel_field_and_variable_never_a_value(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - name: pager\n    type: pagerduty\n    routing_key: ${PD_KEY}\n")
    with pytest.raises(ChannelConfigError) as caught:
        load_channels(path, environ={"OTHER": "x"})
    message = str(caught.value)
    assert "'pager'" in message
    assert "routing_key" in message
    assert "PD_KEY" in message
    assert "not set" in message


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (
            {"name": "m", "type": "email", "host": "smtp", "from": "a@b.example", "to": []},
            "field 'to'",
        ),
        (
            {
                "name": "m",
                "type": "email",
                "host": "smtp",
                "from": "a@b.example",
                "to": ["not-an-address"],
            },
            "field 'to'",
        ),
        ({"name": "s", "type": "slack", "url": "ftp://nope/SECRET-URL"}, "field 'url'"),
        (
            {
                "name": "s",
                "type": "slack",
                "url": "https://h/x",
                "filters": {"min_severity": "huge"},
            },
            "field 'filters.min_severity'",
        ),
        ({"name": "s", "type": "slack", "url": "https://h/x", "colour": "red"}, "field 'colour'"),
        ({"name": "o", "type": "opsgenie", "api_key": "k", "region": "mars"}, "field 'region'"),
        ({"name": "bad name!", "type": "slack", "url": "https://h/x"}, "field 'name'"),
        ({"name": "x", "type": "carrier-pigeon"}, "field 'type' must be one of"),
        (
            {
                "name": "w",
                "type": "webhook",
                "url": "https://h/x",
                "headers": {"X-Rbr-Signature": "forged"},
            },
            "field 'headers'",
        ),
        (
            {"name": "w", "type": "webhook", "url": "https://h/x", "retry": {"max_age": "6 hrs"}},
            "field 'retry.max_age': must be seconds or a duration like 30s, 5m, 6h or 1d",
        ),
        (
            {"name": "w", "type": "webhook", "url": "https://h/x", "retry": {"initial": 0}},
            "field 'retry.initial'",
        ),
        (
            {"name": "w", "type": "webhook", "url": "https://h/x", "retry": {"max_age": "30d"}},
            "field 'retry.max_age'",
        ),
        (
            {"name": "w", "type": "webhook", "url": "https://h/x", "retry": {"every": "5m"}},
            "field 'retry.every'",
        ),
    ],
)
def test_invalid_channels_are_refused_with_channel_and_field(
    channel: dict[str, object], expected: str
) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        parse_channels({"channels": [channel]}, source="channels.yaml")
    message = str(caught.value)
    assert expected in message
    assert f"channel {channel['name']!r}" in message
    assert "SECRET" not in message


def test_duplicate_names_are_refused() -> None:
    channel = {"name": "twice", "type": "slack", "url": "https://h/x"}
    with pytest.raises(ChannelConfigError, match="'twice' is used twice"):
        parse_channels({"channels": [channel, channel]})


def test_broken_yaml_reports_the_position_without_quoting_the_line(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - name: s\n    url: https://hooks/SECRET: [unclosed\n")
    with pytest.raises(ChannelConfigError) as caught:
        load_channels(path)
    assert "line 3" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="does not exist"):
        load_channels(tmp_path / "nope.yaml")


def test_no_file_means_no_channels() -> None:
    assert load_channels(None).channels == []


def test_filters_combine_severity_types_and_bucket_patterns() -> None:
    channels = parse_channels(
        {
            "channels": [
                {
                    "name": "prod",
                    "type": "slack",
                    "url": "https://h/x",
                    "filters": {
                        "min_severity": "high",
                        "types": ["bucket_unresponsive", "analysis_finding"],
                        "buckets": ["prod-*"],
                    },
                }
            ]
        }
    )
    filters = channels.channels[0].filters
    assert filters.accepts(Severity.CRITICAL, "analysis_finding", "prod-7")
    assert not filters.accepts(Severity.MEDIUM, "analysis_finding", "prod-7")
    assert not filters.accepts(Severity.HIGH, "daily_summary", "prod-7")
    assert not filters.accepts(Severity.HIGH, "analysis_finding", "staging-1")
    assert not filters.accepts(Severity.HIGH, "analysis_finding", None)


def test_secrets_are_hidden_from_repr_and_target() -> None:
    channels = load_channels(EXAMPLE, environ=SECRETS)
    rendered = repr(channels) + " ".join(c.target() for c in channels.channels)
    for secret in SECRETS.values():
        assert secret not in rendered


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (
            {"type": "webhook", "url": "https://siem:hunter2@hooks.example.com:8443/in?t=1"},
            "https://hooks.example.com:8443/… (UNSIGNED)",
        ),
        (
            {"type": "slack", "url": "https://u:p@ss-hunter2@hooks.slack.com/x"},
            "https://hooks.slack.com/…",
        ),
        (
            {
                "type": "pagerduty",
                "routing_key": "k" * 32,
                "base_url": "https://pd:hunter2@pd.example",
            },
            "https://pd.example/v2/enqueue",
        ),
        (
            {"type": "opsgenie", "api_key": "key", "base_url": "https://og:hunter2@og.example/"},
            "https://og.example/v2/alerts",
        ),
    ],
)
def test_target_strips_userinfo_from_urls(channel: dict[str, str], expected: str) -> None:
    (parsed,) = parse_channels({"channels": [{"name": "c", **channel}]}).channels

    assert parsed.target() == expected
    assert "hunter2" not in parsed.target()

"""The analyst's configuration: defaults, aliases and clear errors naming the variable."""

from __future__ import annotations

import pytest

from rbr_analyst.settings import DEFAULT_MODEL, AnalystSettings
from rbr_runtime.settings import ConfigError, load_settings
from rbr_schemas import Severity

VARIABLES = (
    "ANTHROPIC_API_KEY",
    "RBR_ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "RBR_ANTHROPIC_BASE_URL",
    "RBR_ALERT_MIN_SEVERITY",
    "RBR_TIMEZONE",
    "RBR_DAILY_SUMMARY_AT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_work_offline() -> None:
    settings = load_settings(AnalystSettings)
    assert settings.http_port == 9104
    assert settings.analysis_interval == 14_400
    assert settings.alert_min_severity == Severity.MEDIUM
    assert settings.analyst_model == DEFAULT_MODEL
    assert settings.daily_summary_at == "08:00"
    assert not settings.uses_claude


def test_api_key_and_base_url_from_the_anthropic_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0000000000")
    monkeypatch.setenv("RBR_ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")
    settings = load_settings(AnalystSettings)
    assert settings.uses_claude
    assert settings.anthropic_base_url == "http://127.0.0.1:9999"
    assert "sk-ant-from-env" not in repr(settings)


def test_empty_api_key_means_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    assert not load_settings(AnalystSettings).uses_claude


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RBR_ALERT_MIN_SEVERITY", "urgent"),
        ("RBR_TIMEZONE", "Mars/Olympus_Mons"),
        ("RBR_DAILY_SUMMARY_AT", "25:00"),
    ],
)
def test_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings(AnalystSettings)

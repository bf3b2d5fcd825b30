"""Settings from RBR_* variables with clear errors, and JSON log lines with context."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import SecretStr

from rbr_runtime.buckets import BucketAccessSettings
from rbr_runtime.jsonlog import JsonFormatter, log_context
from rbr_runtime.settings import CommonSettings, ConfigError, CsvList, load_settings


class NeedsSecret(CommonSettings):
    secret_key: SecretStr
    enrollment_keys: CsvList = []


def test_missing_required_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RBR_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="RBR_SECRET_KEY is required"):
        load_settings(NeedsSecret)


def test_invalid_value_names_the_variable_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", "s3cr3t-value")
    monkeypatch.setenv("RBR_HTTP_PORT", "not-a-port-s3cr3t")
    with pytest.raises(ConfigError, match="RBR_HTTP_PORT is invalid") as raised:
        load_settings(NeedsSecret)
    assert "s3cr3t" not in str(raised.value)


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", "k")
    monkeypatch.setenv("RBR_ENROLLMENT_KEYS", "key-1, key-2,")
    monkeypatch.setenv("RBR_KAFKA_CLIENT_CONFIG", '{"security.protocol": "SASL_SSL"}')
    monkeypatch.setenv("RBR_S3_ENDPOINT_URL", "")
    settings = load_settings(NeedsSecret)
    assert settings.enrollment_keys == ["key-1", "key-2"]
    assert settings.kafka_client_config == {"security.protocol": "SASL_SSL"}
    assert settings.s3_endpoint_url is None
    assert "k" not in repr(settings.secret_key)


def test_defaults_match_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("RBR_KAFKA_BOOTSTRAP", "RBR_S3_ENDPOINT_URL", "RBR_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings(CommonSettings)
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.database_url.startswith("sqlite:///./var/")


def test_json_log_line_carries_context_and_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("poller"))
    logger = logging.getLogger("test.jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with log_context(bucket="rustbucket-a", event_id="e-1"):
            logger.info("polled %s", "ok", extra={"latency_ms": 12.5})
        logger.info("x" * 5000)
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "polled ok"
    assert first["bucket"] == "rustbucket-a"
    assert first["event_id"] == "e-1"
    assert first["latency_ms"] == 12.5
    assert first["service"] == "poller"
    assert "bucket" not in second
    assert len(second["message"]) < 2100


@pytest.mark.parametrize("value", ["", " ", "new-key,", ",old-key"])
def test_empty_secret_keys_are_a_configuration_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", value)
    with pytest.raises(ConfigError, match=r"RBR_SECRET_KEY is invalid: .*non-empty keys"):
        load_settings(BucketAccessSettings)

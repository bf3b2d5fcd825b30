"""Fixtures of the analyst's tests: settings, a store on the real MariaDB, log rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import AnalystStore
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_testing.anthropic_api import API_KEY, FakeAnthropic

INTERVAL = 14_400
# A window that ended long ago, so it is due whatever the grace.
WINDOW_START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
def make_settings(mysql_database_url: str) -> Callable[..., AnalystSettings]:
    """Builds analyst settings on the test database (no API key unless given)."""

    def build(**overrides: Any) -> AnalystSettings:
        values: dict[str, Any] = {
            "database_url": mysql_database_url,
            "kafka_session_timeout_ms": 2000,
            "consumer_batch_wait": 0.2,
            "retry_initial_backoff": 0.05,
            "retry_max_backoff": 0.2,
            "analysis_grace": 0,
            "analysis_check_interval": 0.2,
            "http_port": 0,
            "anthropic_api_key": None,
            "anthropic_base_url": None,
            # These tests are about the alert lifecycle: findings alert at their kind's
            # severity. test_intel.py grades by novelty, the default.
            "alert_grading": "kind",
        }
        values.update(overrides)
        return AnalystSettings(**values)

    return build


@pytest.fixture
def claude_settings(
    make_settings: Callable[..., AnalystSettings], fake_anthropic: FakeAnthropic
) -> Callable[..., AnalystSettings]:
    """Builds settings that point the real SDK at the fake Anthropic API."""

    def build(**overrides: Any) -> AnalystSettings:
        values: dict[str, Any] = {
            "anthropic_api_key": API_KEY,
            "anthropic_base_url": fake_anthropic.base_url,
            "analyst_max_retries": 2,
        }
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture
def store(mysql_engine: Engine) -> AnalystStore:
    return AnalystStore(mysql_engine)


@pytest.fixture
def offline_producer() -> EventProducer:
    """A producer for tests that do not read what is published (no broker behind it).

    An analysis still relays its outbox, so a send waits for the broker: one second here,
    not the default 30 (the events stay in the outbox, which these tests do not look at).
    """
    settings = CommonSettings(kafka_bootstrap="127.0.0.1:9", kafka_message_timeout_ms=1000)
    return EventProducer(settings, source="/rbr/test")

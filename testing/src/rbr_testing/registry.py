"""Registrar and poller services for tests, on the real broker and MariaDB.

`registrar_factory(**settings)` starts a whole registrar (HTTP API on a free port, outbox
relay, status consumer) against the test's broker and database; `poller_factory(**settings)`
starts a poller replica. Both stop at teardown. The services are imported when the fixtures
run, so tests that do not use them pay nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
from sqlalchemy import Engine

from rbr_testing.broker import Broker
from rbr_testing.services import RunningService, running

if TYPE_CHECKING:
    from rbr_poller.main import Poller
    from rbr_registrar.main import Registrar

TEST_SECRET_KEY = "test-secret-key-for-bucket-tokens"
TEST_OPERATOR_KEY = "test-operator-key"
SIMULATED_BUCKET_PORTS = "1024-65535"
"""RBR_ALLOWED_BUCKET_PORTS for tests: simulated buckets listen on ephemeral ports."""

FAST_KAFKA = {
    "kafka_session_timeout_ms": 2000,
    "consumer_batch_wait": 0.1,
    "retry_initial_backoff": 0.1,
    "retry_max_backoff": 1.0,
    "shutdown_timeout": 10.0,
}


def database_url(engine: Engine) -> str:
    """Returns the URL of an engine's database, password included."""
    return engine.url.render_as_string(hide_password=False)


@dataclass
class RunningRegistrar:
    """A registrar started by `registrar_factory`."""

    registrar: Registrar
    handle: RunningService

    @property
    def url(self) -> str:
        """Returns the base URL of the API."""
        return f"http://127.0.0.1:{self.registrar.http.port}"

    @property
    def console_url(self) -> str:
        """Returns the base URL of the console and operator API (their own port, if split)."""
        console = self.registrar.console_http
        return self.url if console is None else f"http://127.0.0.1:{console.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        """Returns an HTTP client for the API (the caller closes it)."""
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def console_client(self, **kwargs: Any) -> httpx.Client:
        """Returns an HTTP client for the console's listener (the caller closes it)."""
        return httpx.Client(base_url=self.console_url, timeout=10.0, **kwargs)

    def operator(self) -> httpx.Client:
        """Returns a client that sends the test operator key."""
        return self.client(headers={"Authorization": f"Bearer {TEST_OPERATOR_KEY}"})


class RegistrarFactory(Protocol):
    """Starts a registrar: `registrar_factory(**setting_overrides)`."""

    def __call__(self, **overrides: Any) -> RunningRegistrar:
        """Returns a running registrar; it stops when the test ends."""
        ...


class PollerFactory(Protocol):
    """Starts a poller replica: `poller_factory(**setting_overrides)`."""

    def __call__(self, **overrides: Any) -> tuple[Poller, RunningService]:
        """Returns a running poller; it stops when the test ends."""
        ...


def registrar_settings(broker: Broker, engine: Engine, **overrides: Any) -> Any:
    """Returns registrar settings for tests (loopback buckets allowed, fast timings)."""
    from rbr_registrar.settings import RegistrarSettings  # noqa: PLC0415 - lazy on purpose
    from rbr_runtime.settings import load_settings  # noqa: PLC0415

    values: dict[str, Any] = {
        "kafka_bootstrap": broker.bootstrap,
        "database_url": database_url(engine),
        "http_port": 0,
        "secret_key": TEST_SECRET_KEY,
        "operator_key": TEST_OPERATOR_KEY,
        "allowed_bucket_networks": "127.0.0.0/8",
        "allowed_bucket_ports": SIMULATED_BUCKET_PORTS,
        "outbox_scan_interval": 0.5,
        "log_format": "text",
        **FAST_KAFKA,
    }
    values.update(overrides)
    return load_settings(RegistrarSettings, **values)


def poller_settings(broker: Broker, engine: Engine, **overrides: Any) -> Any:
    """Returns poller settings for tests (loopback buckets allowed, fast timings)."""
    from rbr_poller.settings import PollerSettings  # noqa: PLC0415 - lazy on purpose
    from rbr_runtime.settings import load_settings  # noqa: PLC0415

    values: dict[str, Any] = {
        "kafka_bootstrap": broker.bootstrap,
        "database_url": database_url(engine),
        "http_port": 0,
        "secret_key": TEST_SECRET_KEY,
        "allowed_bucket_networks": "127.0.0.0/8",
        "allowed_bucket_ports": SIMULATED_BUCKET_PORTS,
        "bucket_timeout": 2.0,
        "log_format": "text",
        **FAST_KAFKA,
    }
    values.update(overrides)
    return load_settings(PollerSettings, **values)


@pytest.fixture
def registrar_factory(broker: Broker, mysql_engine: Engine) -> Iterator[RegistrarFactory]:
    """Yields a function that starts registrars on the test's broker and database."""
    from rbr_registrar.main import Registrar  # noqa: PLC0415 - only tests that use it pay

    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> RunningRegistrar:
            registrar = Registrar(registrar_settings(broker, mysql_engine, **overrides))
            handle = stack.enter_context(running(registrar.service))
            return RunningRegistrar(registrar, handle)

        yield start


@pytest.fixture
def poller_factory(broker: Broker, mysql_engine: Engine) -> Iterator[PollerFactory]:
    """Yields a function that starts poller replicas on the test's broker and database."""
    from rbr_poller.main import Poller  # noqa: PLC0415 - only tests that use it pay

    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> tuple[Poller, RunningService]:
            poller = Poller(poller_settings(broker, mysql_engine, **overrides))
            handle = stack.enter_context(running(poller.service))
            return poller, handle

        yield start

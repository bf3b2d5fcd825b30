"""Is the broker there: a TCP connect to the bootstrap servers, then a metadata request.

librdkafka answers an unreachable broker only when its timeout ends, with "Broker transport
failure"; a plain connect says at once which address refused and why.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka.config import admin_config
from rbr_runtime.settings import CommonSettings

if TYPE_CHECKING:
    from confluent_kafka.admin._metadata import ClusterMetadata

DEFAULT_PORT = 9092


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """Returns the (host, port) of each bootstrap server, e.g. from `SSL://[::1]:9093,b:9092`."""
    addresses = []
    for server in filter(None, (part.strip() for part in bootstrap.split(","))):
        address = server.rpartition("://")[2]
        host, _, port = address.rpartition(":")
        if not host or address.endswith("]"):  # no port: Kafka's default
            host, port = address, str(DEFAULT_PORT)
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def connect_any(bootstrap: str, timeout: float) -> None:
    """Returns once a TCP connection to one bootstrap server succeeds.

    Raises:
        ConnectionError: none accepted a connection within `timeout` seconds each; the message
            names every address and why.
    """
    causes = []
    for host, port in bootstrap_addresses(bootstrap):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as error:
            causes.append(f"{host}:{port} ({_reason(error)})")
    raise ConnectionError(f"cannot connect to the broker at {', '.join(causes) or bootstrap}")


def _reason(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "no answer"
    return error.strerror or type(error).__name__


def quiet_admin(settings: CommonSettings) -> AdminClient:
    """Returns an admin client that logs nothing: the caller reports what failed."""
    config: dict[str, Any] = {**admin_config(settings), "error_cb": _ignore, "log_level": 0}
    config.pop("logger", None)
    return AdminClient(config)


def _ignore(_error: Any) -> None:
    return None


def broker_metadata(settings: CommonSettings, timeout: float) -> ClusterMetadata:
    """Returns the cluster's metadata, failing fast and clearly when no broker answers.

    Raises:
        ConnectionError: no bootstrap server accepts a connection, or none answers a metadata
            request within `timeout` seconds (e.g. not Kafka, or TLS/SASL settings missing).
    """
    connect_any(settings.kafka_bootstrap, timeout)
    try:
        return quiet_admin(settings).list_topics(timeout=timeout)
    except KafkaException as error:
        cause = error.args[0].str() if error.args else str(error)
        raise ConnectionError(
            f"{settings.kafka_bootstrap} accepts connections but answered no metadata request "
            f"within {timeout:g}s ({cause})"
        ) from error

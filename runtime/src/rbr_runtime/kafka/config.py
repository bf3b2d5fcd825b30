"""librdkafka configuration shared by every producer, consumer and admin client."""

from __future__ import annotations

import logging
from typing import Any

from rbr_runtime.settings import CommonSettings

_librdkafka_log = logging.getLogger("rbr.librdkafka")


def _log_client_error(error: Any) -> None:
    # Broker outages surface here (e.g. "Connect to ... failed"); the client keeps retrying.
    _librdkafka_log.warning("kafka client error: %s", error)


def client_config(settings: CommonSettings) -> dict[str, Any]:
    """Returns the settings every client needs: bootstrap servers, identity, security."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": settings.service_name,
        "error_cb": _log_client_error,
        "logger": _librdkafka_log,
        **settings.kafka_client_config,
    }


def producer_config(settings: CommonSettings) -> dict[str, Any]:
    """Returns an idempotent, acks=all producer configuration.

    murmur2 partitioning matches the Java client, so a bucket's events land in the same
    partition whichever client produced them.
    """
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "message.timeout.ms": settings.kafka_message_timeout_ms,
    }


def consumer_config(settings: CommonSettings, group_id: str) -> dict[str, Any]:
    """Returns a consumer configuration that commits only when told to."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 3),
        "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
        "enable.partition.eof": True,
    }


def admin_config(settings: CommonSettings) -> dict[str, Any]:
    """Returns an admin client configuration."""
    return client_config(settings)

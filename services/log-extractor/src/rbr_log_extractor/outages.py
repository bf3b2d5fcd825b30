"""Outages of the database, S3 or broker: one warning when one starts, one info when it ends."""

from __future__ import annotations

import logging
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException
from sqlalchemy.exc import SQLAlchemyError

from rbr_runtime.errors import is_outage
from rbr_runtime.kafka import DeliveryError

log = logging.getLogger(__name__)

DATABASE = "database"
S3 = "S3"
BROKER = "broker"


def unavailable_dependency(error: BaseException) -> str | None:
    """Returns which of the registry's own dependencies the error says is down, if any.

    None for everything else: a bucket that cannot be reached is the bucket's failure, not an
    outage of the service, and an error that is no outage is a bug or bad data.
    """
    if not is_outage(error):
        return None
    if isinstance(error, SQLAlchemyError):
        return DATABASE
    if isinstance(error, BotoCoreError | ClientError):
        return S3
    if isinstance(error, KafkaException | DeliveryError):
        return BROKER
    return None


class Outages:
    """The dependencies that are down now, each reported once when it fails and when it is back.

    Thread-safe: extractions run on a pool of threads and report what they see.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def down(self, dependency: str, cause: str) -> None:
        """Notes that the dependency failed; the first failure of an outage is logged."""
        with self._lock:
            if dependency in self._since:
                return
            self._since[dependency] = time.monotonic()
        log.warning(
            "%s unavailable, extractions are retried until it is back: %s",
            dependency,
            cause,
            extra={"dependency": dependency},
        )

    def up(self, *dependencies: str) -> None:
        """Notes that the dependencies answered; the end of an outage is logged."""
        for dependency in dependencies:
            with self._lock:
                since = self._since.pop(dependency, None)
            if since is not None:
                log.info(
                    "%s available again after %.0f s",
                    dependency,
                    time.monotonic() - since,
                    extra={"dependency": dependency},
                )

"""Telling an outage (retry until it ends) from a fault (give up after a few tries).

A consumer must never skip a message because a database, S3, the broker or a remote system
was unavailable: those are retried for as long as it takes. Any other exception is a bug or a
message the code cannot handle (attacker-controlled logs reach unexpected corners): retried a
few times, in case it was an outage of a kind not recognised here, then dead-lettered with its
reason, so one message cannot block its partition forever.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import HTTPClientError as BotocoreHTTPClientError
from confluent_kafka import KafkaException
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from rbr_runtime.db.engine import is_schema_behind


class TransientError(Exception):
    """Raised by a handler for a failure that will pass (retried as long as it lasts)."""


# S3 error codes that say "try again" or "the registry is misconfigured": neither is a reason
# to give a message up. The operator fixes credentials; throttling and 5xx pass.
_RETRIED_S3_CODES = {
    "AccessDenied",
    "ExpiredToken",
    "InternalError",
    "InvalidAccessKeyId",
    "RequestLimitExceeded",
    "RequestTimeout",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
}

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    OSError,  # ConnectionError, TimeoutError, socket errors, and httpx's underlying ones
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    KafkaException,
    BotocoreConnectionError,
    BotocoreHTTPClientError,
    NoCredentialsError,
)


def is_outage(error: BaseException) -> bool:
    """Tells whether an exception means something the service depends on is unavailable."""
    if isinstance(error, _OUTAGE_TYPES):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if is_schema_behind(error):
        return True
    if isinstance(error, ClientError):
        return _retried_client_error(error)
    # Delivery and HTTP transport errors of the libraries we wrap name themselves so; matching
    # by name keeps this module free of optional imports (httpx, anthropic).
    return type(error).__name__ in {"DeliveryError", "TransportError", "ConnectError"} or any(
        cls.__name__ == "TransportError" for cls in type(error).__mro__
    )


def _retried_client_error(error: ClientError) -> bool:
    response = error.response or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    code = str(response.get("Error", {}).get("Code", ""))
    return status >= 500 or status == 429 or code in _RETRIED_S3_CODES


def describe_error(error: BaseException, limit: int = 300) -> str:
    """Returns a one-line cause for a log line or a health check: type and first line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:limit]

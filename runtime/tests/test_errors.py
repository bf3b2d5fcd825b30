"""Which exceptions are outages (retried while they last) and which are faults."""

from __future__ import annotations

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from sqlalchemy.exc import IntegrityError, OperationalError

from rbr_runtime.errors import TransientError, is_outage
from rbr_runtime.kafka import DeliveryError


def client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
        OperationalError("SELECT 1", {}, Exception("gone away")),
        EndpointConnectionError(endpoint_url="http://s3"),
        client_error(503, "ServiceUnavailable"),
        client_error(503, "SlowDown"),
        client_error(403, "AccessDenied"),
        DeliveryError("not confirmed"),
        httpx.ConnectError("refused"),
        TransientError("wait"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages(error: BaseException) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        OverflowError("date value out of range"),
        KeyError("field"),
        client_error(404, "NoSuchKey"),
        IntegrityError("INSERT", {}, Exception("duplicate")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_faults(error: BaseException) -> None:
    assert not is_outage(error)

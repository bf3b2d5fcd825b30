"""Which exceptions are outages (retried while they last) and which are faults."""

from __future__ import annotations

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from rbr_runtime.db.engine import is_transient_db_error
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


@pytest.mark.parametrize(
    ("statement", "outage"),
    [
        ("SELECT * FROM table_of_a_later_migration", True),  # 1146: migrations not run yet
        ("SELECT column_of_a_later_migration FROM buckets", True),  # 1054 (OperationalError)
        ("SELEKT 1", False),  # 1064: a bug, not the schema
    ],
    ids=["missing table", "missing column", "syntax"],
)
def test_a_schema_behind_the_code_is_an_outage_on_mariadb(
    mysql_engine: Engine, statement: str, outage: bool
) -> None:
    # Rolled out before `rbr db upgrade`: retried until the operator migrates, nothing
    # dead-lettered meanwhile.
    with mysql_engine.connect() as connection, pytest.raises(DBAPIError) as raised:
        connection.execute(text(statement))

    assert is_outage(raised.value) is outage
    assert is_transient_db_error(raised.value) is outage

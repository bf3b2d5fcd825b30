"""The registrations' fast path answers and stores exactly what FastAPI's route does.

One registrar (real broker, real MariaDB) serves every request twice over: once with its
fast path (`fast_path.FastRegistrations`) and once with it switched off, so through FastAPI's
route, each time under its own bucket name. The answers must be the same (status, headers,
body, the name and id aside), and so must the rows stored (column by column, the values that
differ by nature aside). Requests the fast path does not serve itself must reach FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import HTTPException, Response
from fastapi.security import HTTPBearer
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError

from rbr_registrar import errors
from rbr_registrar.committer import CommitterStopped
from rbr_registrar.fast_path import FastRegistrations, RegistrarApp
from rbr_registrar.main import Registrar
from rbr_registrar.models import RegistrationRequest
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import buckets
from rbr_testing.broker import Broker
from rbr_testing.mariadb import truncate_all
from rbr_testing.registry import registrar_settings
from rbr_testing.services import running

pytestmark = [pytest.mark.broker, pytest.mark.mariadb]

KEY = "enrol-key-fast-1"
TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
OTHER_TOKEN = "Zz9yXx8wVv7uTt6sRr5qPp4oNn3mMm2l"
NETWORKS = "203.0.113.0/24,198.51.100.0/24"
BY_NATURE = {"id", "name", "token_ciphertext"}
"""Columns that differ between two registrations of the same content (and every time)."""


@dataclass
class Served:
    client: httpx.Client
    app: RegistrarApp
    engine: Engine


@pytest.fixture(scope="module")
def served(mysql_database_url: str) -> Iterator[Served]:
    broker = Broker()
    broker.start()
    engine = make_engine(mysql_database_url)
    truncate_all(engine)
    settings = registrar_settings(
        broker,
        engine,
        enrollment_keys=KEY,
        allowed_bucket_networks=NETWORKS,
        allowed_bucket_ports="8443",
        max_body_bytes=4096,
    )
    registrar = Registrar(settings)
    assert isinstance(registrar.app, RegistrarApp)
    try:
        with (
            running(registrar.service),
            httpx.Client(base_url=f"http://127.0.0.1:{registrar.http.port}") as client,
        ):
            yield Served(client, registrar.app, engine)
    finally:
        broker.stop()
        engine.dispose()


def body(bucket: str, **changes: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {
        "name": bucket,
        "ip_address": "203.0.113.7",
        "operating_system": "linux (x86_64) · ünïcode",
        "token": TOKEN,
        "registration_key": KEY,
        "cpu_usage": "12%",
        "uptime": "3 days",
    }
    for field, value in changes.items():
        if value is ...:
            sent.pop(field, None)
        else:
            sent[field] = value
    return sent


JSON = {"content-type": "application/json"}


def requests_for(name: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body) of each request, in order: some change what later ones see."""

    def encoded(**changes: Any) -> bytes:
        return json.dumps(body(name, **changes)).encode()

    return [
        ("/register_bucket", JSON, encoded()),
        ("/register_bucket", JSON, encoded()),  # the same again: updated
        ("/api/v1/register_bucket/", JSON, encoded(cpu_usage="99%", port=8443)),
        ("/register_bucket/", JSON, encoded(token=OTHER_TOKEN)),  # name taken: 409
        ("/register_bucket", JSON, encoded(registration_key=...)),  # no key: 401
        ("/register_bucket", JSON, encoded(registration_key="wrong")),  # 403
        (
            "/register_bucket",
            {**JSON, "authorization": f"Bearer {KEY}"},
            encoded(registration_key=..., name=f"{name}-b", s3_bucket_name="drops-bucket"),
        ),
        ("/register_bucket", JSON, encoded(name=f"{name}-c", ip_address="10.1.2.3")),
        ("/register_bucket", JSON, encoded(name=f"{name}-d", ip_address="0.0.0.0")),
        ("/register_bucket", JSON, encoded(name=f"{name}-e", port=22)),
        (
            "/api/v1/register_bucket",
            {"content-type": "Application/JSON; charset=utf-8"},
            encoded(name=f"{name}-f", tls_cert_sha256="AB:" * 31 + "AB", delivery_mode="agent"),
        ),
        # What the fast path passes on to FastAPI:
        ("/register_bucket", JSON, b'{"name": "' + name.encode() + b'", "token": '),
        ("/register_bucket", JSON, encoded(ip_address=...)),
        ("/register_bucket", JSON, encoded(name="bad name!", token="short")),
        ("/register_bucket", JSON, encoded(port="443")),
        ("/register_bucket", {"content-type": "text/plain"}, encoded(name=f"{name}-g")),
        ("/register_bucket", {}, encoded(name=f"{name}-h")),
        ("/register_bucket", JSON, encoded(operating_system="x" * 5000)),  # over the limit
        ("/register_bucket", JSON, b"[1, 2]"),
        ("/register_bucket", JSON, b""),
    ]


def answers(served: Served, name: str, *, fast: bool) -> list[tuple[int, list[Any], Any]]:
    """Sends every request; returns each answer with the name and the id taken out."""
    keep = served.app.fast_registrations
    served.app.fast_registrations = keep if fast else None
    try:
        got = []
        for path, headers, content in requests_for(name):
            answer = served.client.post(path, headers=headers, content=content)
            text = answer.text.replace(name, "NAME")
            document = json.loads(text)
            if isinstance(document, dict) and "id" in document:
                document["id"] = "ID"
            header_list = sorted(
                (key, value)
                for key, value in answer.headers.items()
                if key not in ("content-length", "date")
            )
            got.append((answer.status_code, header_list, document))
        return got
    finally:
        served.app.fast_registrations = keep


def stored(engine: Engine, name: str) -> list[dict[str, Any]]:
    """The rows registered under the name (and its -x variants), by variant, minus BY_NATURE.

    Times only say whether they are set: the same content sent twice is sent at two times.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            select(buckets).where(buckets.c.name.like(f"{name}%")).order_by(buckets.c.name)
        ).all()
    return [
        {
            "variant": row.name.removeprefix(name),
            **{
                key: "a time" if isinstance(value, datetime) else value
                for key, value in row._mapping.items()
                if key not in BY_NATURE
            },
        }
        for row in rows
    ]


def test_fast_path_answers_and_stores_what_fastapi_does(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed_on: list[str] = []
    serve = RegistrarApp.serve

    async def counting(self: RegistrarApp, scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])
        await serve(self, scope, receive, send)

    monkeypatch.setattr(RegistrarApp, "serve", counting)

    fast = answers(served, "fastpath-bucket", fast=True)
    assert len(passed_on) == 9  # the nine at the end; the others served by the fast path
    slow = answers(served, "slowpath-bucket", fast=False)

    assert [status for status, _, _ in fast] == [
        200, 200, 200, 409, 401, 403, 200, 422, 422, 422, 200,
        422, 422, 422, 422, 422, 422, 413, 422, 422,
    ]  # fmt: skip
    assert fast == slow
    fast_rows = stored(served.engine, "fastpath-bucket")
    assert len(fast_rows) == 3
    assert fast_rows == stored(served.engine, "slowpath-bucket")


def _erring_app(error: Exception) -> RegistrarApp:
    """An app whose registrations raise `error`, both from the route and the fast path."""
    app = RegistrarApp()
    errors.install(app)

    async def register(*_: Any) -> Response:
        raise error

    @app.post("/register_bucket")
    async def route(payload: RegistrationRequest) -> Response:
        return await register(payload)

    app.fast_registrations = FastRegistrations(app, register, HTTPBearer(auto_error=False), 4096)
    return app


ERRORS = [
    pytest.param(OperationalError("SELECT 1", {}, Exception("gone away")), 503, id="outage"),
    pytest.param(IntegrityError("INSERT", {}, Exception("duplicate")), 500, id="database-bug"),
    pytest.param(CommitterStopped("the registrar is shutting down"), 503, id="stopping"),
    pytest.param(HTTPException(409, "a bucket named x is already registered"), 409, id="http"),
    pytest.param(errors.FieldErrors([("port", "is refused")]), 422, id="field"),
]


@pytest.mark.parametrize(("error", "status"), ERRORS)
def test_fast_path_answers_errors_as_fastapi_does(error: Exception, status: int) -> None:
    app = _erring_app(error)
    content = json.dumps(body("rustbucket-err")).encode()
    got = []
    for fast in (app.fast_registrations, None):
        app.fast_registrations = fast
        with TestClient(app) as client:
            answer = client.post("/register_bucket", content=content, headers=JSON)
        got.append((answer.status_code, dict(answer.headers), answer.content))
    assert got[0][0] == status
    assert got[0] == got[1]


def test_an_unexpected_error_is_answered_500_and_raised_as_fastapi_does() -> None:
    app = _erring_app(ValueError("a bug"))
    content = json.dumps(body("rustbucket-err")).encode()
    for fast in (app.fast_registrations, None):
        app.fast_registrations = fast
        with TestClient(app) as client, pytest.raises(ValueError, match="a bug"):
            client.post("/register_bucket", content=content, headers=JSON)
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.post("/register_bucket", content=content, headers=JSON)
        assert (answer.status_code, answer.json()) == (500, {"detail": "internal error"})

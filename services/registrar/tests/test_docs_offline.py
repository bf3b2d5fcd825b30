"""The API's `/docs` works in a closed network: Swagger UI comes from the registrar itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from rbr_registrar.docs_ui import SWAGGER_UI_VERSION
from rbr_registrar.main import Registrar
from rbr_registrar.settings import RegistrarSettings
from rbr_testing.registry import database_url

LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture
def apps(mysql_engine: Engine) -> Iterator[list[FastAPI]]:
    """The app of one listener (everything) and the two of a split registrar."""
    built = [
        Registrar(
            RegistrarSettings(
                database_url=database_url(mysql_engine),
                secret_key="test-secret",
                operator_key="the-operator-key",
                kafka_bootstrap="127.0.0.1:1",
                console_port=port,
            )
        )
        for port in (None, 0)
    ]
    yield [app for registrar in built for app in (registrar.app, registrar.console_app) if app]
    for registrar in built:
        registrar.engine.dispose()


def test_docs_load_nothing_from_another_site(apps: list[FastAPI]) -> None:
    assert len(apps) == 3
    for app in apps:
        check_docs(TestClient(app))


def check_docs(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    loaded = LOADED.findall(page.text)
    assert "/docs/static/swagger-ui-bundle.js" in loaded
    assert "/docs/static/swagger-ui.css" in loaded
    assert all(url.startswith("/") for url in loaded), loaded
    assert not re.search(r"https?://", page.text)  # no CDN, no validator.swagger.io badge
    assert '"validatorUrl": null' in page.text
    for url in loaded:
        assert client.get(url).status_code == 200, url
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_vendored_version_is_recorded() -> None:
    static = resources.files("rbr_registrar") / "docs_static"
    bundle = static.joinpath("swagger-ui-bundle.js").read_text()
    assert len(bundle) > 1_000_000  # the real bundle, not a placeholder
    assert f"| {SWAGGER_UI_VERSION} |" in static.joinpath("VENDORED.md").read_text()
    assert "Apache License" in static.joinpath("swagger-ui.LICENSE.txt").read_text()

"""The API's `/docs` (Swagger UI) served from vendored files: nothing loaded from a CDN.

FastAPI's own `/docs` loads Swagger UI's script and stylesheet from jsDelivr, which a closed
network cannot reach. Here they come from `docs_static/` (see its VENDORED.md); ReDoc, which
would load from a CDN too, is not served.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
STATIC_URL = "/docs/static"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
SWAGGER_UI_VERSION = "5.35.0"


def install_docs(app: FastAPI) -> None:
    """Serves `/docs` and its files on an app made with `docs_url=None, redoc_url=None`."""
    directory = Path(str(resources.files("rbr_registrar") / "docs_static"))
    app.mount(STATIC_URL, StaticFiles(directory=directory), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            # No badge from validator.swagger.io: the page asks nothing of other sites.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

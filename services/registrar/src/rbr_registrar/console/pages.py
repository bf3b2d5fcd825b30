"""The console's pages: fleet, bucket, logs, analyses, alerts, topics, channels, audit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from rbr_registrar.console.web import PREFIX, PageSession, render


def page_routes() -> APIRouter:
    """Returns the routes of every page and form."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/")
    def fleet(request: Request, session: PageSession) -> HTMLResponse:
        return render(request, "fleet.html", session)

    return router

"""Console helpers for tests: make accounts, log in over HTTP, read a page's CSRF token."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import Engine

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


def add_user(engine: Engine, name: str, role: str, password: str = PASSWORD) -> None:
    """Creates a console account directly in the database."""
    from rbr_registrar.console.accounts import Accounts, Role  # noqa: PLC0415 - lazy

    Accounts(engine).add(name, password, Role(role))


def csrf_token(html: str) -> str:
    """Returns the first CSRF token of a page's forms."""
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    """Logs in through the login form; returns the answer to the POST (303 on success)."""
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"username": name, "password": password, "csrf_token": csrf_token(form.text)},
    )


def logged_in(client: httpx.Client, name: str, password: str = PASSWORD) -> str:
    """Logs in and returns the session's CSRF token (from the fleet page)."""
    answer = login(client, name, password)
    assert answer.status_code == 303, answer.text
    return csrf_token(client.get("/console/").text)

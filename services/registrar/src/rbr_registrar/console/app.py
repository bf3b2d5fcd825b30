"""Builds the console's parts and adds the console to a registrar application."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from rbr_registrar.console import pages, web
from rbr_registrar.console.accounts import Accounts
from rbr_registrar.console.sessions import LoginLimit, Sessions
from rbr_registrar.console.web import ConsoleParts
from rbr_registrar.merges import BucketMerges
from rbr_registrar.operator.topics import TopicsReader
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.store import BucketRepository

__all__ = ["ConsoleParts", "build_console", "install_console"]

TOPICS_TIMEOUT = 8.0
"""Seconds the topics page waits for the broker's answers."""


def build_console(
    settings: RegistrarSettings,
    store: BucketRepository,
    merges: BucketMerges,
    on_commit: Callable[[], None],
) -> ConsoleParts:
    """Returns the console's parts on the registrar's database."""
    engine = store.engine
    return ConsoleParts(
        settings=settings,
        engine=engine,
        store=store,
        merges=merges,
        on_commit=on_commit,
        accounts=Accounts(engine),
        sessions=Sessions(engine, settings.console_session_lifetime),
        login_limit=LoginLimit(engine, settings.login_max_failures, settings.login_failure_window),
        templates=web.make_templates(),
        topics=TopicsReader(settings, TOPICS_TIMEOUT),
    )


def install_console(app: FastAPI, parts: ConsoleParts) -> None:
    """Serves the console under /console/ (and redirects / to it)."""
    web.install(app, parts, pages.page_routes())

"""`rbr db upgrade|current`."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from rbr_cli.output import fail, settings_or_fail
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import current_revision, head_revision
from rbr_runtime.db.migrate import upgrade as run_upgrade
from rbr_runtime.settings import CommonSettings

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@app.command()
def upgrade() -> None:
    """Migrate the database named by RBR_DATABASE_URL to the latest schema."""
    settings = settings_or_fail(CommonSettings)
    target = _redacted(settings.database_url)
    typer.echo(f"migrating {target} to {head_revision()} ...")
    try:
        run_upgrade(settings.database_url)
    except Exception as error:  # noqa: BLE001 - the message says which database failed
        fail(f"migration of {target} failed: {type(error).__name__}: {error}")
    typer.echo("done")


@app.command()
def current() -> None:
    """Show the database's schema revision and the latest one the code knows."""
    settings = settings_or_fail(CommonSettings)
    engine = make_engine(settings.database_url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    typer.echo(f"database: {revision or 'not migrated'}; code: {head_revision()}")

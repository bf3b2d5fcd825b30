"""`rbr buckets list|show|approve|disable|remove|rekey`: the operator API from the command line.

Talks to the registrar over HTTP (`RBR_REGISTRAR_URL`, default http://127.0.0.1:8000) with
the operator key (`RBR_OPERATOR_KEY`).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

app = typer.Typer(help="List and manage registered buckets (the registrar's operator API).")

BUCKET_PATH = "/api/v1/buckets/"
NAMES_HINT = (
    "`rbr buckets list` shows the registered names (`--state pending`: those waiting for "
    "approval; `rbr buckets approve --all-pending` approves them all)"
)


class OperatorClientSettings(BaseSettings):
    """Where the registrar is and the operator key."""

    model_config = SettingsConfigDict(env_prefix="RBR_", extra="ignore")

    registrar_url: str = Field(default="http://127.0.0.1:8000")
    operator_key: SecretStr | None = None


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    settings = OperatorClientSettings()
    if settings.operator_key is None:
        _fail("RBR_OPERATOR_KEY is not set: the operator API needs the registrar's operator key", 2)
    headers = {"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"}
    try:
        with httpx.Client(base_url=settings.registrar_url, timeout=15.0, headers=headers) as client:
            answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        _fail(
            f"cannot reach the registrar at {settings.registrar_url} ({type(error).__name__}: "
            f"{error}); is it running? Set RBR_REGISTRAR_URL to its address."
        )
    if answer.status_code == 404 and path.startswith(BUCKET_PATH):
        _fail(f"404: {_detail(answer)}; {NAMES_HINT}")
    if answer.status_code >= 400:
        _fail(f"{answer.status_code}: {_detail(answer)}")
    return answer.json()


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or answer.text[:300] or answer.reason_phrase)


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "never"


@app.command("list")
def list_buckets(
    state: Annotated[
        str | None, typer.Option(help="Only buckets in this state: pending, active, disabled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most buckets to show.", min=1)] = 1000,
) -> None:
    """List buckets with their state, last successful poll and address."""
    rows, total = _buckets(state, limit)
    if not rows:
        typer.echo("no buckets" + (f" in state {state}" if state else ""))
        return
    lines = [("NAME", "STATE", "ADDRESS", "LAST SEEN", "LAST POLL")]
    for bucket in rows:
        address = bucket["ip_address"] + (f":{bucket['port']}" if bucket["port"] else "")
        reach = {True: "ok", False: bucket.get("last_error_class") or "failed", None: "-"}
        lines.append(
            (
                bucket["name"],
                bucket["state"],
                address,
                _when(bucket["last_seen"]),
                reach[bucket["last_reachable"]],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    if total > len(rows):
        typer.echo(f"({len(rows)} of {total} shown; use --limit)")


def _buckets(state: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Returns up to `limit` buckets (in one state, or all) and how many there are."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    total = 0
    while len(rows) < limit:
        params: dict[str, Any] = {"limit": min(1000, limit - len(rows))}
        if state:
            params["state"] = state
        if after:
            params["after"] = after
        page = _call("GET", "/api/v1/buckets", params=params)
        rows.extend(page["buckets"])
        total = page["total"]
        after = page["next_after"]
        if after is None:
            break
    return rows, total


@app.command("show")
def show_bucket(name: Annotated[str, typer.Argument(help="The bucket's name.")]) -> None:
    """Show one bucket: state, address, S3 source, latest metrics and last poll."""
    bucket = _call("GET", f"/api/v1/buckets/{name}")
    for key, value in bucket.items():
        shown = value
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "-"
        typer.echo(f"{key:<18} {shown if shown is not None else '-'}")


def _change(method: str, path: str) -> None:
    result = _call(method, path)
    state = f" (state {result['state']})" if result.get("state") else ""
    typer.echo(f"{result['name']}: {result['status']}{state}")


@app.command("approve")
def approve_bucket(
    name: Annotated[str | None, typer.Argument(help="The bucket's name.")] = None,
    all_pending: Annotated[
        bool, typer.Option("--all-pending", help="Approve every bucket waiting for approval.")
    ] = False,
) -> None:
    """Approve a pending (or re-enable a disabled) bucket: it is polled from now on."""
    if (name is None) == (not all_pending):
        _fail("name one bucket, or use --all-pending", 2)
    names = [name] if name else [bucket["name"] for bucket in _buckets("pending", 100_000)[0]]
    if not names:
        typer.echo("no buckets in state pending")
    for each in names:
        _change("POST", f"/api/v1/buckets/{each}/approve")


@app.command("disable")
def disable_bucket(name: Annotated[str, typer.Argument(help="The bucket's name.")]) -> None:
    """Disable a bucket: it is no longer polled nor pulled, and cannot re-register."""
    _change("POST", f"/api/v1/buckets/{name}/disable")


@app.command("remove")
def remove_bucket(
    name: Annotated[str, typer.Argument(help="The bucket's name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a bucket from the registry (it may register again, as a new bucket)."""
    if not yes:
        typer.confirm(f"remove bucket {name}?", abort=True)
    _change("DELETE", f"/api/v1/buckets/{name}")


@app.command("rekey")
def rekey_buckets(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the buckets still under an older key.")
    ] = False,
    batch: Annotated[int, typer.Option(help="Buckets per request.", min=1, max=1000)] = 200,
) -> None:
    """Store every bucket's token again under the current (first) RBR_SECRET_KEY.

    After rotating RBR_SECRET_KEY to `new,old`: buckets still stored under `old` are
    re-encrypted, re-hashed and re-published, so `old` can be dropped. Exits 1 when some
    bucket's token no configured key decrypts (they are listed by name).
    """
    totals: Counter[str] = Counter()
    undecryptable: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"dry_run": dry_run, "limit": batch}
        if after:
            params["after"] = after
        page = _call("POST", "/api/v1/buckets/rekey", params=params)
        totals.update({key: page[key] for key in ("checked", "current", "stale", "rekeyed")})
        undecryptable.extend(page["undecryptable"])
        after = page["next_after"]
        if after is None:
            break
        typer.echo(f"... {totals['checked']} checked", err=True)
    _rekey_summary(totals, undecryptable, dry_run)


def _rekey_summary(totals: Counter[str], undecryptable: list[str], dry_run: bool) -> None:
    if dry_run:
        typer.echo(
            f"{totals['checked']} checked: {totals['stale']} still under an older key, "
            f"{totals['current']} current, {len(undecryptable)} undecryptable (dry run)"
        )
    else:
        typer.echo(
            f"{totals['checked']} checked: {totals['rekeyed']} re-keyed, "
            f"{totals['current']} already current, {len(undecryptable)} undecryptable"
        )
    if undecryptable:
        _fail(
            "no configured RBR_SECRET_KEY decrypts the token of: "
            + ", ".join(undecryptable)
            + " (they cannot be polled; re-register or remove them)"
        )
    if dry_run and totals["stale"]:
        return
    typer.echo("every bucket is stored under the current key: older keys can be dropped")

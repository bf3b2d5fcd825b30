"""`rbr buckets ...`, `rbr sources ...` and `rbr topics reseed`: the operator API.

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
sources_app = typer.Typer(
    help="Instance folders found in the S3 drop locations: list, adopt into a bucket, or "
    "make a new s3-drop bucket of one."
)
DELIVERY_MODES = ("pull", "agent", "s3-drop")

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


def request_api(method: str, path: str, timeout: float = 15.0, **kwargs: Any) -> httpx.Response:
    """Calls the operator API and returns its answer, whatever its status."""
    settings = OperatorClientSettings()
    if settings.operator_key is None:
        _fail("RBR_OPERATOR_KEY is not set: the operator API needs the registrar's operator key", 2)
    headers = {"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"}
    try:
        with httpx.Client(
            base_url=settings.registrar_url, timeout=timeout, headers=headers
        ) as client:
            answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        _fail(
            f"cannot reach the registrar at {settings.registrar_url} ({type(error).__name__}: "
            f"{error}); is it running? Set RBR_REGISTRAR_URL to its address."
        )
    return answer


def call_api(method: str, path: str, timeout: float = 15.0, **kwargs: Any) -> Any:
    """Calls the operator API and returns the JSON answer; exits with the error otherwise."""
    answer = request_api(method, path, timeout, **kwargs)
    if answer.status_code == 404 and path.startswith(BUCKET_PATH):
        _fail(f"404: {_detail(answer)}; {NAMES_HINT}")
    if answer.status_code >= 400:
        _fail(f"{answer.status_code}: {_detail(answer)}")
    return answer.json()


def fail_on_error(answer: httpx.Response) -> None:
    """Exits with the API's error message if the answer is one."""
    if answer.status_code >= 400:
        _fail(f"{answer.status_code}: {_detail(answer)}")


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
    mode: Annotated[str | None, typer.Option(help="Only this delivery mode.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only names starting with this.")] = None,
    limit: Annotated[int, typer.Option(help="Most buckets to show.", min=1)] = 1000,
) -> None:
    """List buckets with their state, last successful poll and address."""
    where = {key: value for key, value in (("mode", mode), ("prefix", prefix)) if value}
    rows, total = _buckets(state, limit, where)
    if not rows:
        typer.echo("no buckets" + (f" in state {state}" if state else ""))
        return
    lines = [("NAME", "STATE", "MODE", "ADDRESS", "LAST SEEN", "LAST POLL", "REPLACES")]
    for bucket in rows:
        address = bucket["ip_address"] + (f":{bucket['port']}" if bucket["port"] else "")
        reach = {True: "ok", False: bucket.get("last_error_class") or "failed", None: "-"}
        lines.append(
            (
                bucket["name"],
                bucket["state"],
                bucket.get("delivery_mode", "pull"),
                address,
                _when(bucket["last_seen"]),
                reach[bucket["last_reachable"]],
                bucket.get("replaces") or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    if total > len(rows):
        typer.echo(f"({len(rows)} of {total} shown; use --limit)")
    if any(bucket.get("replaces") for bucket in rows):
        typer.echo(
            "REPLACES: a pending registration from the address and operating system of a "
            "silent bucket (a restart under a new name?): `rbr buckets merge NAME --into "
            "REPLACED` folds it in; `rbr buckets approve NAME` keeps it as a bucket of its own."
        )


def _buckets(
    state: str | None, limit: int, where: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Returns up to `limit` buckets (in one state, or all; or by filter) and how many match."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    total = 0
    while len(rows) < limit:
        params: dict[str, Any] = {"limit": min(1000, limit - len(rows)), **(where or {})}
        if state:
            params["state"] = state
        if after:
            params["after"] = after
        page = call_api("GET", "/api/v1/buckets", params=params)
        rows.extend(page["buckets"])
        total = page["total"]
        after = page["next_after"]
        if after is None:
            break
    return rows, total


@app.command("show")
def show_bucket(name: Annotated[str, typer.Argument(help="The bucket's name.")]) -> None:
    """Show one bucket: state, address, S3 source, latest metrics and last poll."""
    bucket = call_api("GET", f"/api/v1/buckets/{name}")
    for key, value in bucket.items():
        shown = value
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "-"
        elif isinstance(value, list):
            shown = ", ".join(str(item) for item in value) or "-"
        typer.echo(f"{key:<18} {shown if shown is not None else '-'}")


def _change(method: str, path: str, **kwargs: Any) -> None:
    result = call_api(method, path, **kwargs)
    state = f" (state {result['state']})" if result.get("state") else ""
    typer.echo(f"{result['name']}: {result['status']}{state}")


NamesArgument = Annotated[
    list[str] | None, typer.Argument(help="The buckets' names (one or many).", show_default=False)
]
StateOption = Annotated[
    str | None, typer.Option("--state", help="Every bucket in this state (with the others).")
]
ModeOption = Annotated[
    str | None, typer.Option("--mode", help="Every bucket of this delivery mode.")
]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="Every bucket whose name starts with this.")
]
BULK_CHUNK = 1000


def _bulk(action: str, names: list[str] | None, where: dict[str, str]) -> None:
    """Applies an action by names (in chunks) or by filter; exits 1 if any bucket was refused."""
    if bool(names) == bool(where):
        _fail("name the buckets, or select them with --state/--mode/--prefix (not both)", 2)
    if names and len(names) == 1:
        _change("DELETE" if action == "remove" else "POST", _single_path(action, names[0]))
        return
    # A filter is resolved to names here, so any number of buckets is changed, 1,000 a call.
    selected = names or [bucket["name"] for bucket in _buckets(None, 1_000_000, where)[0]]
    if not selected:
        typer.echo(f"no buckets match {where}")
    outcomes: list[dict[str, Any]] = []
    for start in range(0, len(selected), BULK_CHUNK):
        body = {"action": action, "names": selected[start : start + BULK_CHUNK]}
        outcomes += call_api("POST", "/api/v1/buckets/bulk", timeout=120.0, json=body)["outcomes"]
    for outcome in outcomes:
        state = f" (state {outcome['state']})" if outcome.get("state") else ""
        why = f": {outcome['detail']}" if outcome.get("detail") else ""
        typer.echo(f"{outcome['name']}: {outcome['outcome']}{state}{why}")
    if any(outcome["outcome"] in ("not_found", "refused") for outcome in outcomes):
        raise typer.Exit(1)


def _single_path(action: str, name: str) -> str:
    return f"/api/v1/buckets/{name}" + ("" if action == "remove" else f"/{action}")


def _filter(state: str | None, mode: str | None, prefix: str | None) -> dict[str, str]:
    chosen = {"state": state, "mode": mode, "prefix": prefix}
    return {key: value for key, value in chosen.items() if value is not None}


@app.command("approve")
def approve_bucket(
    names: NamesArgument = None,
    state: StateOption = None,
    mode: ModeOption = None,
    prefix: PrefixOption = None,
    all_pending: Annotated[
        bool, typer.Option("--all-pending", help="Approve every bucket waiting for approval.")
    ] = False,
) -> None:
    """Approve pending (or re-enable disabled) buckets: they are polled from now on.

    By names (`rbr buckets approve a b c`) or by filter (`--state pending --prefix web-`;
    `--all-pending` is `--state pending`). Each bucket is approved on its own; exits 1 when
    any named bucket does not exist.
    """
    if all_pending:
        state = "pending"
    where = _filter(state, mode, prefix)
    if not names and where == {"state": "pending"} and not _buckets("pending", 1)[0]:
        typer.echo("no buckets in state pending")
        return
    _bulk("approve", names, where)


@app.command("disable")
def disable_bucket(
    names: NamesArgument = None,
    state: StateOption = None,
    mode: ModeOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Disable buckets (by names or filter): no longer polled nor pulled, cannot re-register."""
    _bulk("disable", names, _filter(state, mode, prefix))


@app.command("set-mode")
def set_delivery_mode(
    name: Annotated[str, typer.Argument(help="The bucket's name.")],
    mode: Annotated[str, typer.Argument(help="pull, agent or s3-drop.")],
) -> None:
    """Set how a bucket's logs reach the registry (an s3-drop bucket is never polled)."""
    if mode not in DELIVERY_MODES:
        _fail(f"the mode must be one of {', '.join(DELIVERY_MODES)}", 2)
    _change("PUT", f"/api/v1/buckets/{name}/delivery-mode", json={"mode": mode})


@app.command("set-source")
def set_s3_source(
    name: Annotated[str, typer.Argument(help="The bucket's name.")],
    location: Annotated[
        str | None,
        typer.Argument(help="s3://BUCKET/PREFIX/: the bucket's logs are under PREFIX/NAME/."),
    ] = None,
    region: Annotated[str, typer.Option(help="The S3 bucket's region.")] = "us-east-1",
    remove: Annotated[bool, typer.Option("--remove", help="Remove the S3 source.")] = False,
) -> None:
    """Set (or --remove) the S3 location a bucket writes its own logs to."""
    if remove:
        if location is not None:
            _fail("give either a location or --remove, not both", 2)
        _change("DELETE", f"/api/v1/buckets/{name}/s3-source")
        return
    if location is None or not location.startswith("s3://"):
        _fail("give the location as s3://BUCKET/PREFIX/ (or --remove)", 2)
    bucket_name, _, prefix = location.removeprefix("s3://").partition("/")
    body = {"bucket_name": bucket_name, "region": region, "prefix": prefix}
    _change("PUT", f"/api/v1/buckets/{name}/s3-source", json=body)


@app.command("remove")
def remove_bucket(
    names: NamesArgument = None,
    state: StateOption = None,
    mode: ModeOption = None,
    prefix: PrefixOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove buckets from the registry, by names or filter (they may register again, anew)."""
    where = _filter(state, mode, prefix)
    if not yes:
        what = ", ".join(names) if names else f"every bucket matching {where}"
        typer.confirm(f"remove {what}?", abort=True)
    _bulk("remove", names, where)


@app.command("merge")
def merge_bucket(
    name: Annotated[
        str, typer.Argument(help="The registration to fold in (e.g. a restart's new name).")
    ],
    into: Annotated[
        str, typer.Option("--into", help="The bucket that stays: keeps its name and history.")
    ],
) -> None:
    """Merge a registration into the bucket it replaces (a honeypot restarted under a new name).

    The bucket keeps its name, state and history and takes the registration's token, address
    and metrics; the registration's name becomes an alias of the bucket; the registration is
    removed. Running it again changes nothing.
    """
    result = call_api("POST", f"/api/v1/buckets/{name}/merge", json={"into": into})
    if result["status"] == "unchanged":
        typer.echo(f"{name} was already merged into {result['name']}: nothing to do")
        return
    taken = (
        "token and address taken"
        if result["identity_taken"]
        else "older than the registration it holds: only the name taken"
    )
    typer.echo(
        f"{name} merged into {result['name']} ({taken}; state {result['state']}, "
        f"version {result['version']})"
    )


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
        page = call_api("POST", "/api/v1/buckets/rekey", params=params)
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


RESEED_NAMES_SHOWN = 20


def reseed_topics(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only compare: print what would be published.")
    ] = False,
) -> None:
    """Publish bucket.registered again from the registry where the topic lost it.

    The registrar reads the topic to its end and compares it with the buckets table: buckets
    the topic lacks (or holds in an older version) are published again, names of removed
    buckets it still holds get a tombstone. Pollers and log-extractors then see the whole
    fleet again. The registrar also does this by itself at start, when the broker comes back
    and every RBR_RESEED_INTERVAL seconds; running it twice publishes nothing the second time.
    """
    path = "/api/v1/topics/bucket.registered/reseed"
    report = call_api("POST", path, timeout=120.0, params={"dry_run": dry_run})
    typer.echo(
        f"bucket.registered: {report['registered']} bucket(s) registered, "
        f"{report['on_topic']} on the topic"
        + (" (the topic did not exist)" if report["topic_missing"] else "")
    )
    for key, label in (
        ("missing", "missing from the topic"),
        ("stale", "older or other version on the topic"),
        ("removed", "removed but still on the topic"),
        ("waiting", "already waiting in the outbox"),
    ):
        names = report[key]
        if names:
            shown = ", ".join(names[:RESEED_NAMES_SHOWN])
            more = (
                f" and {len(names) - RESEED_NAMES_SHOWN} more"
                if len(names) > RESEED_NAMES_SHOWN
                else ""
            )
            typer.echo(f"  {len(names)} {label}: {shown}{more}")
    publish = len(report["missing"]) + len(report["stale"])
    if dry_run:
        typer.echo(
            f"would publish {publish} record(s) and {len(report['removed'])} tombstone(s) "
            "(dry run: nothing published)"
        )
    elif report["records_queued"] or report["tombstones_queued"]:
        typer.echo(
            f"published again: {report['records_queued']} record(s) and "
            f"{report['tombstones_queued']} tombstone(s) (queued in the outbox; the relay "
            "sends them within seconds)"
        )
    elif publish or report["removed"]:
        typer.echo("nothing queued: each of them changed meanwhile and is announced anyway")
    else:
        typer.echo("nothing to publish: the topic holds the registry")


# -- rbr sources -------------------------------------------------------------------------------


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


@sources_app.command("list")
def list_sources(
    unclaimed: Annotated[
        bool, typer.Option("--unclaimed", help="Only folders that feed no bucket.")
    ] = False,
    bucket: Annotated[str | None, typer.Option(help="Only the folders of this bucket.")] = None,
    limit: Annotated[int, typer.Option(help="Most folders to show.", min=1)] = 1000,
) -> None:
    """List the instance folders of the drop locations and the bucket each feeds."""
    rows: list[dict[str, Any]] = []
    after: int | None = None
    total = 0
    while len(rows) < limit:
        params: dict[str, Any] = {"limit": min(1000, limit - len(rows))}
        if unclaimed:
            params["unclaimed"] = True
        if bucket:
            params["bucket"] = bucket
        if after is not None:
            params["after"] = after
        page = call_api("GET", "/api/v1/sources", params=params)
        rows.extend(page["sources"])
        total, after = page["total"], page["next_after"]
        if after is None:
            break
    if not rows:
        typer.echo("no unclaimed drop folders" if unclaimed else "no drop folders")
        return
    lines = [("FOLDER", "BUCKET", "LINKED BY", "FILES", "SIZE", "LAST UPLOAD", "NAMES")]
    for source in rows:
        names = sorted(
            {str(s["registered_name"]) for s in source["starts"] if s["registered_name"]}
        )
        lines.append(
            (
                source["uri"],
                source["bucket"] or "(unclaimed)",
                source["linked_by"] or "-",
                str(source["objects"]),
                _size(source["size_bytes"]),
                _when(source["newest_upload_at"]),
                ", ".join(names) or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    if total > len(rows):
        typer.echo(f"({len(rows)} of {total} shown; use --limit)")


@sources_app.command("adopt")
def adopt_source(
    source: Annotated[str, typer.Argument(help="The folder's URI, as `rbr sources list` shows.")],
    bucket: Annotated[str, typer.Argument(help="The bucket it is to feed.")],
    move: Annotated[
        bool, typer.Option("--move", help="Link it even if it feeds another bucket now.")
    ] = False,
) -> None:
    """Link a drop folder to an existing bucket: its files become that bucket's logs."""
    result = call_api(
        "POST", "/api/v1/sources/adopt", json={"source": source, "bucket": bucket, "move": move}
    )
    typer.echo(f"{result['uri']}: feeds {result['bucket']}")


@sources_app.command("new-bucket")
def new_bucket_from_source(
    source: Annotated[str, typer.Argument(help="The folder's URI, as `rbr sources list` shows.")],
    name: Annotated[
        str | None, typer.Option(help="The new bucket's name (default: the folder's).")
    ] = None,
    ip_address: Annotated[
        str | None, typer.Option("--ip", help="The honeypot's address, if known.")
    ] = None,
) -> None:
    """Make a new active s3-drop bucket of an unclaimed drop folder."""
    body: dict[str, Any] = {"source": source}
    if name:
        body["name"] = name
    if ip_address:
        body["ip_address"] = ip_address
    result = call_api("POST", "/api/v1/sources/new-bucket", json=body)
    typer.echo(f"{result['bucket']['name']}: created (s3-drop), fed by {result['source']['uri']}")

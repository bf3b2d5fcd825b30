"""`rbr status`: is everything reachable, and how far behind is each consumer group?

The broker, database and S3 checks run at once, the lag of every group is counted as soon as
the broker answered (all groups at once), and all of it gives up after `--timeout` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from rbr_cli.output import settings_or_fail, table
from rbr_runtime.kafka.lag import PartitionLag, all_groups_lag
from rbr_runtime.kafka.probe import broker_metadata
from rbr_runtime.settings import CommonSettings
from rbr_schemas import TOPICS, all_topic_names

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The database's and S3's client libraries (SQLAlchemy, Alembic, boto3) take longest to import:
# their checks import them on their own threads, while the broker check and the lag count wait
# on the network.

Check = Callable[[CommonSettings, float], str]
Outcome = tuple[bool, str]
DEFAULT_TIMEOUT = 2.0
# Past the deadline, how long to wait for the clients to give up on their own timeouts.
MARGIN = 1.0


@dataclass
class _Lag:
    """The lag of every group, or why it was not counted (None: not asked or not yet done)."""

    partitions: list[PartitionLag] | None = None
    error: str | None = None


def _broker(settings: CommonSettings, timeout: float) -> str:
    metadata = broker_metadata(settings, timeout)
    missing = [name for name in all_topic_names() if name not in metadata.topics]
    if missing:
        raise RuntimeError(f"reachable, but topics missing: {', '.join(missing)}")
    return f"{len(metadata.brokers)} broker(s), all {len(all_topic_names())} topics present"


def _database(settings: CommonSettings, timeout: float) -> str:
    from rbr_runtime.db.engine import make_probe_engine  # noqa: PLC0415 - see the imports

    engine = make_probe_engine(settings.database_url, timeout)
    try:
        engine.connect().close()  # an unreachable database fails here, before Alembic loads
        return _schema_state(engine)
    finally:
        engine.dispose()


def _schema_state(engine: Engine) -> str:
    from rbr_runtime.db.migrate import current_revision, head_revision  # noqa: PLC0415

    revision = current_revision(engine)
    if revision != head_revision():
        raise RuntimeError(f"reachable, schema at {revision}, code expects {head_revision()}")
    return f"schema at {revision}"


def _s3(settings: CommonSettings, timeout: float) -> str:
    from rbr_runtime.s3 import make_s3_client  # noqa: PLC0415 - see the imports

    make_s3_client(settings, timeout=timeout).head_bucket(Bucket=settings.s3_bucket)
    return f"bucket {settings.s3_bucket} reachable"


def _run_check(check: Check, settings: CommonSettings, timeout: float) -> Outcome:
    try:
        return True, check(settings, timeout)
    except Exception as error:  # noqa: BLE001 - any failure is the status to report
        return False, _cause(error)


def _cause(error: Exception) -> str:
    """Returns `describe_error`'s line, without importing rbr_runtime.errors (SQLAlchemy, boto)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def _count_lag(settings: CommonSettings, deadline: float, into: _Lag) -> None:
    topics = [spec.name for spec in TOPICS]
    try:
        into.partitions = all_groups_lag(settings, topics, max(0.1, deadline - time.monotonic()))
    except Exception as error:  # noqa: BLE001 - reported under the components' table
        into.error = _cause(error)


def _check_all(
    settings: CommonSettings, checks: Sequence[Check], timeout: float, lag: _Lag | None
) -> list[Outcome]:
    """Runs the checks at once, and the lag count once the broker (the first) answered.

    Every client call is bounded by the time left; a check still running at the deadline
    (plus a margin) has failed, and is left behind on its daemon thread.
    """
    deadline = time.monotonic() + timeout
    outcomes: list[Outcome | None] = [None] * len(checks)

    def run(index: int) -> None:
        outcomes[index] = _run_check(checks[index], settings, timeout)
        if index == 0 and lag is not None and outcomes[0] and outcomes[0][0]:
            _count_lag(settings, deadline, lag)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(checks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + MARGIN - time.monotonic()))
    late = (False, f"no answer within {timeout:g}s (--timeout to wait longer)")
    return [outcome or late for outcome in outcomes]


def status(
    lag: Annotated[bool, typer.Option(help="Count the consumer lag of every group.")] = True,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds to wait for the components and the lag, in all."),
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Show broker, database and S3 reachability and the consumer lag of every group."""
    settings = settings_or_fail(CommonSettings)
    counted = _Lag() if lag else None
    outcomes = _check_all(settings, [_broker, _database, _s3], timeout, counted)
    components = [
        ("broker", settings.kafka_bootstrap),
        ("database", _redacted(settings.database_url)),
        ("s3", settings.s3_endpoint_url or "AWS"),
    ]
    rows = [
        (name, "ok" if ok else "FAIL", where, detail)
        for (name, where), (ok, detail) in zip(components, outcomes, strict=True)
    ]
    table(["component", "state", "where", "detail"], rows)
    if counted is not None and outcomes[0][0]:
        _print_lag(counted, timeout)
    raise typer.Exit(0 if all(ok for ok, _ in outcomes) else 1)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the imports

    return make_url(url).render_as_string(hide_password=True)


def _print_lag(counted: _Lag, timeout: float) -> None:
    typer.echo("")
    if counted.partitions is None:
        typer.echo(f"lag not counted: {counted.error or f'no answer within {timeout:g}s'}")
        return
    table(["consumer group", "topic", "lag (messages)"], _lag_rows(counted.partitions))
    if any(partition.capped for partition in counted.partitions):
        typer.echo(f"+: at least (a partition's end was not known within {timeout:g}s)")


def _lag_rows(lags: list[PartitionLag]) -> list[tuple[str, str, str]]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for partition in lags:
        total = totals[(partition.group, partition.topic)]
        total[0] += partition.lag
        total[1] += int(partition.capped)
    rows = [
        (group, topic, f"{behind}{'+' if capped else ''}")
        for (group, topic), (behind, capped) in sorted(totals.items())
    ]
    return rows or [("(none)", "", "")]

"""`rbr status`: is everything reachable, and how far behind is each consumer group?"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Annotated

import typer
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url

from rbr_cli.output import settings_or_fail, table
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import current_revision, head_revision
from rbr_runtime.kafka.config import admin_config
from rbr_runtime.kafka.lag import consumer_groups, group_lag
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.settings import CommonSettings
from rbr_schemas import TOPICS, all_topic_names

Check = Callable[[CommonSettings], str]


def _broker(settings: CommonSettings) -> str:
    metadata = AdminClient(admin_config(settings)).list_topics(timeout=10)
    missing = [name for name in all_topic_names() if name not in metadata.topics]
    if missing:
        raise RuntimeError(f"reachable, but topics missing: {', '.join(missing)}")
    return f"{len(metadata.brokers)} broker(s), all {len(all_topic_names())} topics present"


def _database(settings: CommonSettings) -> str:
    engine = make_engine(settings.database_url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision != head_revision():
        raise RuntimeError(f"reachable, schema at {revision}, code expects {head_revision()}")
    return f"schema at {revision}"


def _s3(settings: CommonSettings) -> str:
    make_s3_client(settings).head_bucket(Bucket=settings.s3_bucket)
    return f"bucket {settings.s3_bucket} reachable"


def _run_check(check: Check, settings: CommonSettings) -> tuple[bool, str]:
    try:
        return True, check(settings)
    except Exception as error:  # noqa: BLE001 - any failure is the status to report
        return False, f"{type(error).__name__}: {str(error)[:200]}"


def status(
    lag: Annotated[
        bool, typer.Option(help="Count consumer lag per group (reads the backlog).")
    ] = True,
) -> None:
    """Show broker, database and S3 reachability and the consumer lag of every group."""
    settings = settings_or_fail(CommonSettings)
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    checks: list[tuple[str, str, Check]] = [
        ("broker", settings.kafka_bootstrap, _broker),
        ("database", database, _database),
        ("s3", settings.s3_endpoint_url or "AWS", _s3),
    ]
    rows, healthy = [], True
    for name, where, check in checks:
        ok, detail = _run_check(check, settings)
        healthy &= ok
        rows.append((name, "ok" if ok else "FAIL", where, detail))
    table(["component", "state", "where", "detail"], rows)
    if lag and rows[0][1] == "ok":
        _print_lag(settings)
    raise typer.Exit(0 if healthy else 1)


def _print_lag(settings: CommonSettings) -> None:
    typer.echo("")
    topics = [spec.name for spec in TOPICS]
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for group in consumer_groups(settings):
        for partition in group_lag(settings, group, topics):
            total = totals[(group, partition.topic)]
            total[0] += partition.lag
            total[1] += int(partition.capped)
    rows = [
        (group, topic, f"{behind}{'+' if capped else ''}")
        for (group, topic), (behind, capped) in sorted(totals.items())
    ]
    table(["consumer group", "topic", "lag (messages)"], rows or [("(none)", "", "")])

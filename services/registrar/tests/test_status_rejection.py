"""A bucket.status whose key is not its bucket: rejected alone, the rest of its batch applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import Engine, select

from rbr_registrar.handlers import apply_statuses
from rbr_runtime.db.tables import buckets
from rbr_runtime.kafka import EventProducer, Inbound
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_STATUS, BucketStatus, DeadLetterHeaders, PollErrorClass
from rbr_testing.broker import Broker
from rbr_testing.kafka import committed_offsets, read_topic
from rbr_testing.registry import RegistrarFactory
from rbr_testing.waiting import wait_for

NAME = "rustbucket-k3yed000"
OTHER = "rustbucket-0ther000"
BASE = datetime.now(UTC).replace(microsecond=0)
_offsets = count()


def status(bucket_id: str, seconds: int, *, reachable: bool = True, name: str = NAME) -> Any:
    return BucketStatus(
        bucket_id=bucket_id,
        name=name,
        polled_at=BASE + timedelta(seconds=seconds),
        reachable=reachable,
        latency_ms=12.5 if reachable else None,
        error_class=None if reachable else PollErrorClass.TIMEOUT,
    )


def inbound(key: str, data: BucketStatus) -> Inbound[Any]:
    """Returns the message the consumer runner would hand the handler."""
    event = make_event(BUCKET_STATUS, data, source="/rbr/poller", subject=data.name)
    return Inbound(
        topic=BUCKET_STATUS.name,
        partition=0,
        offset=next(_offsets),
        key=key.encode(),
        value=encode(event),
        event=event,
    )


def register(registrar: Any, name: str) -> str:
    body = {
        "name": name,
        "ip_address": "127.0.0.1",
        "operating_system": "linux (x86_64)",
        "token": "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    }
    with registrar.client() as client:
        answer = client.post("/register_bucket", json=body)
    assert answer.status_code == 200, answer.text
    bucket_id: str = answer.json()["id"]
    return bucket_id


def last_status(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        row = connection.execute(select(buckets).where(buckets.c.name == NAME)).one()
    return (row.last_seen, row.last_status_at, row.last_reachable)


def test_the_handler_names_the_misaddressed_status_and_applies_the_others(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()
    bucket_id = register(registrar, NAME)
    batch = [
        inbound(NAME, status(bucket_id, 10)),
        inbound(NAME, status(bucket_id, 30, name=OTHER)),  # keyed by the wrong bucket
        inbound(NAME, status(bucket_id, 20, reachable=False)),
    ]

    rejections = apply_statuses(registrar.registrar.repository, batch)

    assert [r.message for r in rejections] == [batch[1]]
    assert "the key must be the bucket's name" in rejections[0].reason
    assert rejections[0].counts_toward_cap
    # Both good statuses are in, from this one call: nothing is left to run again.
    assert last_status(mysql_engine) == (
        BASE + timedelta(seconds=10),
        BASE + timedelta(seconds=20),
        False,
    )


def test_a_misaddressed_status_goes_to_the_dlq_and_its_neighbours_are_applied(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()
    bucket_id = register(registrar, NAME)
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/t")

    producer.send(BUCKET_STATUS, NAME, status(bucket_id, 10))
    producer.send(BUCKET_STATUS, NAME, status(bucket_id, 30, name=OTHER))
    producer.send(BUCKET_STATUS, NAME, status(bucket_id, 20, reachable=False))
    wait_for(
        lambda: (
            sum(committed_offsets(broker.bootstrap, "registrar", BUCKET_STATUS.name).values()) == 3
        ),
        message="the three statuses committed",
    )

    (dead,) = read_topic(broker.bootstrap, BUCKET_STATUS.dlq, at_least=1)
    headers = DeadLetterHeaders.from_kafka(dead.headers() or [])
    assert (headers.error_class, headers.source_offset) == ("rejected", 1)
    assert f"describes bucket {OTHER!r}" in headers.error
    assert last_status(mysql_engine) == (
        BASE + timedelta(seconds=10),
        BASE + timedelta(seconds=20),
        False,
    )

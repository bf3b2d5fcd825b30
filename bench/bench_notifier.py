"""Notifier throughput: deliveries per second to a local webhook receiver.

* the delivery function alone (`deliver` with the webhook sender, signed bodies, one and
  eight threads), against a loopback HTTP receiver in a process of its own;
* the alerts handler alone (record, plan, claim, send, record the tries) on batches of 200
  alerts, no broker: CPU time per delivery of the process, and of each stage on its thread;
* end to end: alerts produced to `alerts` on the embedded broker, consumed by the notifier
  service, recorded in the database (MariaDB when reachable, else SQLite), planned and
  delivered, until the receiver has them all. Group join and start-up are not timed. The
  receiver counts distinct delivery ids: a notification sent twice fails the run.

    uv run python -m bench notifier [--quick]
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.figures import Figure
from bench.webhook_receiver import ReceiverProcess
from rbr_notifier.channels import ChannelsFile, parse_channels
from rbr_notifier.delivery import RetryPolicy, deliver
from rbr_notifier.dispatch import Dispatcher
from rbr_notifier.handlers import AlertHandler
from rbr_notifier.main import build_senders, build_service
from rbr_notifier.model import AlertState, AlertView, Kind, Notification
from rbr_notifier.senders import build_sender
from rbr_notifier.senders.base import AttemptResult
from rbr_notifier.senders.webhook import WebhookSender
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.alerts import AlertStore
from rbr_notifier.store.deliveries import DeliveryStore
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.kafka.consumer import Inbound
from rbr_schemas import ALERTS, Alert, Severity
from rbr_testing.broker import Broker
from rbr_testing.mariadb import create_database, drop_database, mysql_url
from rbr_testing.services import running

SECRET = "bench-webhook-secret"
GOAL_E2E = 2000.0
BATCH = 200
STAGES = [
    ("record", AlertStore, "record_events"),
    ("contexts", DeliveryStore, "contexts"),
    ("claim", DeliveryStore, "claim_many"),
    ("send", WebhookSender, "send"),
    ("record sent", DeliveryStore, "record_sent"),
]
"""The handler's stages timed on their threads' CPU clocks."""


def _channels(receiver: ReceiverProcess) -> ChannelsFile:
    return parse_channels(
        {
            "channels": [
                {
                    "name": "bench",
                    "type": "webhook",
                    "url": f"{receiver.url}/hook",
                    "secret": SECRET,
                    "throttle": False,
                }
            ]
        }
    )


def _notification(i: int) -> Notification:
    alert = AlertView(
        alert_id=str(uuid.uuid4()),
        dedupe_key=f"analysis:bench-{i}:finding",
        type="analysis_finding",
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        title=f"Successful login on bench-{i}",
        detail="root logged in from 203.0.113.7 and downloaded a binary",
        source="/rbr/analyst",
        fired_at=datetime.now(UTC),
        bucket=f"bench-{i}",
    )
    return Notification(Kind.TRIGGER, "bench", alert=alert)


def _delivery_function(receiver: ReceiverProcess, count: int, threads: int) -> float:
    sender = build_sender(_channels(receiver).channels[0], default_timeout=10.0)
    policy = RetryPolicy(max_attempts=1)
    stop = threading.Event()
    notifications = [_notification(i) for i in range(count)]
    sent: list[int] = []

    def record(attempt: int, status: str, result: AttemptResult) -> None:
        if status == "sent":
            sent.append(attempt)

    def one(notification: Notification) -> None:
        deliver(sender, notification, policy, record, stop=stop)

    receiver.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, notifications))
    elapsed = time.perf_counter() - started
    sender.close()
    if len(sent) != count:
        raise RuntimeError(f"only {len(sent)} of {count} deliveries succeeded")
    return count / elapsed


@contextmanager
def _database() -> Iterator[tuple[str, str]]:
    """Yields (url, label): a fresh MariaDB database if the server answers, else SQLite."""
    try:
        name = create_database()
    except BaseException:  # noqa: BLE001 - pytest.fail raises Failed (a BaseException)
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            upgrade(url)
            yield url, "SQLite"
        return
    try:
        url = mysql_url(name)
        upgrade(url)
        yield url, "MariaDB"
    finally:
        drop_database(name)


def _alert(i: int) -> Alert:
    return Alert(
        alert_id=str(uuid.uuid4()),
        dedupe_key=f"analysis:bench-{i}:finding",
        type="analysis_finding",
        severity="high",
        state="firing",
        bucket=f"bench-{i % 500}",
        title=f"Successful login on bench-{i % 500}",
        detail="root logged in from 203.0.113.7 and downloaded a binary",
        source="/rbr/analyst",
        occurred_at=datetime.now(UTC),
    )


def _end_to_end(receiver: ReceiverProcess, count: int) -> tuple[float, float, str]:
    """Returns deliveries per second, CPU seconds per delivery of this process, and the database.

    The CPU time is the whole process's over the timed part: the notifier's threads, the
    broker client's, and the bench's producer (a small share: it sends one batch).
    """
    broker = Broker()
    broker.start()
    try:
        with _database() as (url, label):
            settings = NotifierSettings(
                kafka_bootstrap=broker.bootstrap,
                kafka_session_timeout_ms=2000,
                database_url=url,
                http_port=0,
                consumer_batch_wait=0.05,
                notifier_throttle_max=0,
                log_level="WARNING",
            )
            service = build_service(settings, channels=_channels(receiver))
            producer = EventProducer(settings, source="/rbr/bench")
            receiver.clear()
            with running(service):
                keyed = [
                    (a.dedupe_key, producer.event(ALERTS, a)) for a in map(_alert, range(count))
                ]
                cpu_before = _cpu_seconds()
                started = time.perf_counter()
                producer.send_events(ALERTS, keyed)
                receiver.wait_for_requests(count, timeout=600)
                elapsed = time.perf_counter() - started
                cpu = _cpu_seconds() - cpu_before
            producer.flush()
            if receiver.requests != receiver.distinct:
                raise RuntimeError(
                    f"{receiver.requests - receiver.distinct} notification(s) sent twice"
                )
            return count / elapsed, cpu / count, label
    finally:
        broker.stop()


def _inbound(offset: int, alert: Alert) -> Inbound[Alert]:
    event = make_event(ALERTS, alert, source="/rbr/analyst", subject=alert.bucket)
    return Inbound(
        topic=ALERTS,
        partition=0,
        offset=offset,
        key=alert.dedupe_key.encode(),
        value=encode(event),
        headers=[],
        event=event,
    )


@contextmanager
def _stage_clocks() -> Iterator[dict[str, float]]:
    """Adds up the thread CPU time spent in each stage while inside."""
    spent = dict.fromkeys((name for name, _, _ in STAGES), 0.0)
    originals = [(owner, attribute, getattr(owner, attribute)) for _, owner, attribute in STAGES]

    def timed(name: str, function: Callable[..., object]) -> Callable[..., object]:
        @functools.wraps(function)
        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - started

        return wrapper

    for (name, owner, attribute), (_, _, function) in zip(STAGES, originals, strict=True):
        setattr(owner, attribute, timed(name, function))
    try:
        yield spent
    finally:
        for owner, attribute, function in originals:
            setattr(owner, attribute, function)


def _handler_alone(receiver: ReceiverProcess, count: int) -> tuple[float, dict[str, float]]:
    """Returns the process's CPU seconds per delivery, and each stage's, of the handler alone.

    Batches of `BATCH` new alerts (as the consumer runner hands them, events decoded) go
    through the alerts handler on MariaDB, one channel (the signed webhook).
    """
    with _database() as (url, _):
        settings = NotifierSettings(
            kafka_bootstrap="127.0.0.1:9", database_url=url, http_port=0, log_level="WARNING"
        )
        channels = _channels(receiver)
        engine = make_engine(url, pool_size=settings.notifier_concurrency + 4)
        speed_up_datetimes(engine)
        store = NotifierStore(engine)
        senders = build_senders(channels, settings)
        with ThreadPoolExecutor(settings.notifier_concurrency) as pool:
            dispatcher = Dispatcher(store, channels, senders, settings, pool)
            handler = AlertHandler(store, dispatcher, channels, reopen_after=86400)
            handler([_inbound(i, _alert(10**6 + i)) for i in range(BATCH)])  # warm up
            messages = [_inbound(i, _alert(i)) for i in range(count)]
            receiver.clear()
            with _stage_clocks() as spent:
                cpu_before = _cpu_seconds()
                for start in range(0, count, BATCH):
                    if handler(messages[start : start + BATCH]):
                        raise RuntimeError("the handler rejected an alert")
                cpu = _cpu_seconds() - cpu_before
        for sender in senders.values():
            sender.close()
        engine.dispose()
    if receiver.requests != count:
        raise RuntimeError(f"the receiver got {receiver.requests} of {count} deliveries")
    return cpu / count, {name: seconds / count for name, seconds in spent.items()}


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def run(quick: bool) -> list[Figure]:
    """Measures the delivery function alone and the whole service."""
    calls = 300 if quick else 3000
    alerts = 200 if quick else 2000
    receiver = ReceiverProcess().start()
    try:
        single = _delivery_function(receiver, calls, threads=1)
        parallel = _delivery_function(receiver, calls, threads=8)
        handler_cpu, stages = _handler_alone(receiver, 600 if quick else 3000)
        e2e, cpu, database = _end_to_end(receiver, alerts)
    finally:
        receiver.stop()
    return [
        Figure("notifier: delivery function, 1 thread (signed webhook)", single, "deliveries/s"),
        Figure("notifier: delivery function, 8 threads (signed webhook)", parallel, "deliveries/s"),
        Figure(
            "notifier: handler alone, CPU time per delivery (batches of 200, no broker)",
            handler_cpu * 1e6,
            "us",
            note=", ".join(f"{name} {seconds * 1e6:.0f}" for name, seconds in stages.items())
            + " (thread CPU, us)",
        ),
        Figure(
            f"notifier: end to end, alerts topic -> webhook ({database})",
            e2e,
            "deliveries/s",
            goal=f">= {GOAL_E2E:,.0f}/s",
            met=e2e >= GOAL_E2E,
            note=f"{alerts} alerts, concurrency 8, every attempt recorded, none sent twice",
        ),
        Figure(
            "notifier: end to end, CPU time per delivery (the whole process)",
            cpu * 1e6,
            "us",
            note=f"user + system over the timed part; load average {os.getloadavg()[0]:.1f}",
        ),
        Figure(
            "notifier: end to end / delivery function at 8 threads (same run)",
            e2e / parallel,
            "ratio",
            note="what recording, claiming and the broker cost on top of the sends",
        ),
    ]

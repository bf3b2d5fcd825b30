"""The buckets this replica owns: a view of `bucket.registered` built per assigned partition.

Poller and log-extractor replicas join one consumer group on `bucket.registered`. Each replica
reads its assigned partitions from the beginning (the topic is compacted, so that is the
current registration of every bucket in them) and keeps the latest record per bucket. On a
rebalance the revoked partitions' buckets are dropped and the newly assigned ones are read;
so with N replicas every bucket belongs to exactly one of them.

The directory never commits offsets: its position is always "from the beginning".

`read_registry` reads the whole topic once, every partition to its end, without joining a
group: for tasks run by hand and for the registrar's check that the topic still holds the
registry (`rbr topics reseed`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from rbr_runtime.kafka.codec import UndecodableMessage, decode
from rbr_runtime.kafka.config import consumer_config
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered, BucketState

log = logging.getLogger(__name__)

INVALID_RECORDS = Counter(
    "rbr_directory_invalid_records_total",
    "bucket.registered records that are not valid events (skipped).",
    ["group"],
)
OWNED_BUCKETS = Gauge("rbr_owned_buckets", "Buckets this replica owns.", ["group", "state"])


def _is_older(record: BucketRegistered, current: BucketRegistered) -> bool:
    """Tells whether a record is an older version of the same registration."""
    return record.bucket_id == current.bucket_id and record.version < current.version


class BucketDirectory:
    """Keeps the registration of every bucket in the partitions this replica is assigned."""

    def __init__(
        self,
        settings: CommonSettings,
        group_id: str,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Prepares the directory; run() consumes.

        Args:
            settings: the service settings.
            group_id: the consumer group its replicas share (the service's name).
            on_change: called after the directory reached the end of a partition or lost
                partitions, i.e. when the set of owned buckets may have changed.
        """
        self.group_id = group_id
        self._settings = settings
        self._on_change = on_change
        self._lock = threading.Lock()
        self._records: dict[str, tuple[int, BucketRegistered]] = {}
        self._assigned: set[int] = set()
        self._not_caught_up: set[int] = set()
        self._stop = threading.Event()
        self.joined = threading.Event()
        self.generation = 0

    # -- what callers read ---------------------------------------------------------------------

    def buckets(self, state: BucketState | None = BucketState.ACTIVE) -> list[BucketRegistered]:
        """Returns the owned buckets (active ones by default; all with state=None)."""
        with self._lock:
            records = [record for _, record in self._records.values()]
        return sorted(
            (r for r in records if state is None or r.state == state), key=lambda r: r.name
        )

    def get(self, name: str) -> BucketRegistered | None:
        """Returns an owned bucket's registration, or None if it is not owned here."""
        with self._lock:
            entry = self._records.get(name)
        return entry[1] if entry else None

    @property
    def caught_up(self) -> bool:
        """Tells whether every assigned partition was read to its end since assignment."""
        with self._lock:
            return self.joined.is_set() and not self._not_caught_up

    @property
    def assigned_partitions(self) -> set[int]:
        """Returns the partitions of bucket.registered this replica owns."""
        with self._lock:
            return set(self._assigned)

    def readiness(self) -> str | None:
        """Readiness check: None once joined and caught up."""
        if not self.joined.is_set():
            return "waiting for partition assignment"
        if not self.caught_up:
            return "reading bucket.registered"
        return None

    # -- the component -------------------------------------------------------------------------

    def run(self) -> None:
        """Consumes bucket.registered until stop()."""
        consumer = Consumer(consumer_config(self._settings, self.group_id))
        consumer.subscribe(
            [BUCKET_REGISTERED.name],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stop.is_set():
                for message in consumer.consume(500, 0.5):
                    self._apply(message)
        finally:
            consumer.close()

    def stop(self) -> None:
        """Stops consuming."""
        self._stop.set()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            partition.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        with self._lock:
            numbers = {p.partition for p in partitions}
            self._assigned |= numbers
            self._not_caught_up |= numbers
            self.generation += 1
        self.joined.set()
        log.info("owning partitions %s of bucket.registered", sorted(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {p.partition for p in partitions}
        with self._lock:
            self._assigned -= numbers
            self._not_caught_up -= numbers
            self._records = {
                name: entry for name, entry in self._records.items() if entry[0] not in numbers
            }
            self.generation += 1
        log.info("released partitions %s of bucket.registered", sorted(numbers))
        self._changed()

    def _apply(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            self._on_client_event(message, error)
            return
        key = message.key()
        if key is None:
            INVALID_RECORDS.labels(self.group_id).inc()
            return
        name = key.decode("utf-8", "replace")
        value = message.value()
        if value is None:
            self._remove(name)
            return
        try:
            record: BucketRegistered = decode(BUCKET_REGISTERED, value).data
        except UndecodableMessage as invalid:
            INVALID_RECORDS.labels(self.group_id).inc()
            log.error("skipping invalid bucket.registered record: %s", invalid)
            return
        partition = message.partition()
        with self._lock:
            if partition is None or partition not in self._assigned:
                return
            current = self._records.get(name)
            if current is not None and _is_older(record, current[1]):
                # A relay that lost its lock mid-pass may re-send an older version late.
                return
            self._records[name] = (partition, record)

    def _remove(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)

    def _on_client_event(self, message: Message, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            with self._lock:
                self._not_caught_up.discard(message.partition() or 0)
            self._changed()
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("bucket directory consumer: %s", error.str())

    def _changed(self) -> None:
        with self._lock:
            states = [record.state for _, record in self._records.values()]
        for state in BucketState:
            OWNED_BUCKETS.labels(self.group_id, state.value).set(states.count(state))
        if self._on_change is not None:
            self._on_change()


class TopicMissing(LookupError):
    """The topic does not exist on the broker (lost, deleted, or never created)."""


def read_registry(
    settings: CommonSettings, timeout: float = 60.0
) -> dict[str, BucketRegistered | None]:
    """Returns the last record of every bucket on `bucket.registered`, by name.

    Every partition is read from its beginning to its end (the end as fetching finds it, not
    as ListOffsets reports it), without joining a consumer group. This is what a compacted
    topic keeps: a tombstoned name is left out; a name whose last record is not a valid event
    maps to None.

    Raises:
        TopicMissing: the topic does not exist.
        TimeoutError: the topic could not be read to its end in time (broker down?).
        KafkaException: the client failed fatally.
    """
    topic = BUCKET_REGISTERED.name
    config = consumer_config(settings, f"{settings.service_name}-reader-{uuid.uuid4().hex[:8]}")
    # A one-off read to the end: do not let the broker hold each empty fetch for 500 ms.
    consumer = Consumer({**config, "fetch.wait.max.ms": 20})
    latest: dict[str, BucketRegistered | None] = {}
    try:
        partitions = _partitions(consumer, topic, timeout)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end in {timeout:.0f}s")
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is None:
                    at_end.discard(message.partition() or 0)
                    _keep_latest(latest, message.key(), message.value())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                elif error.fatal():
                    raise KafkaException(error)
    finally:
        consumer.close()
    return latest


def read_registrations(settings: CommonSettings, timeout: float = 60.0) -> list[BucketRegistered]:
    """Returns the current registration of every bucket, by name (removed ones left out).

    Raises:
        TopicMissing, TimeoutError, KafkaException: as `read_registry`.
    """
    records = read_registry(settings, timeout)
    return sorted((r for r in records.values() if r is not None), key=lambda r: r.name)


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    # Every topic, not this one by name: asking for one by name can auto-create it.
    metadata = consumer.list_topics(timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise TopicMissing(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def _keep_latest(
    latest: dict[str, BucketRegistered | None], key: bytes | str | None, value: bytes | str | None
) -> None:
    if key is None:
        return
    name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if value is None:
        latest.pop(name, None)
        return
    try:
        record: BucketRegistered = decode(
            BUCKET_REGISTERED, value if isinstance(value, bytes) else value.encode()
        ).data
    except UndecodableMessage:
        latest[name] = None
        return
    latest[name] = record

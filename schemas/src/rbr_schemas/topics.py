"""The topic catalogue: every topic, its key, its data and who produces and consumes it.

The runtime creates topics from this catalogue and the AsyncAPI document is generated from it,
so this is the one place a topic is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from rbr_schemas.dlq import dlq_topic
from rbr_schemas.events import (
    Alert,
    BucketRegistered,
    BucketStatus,
    DropFolderSeen,
    IocRecord,
    LogsExtracted,
    LogsParsed,
)

DAY_MS = 24 * 60 * 60 * 1000
EVENT_TYPE_PREFIX = "io.rustbucket."


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract."""

    name: str
    data_model: type[BaseModel]
    event_type: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    tombstones: bool = False

    @property
    def dlq(self) -> str:
        """Returns the name of this topic's dead-letter topic."""
        return dlq_topic(self.name)


BUCKET_REGISTERED = TopicSpec(
    name="bucket.registered",
    data_model=BucketRegistered,
    event_type=f"{EVENT_TYPE_PREFIX}bucket.registered.v1",
    key="bucket name",
    producers=("registrar",),
    consumers=("poller", "log-extractor"),
    description=(
        "The registration record of every bucket, republished on every change; a tombstone "
        "(null value) when a bucket is removed. Compacted: the latest value per bucket is the "
        "bucket's current registration. Poller and log-extractor replicas split the fleet by "
        "the partitions of this topic their consumer group assigns them."
    ),
    partitions=12,
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    tombstones=True,
)
BUCKET_STATUS = TopicSpec(
    name="bucket.status",
    data_model=BucketStatus,
    event_type=f"{EVENT_TYPE_PREFIX}bucket.status.v1",
    key="bucket name",
    producers=("poller",),
    consumers=("registrar",),
    description="One status snapshot per bucket per poll, reachable or not.",
    partitions=12,
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
)
LOGS_EXTRACTED = TopicSpec(
    name="logs.extracted",
    data_model=LogsExtracted,
    event_type=f"{EVENT_TYPE_PREFIX}logs.extracted.v1",
    key="bucket name",
    producers=("log-extractor",),
    consumers=("parser",),
    description="A pointer to one raw log object, published only once the object is stored.",
    partitions=12,
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
)
LOGS_PARSED = TopicSpec(
    name="logs.parsed",
    data_model=LogsParsed,
    event_type=f"{EVENT_TYPE_PREFIX}logs.parsed.v1",
    key="bucket name",
    producers=("parser",),
    consumers=("analyst",),
    description="What one raw object became in the `logs` table.",
    partitions=12,
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
)
DROP_DISCOVERED = TopicSpec(
    name="drop.discovered",
    data_model=DropFolderSeen,
    event_type=f"{EVENT_TYPE_PREFIX}drop.discovered.v1",
    key="folder URI (s3://BUCKET/PREFIX/FOLDER/)",
    producers=("log-extractor",),
    consumers=("registrar",),
    description=(
        "What the log-extractor found in an instance folder of an S3 drop location: new or "
        "changed folders, and every scan's unlinked ones. The registrar records them as "
        "sources and links them to buckets."
    ),
    partitions=12,
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
)
ALERTS = TopicSpec(
    name="alerts",
    data_model=Alert,
    event_type=f"{EVENT_TYPE_PREFIX}alert.v1",
    key="dedupe key",
    producers=("poller", "analyst", "any service"),
    consumers=("notifier", "external subscribers"),
    description=(
        "Alerts, firing and resolved. Keyed by dedupe key so that the firing and resolving "
        "events of one condition stay in order. External systems subscribe with their own "
        "consumer group."
    ),
    partitions=6,
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)

IOCS = TopicSpec(
    name="iocs",
    data_model=IocRecord,
    event_type=f"{EVENT_TYPE_PREFIX}ioc.v1",
    key="indicator (type:value)",
    producers=("analyst",),
    consumers=("external subscribers",),
    description=(
        "Indicators of compromise: one event each time an analysis sights an indicator, with "
        "its fleet-wide counts, ATT&CK techniques, enrichment and confidence. Keyed by "
        "`type:value`, so one indicator's events stay in order and the latest is its state."
    ),
    partitions=6,
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)

TOPICS: tuple[TopicSpec, ...] = (
    BUCKET_REGISTERED,
    BUCKET_STATUS,
    LOGS_EXTRACTED,
    LOGS_PARSED,
    DROP_DISCOVERED,
    ALERTS,
    IOCS,
)
DLQ_PARTITIONS = 3
DLQ_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}


def topic(name: str) -> TopicSpec:
    """Returns the spec of a topic by name.

    Raises:
        KeyError: no such topic in the contract.
    """
    for spec in TOPICS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in TOPICS)
    raise KeyError(f"unknown topic {name!r}; known topics: {known}")


def all_topic_names() -> list[str]:
    """Returns every topic name, each source topic followed by its dead-letter topic."""
    return [name for spec in TOPICS for name in (spec.name, spec.dlq)]

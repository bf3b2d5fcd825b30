"""Creating every topic of the contract with its partition count and configuration."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rbr_runtime.kafka.config import admin_config
from rbr_runtime.settings import CommonSettings
from rbr_schemas.topics import DLQ_CONFIG, DLQ_PARTITIONS, TOPICS

log = logging.getLogger(__name__)


class TopicOutcome(StrEnum):
    """What ensure_topics did about one topic."""

    CREATED = "created"
    EXISTS = "exists"
    MISMATCH = "exists with a different partition count"


@dataclass(frozen=True)
class TopicPlan:
    """A topic to create: name, partitions and configuration."""

    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicReport:
    """The outcome for one topic."""

    name: str
    outcome: TopicOutcome
    partitions: int
    wanted_partitions: int


def planned_topics(partitions_override: int | None = None) -> list[TopicPlan]:
    """Returns every topic and dead-letter topic of the contract.

    Args:
        partitions_override: use this partition count for every source topic instead of the
            catalogue's (tests use fewer partitions to keep group joins quick).
    """
    plans = []
    for spec in TOPICS:
        plans.append(TopicPlan(spec.name, partitions_override or spec.partitions, spec.config))
        plans.append(TopicPlan(spec.dlq, DLQ_PARTITIONS, DLQ_CONFIG))
    return plans


def ensure_topics(
    settings: CommonSettings,
    partitions_override: int | None = None,
    timeout: float = 30.0,
    only: Collection[str] | None = None,
) -> list[TopicReport]:
    """Creates the topics that do not exist yet; safe to run any number of times.

    Args:
        settings: where the broker is.
        partitions_override: as for `planned_topics`.
        timeout: seconds for each admin request.
        only: the names of the topics to look at (default: every topic of the contract).

    Raises:
        KafkaException: the broker could not be reached or refused a creation.
    """
    admin = AdminClient(admin_config(settings))
    plans = [p for p in planned_topics(partitions_override) if only is None or p.name in only]
    existing = admin.list_topics(timeout=timeout).topics
    missing = [plan for plan in plans if plan.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(p.name, num_partitions=p.partitions, config=p.config) for p in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            _wait_created(name, future)
        existing = admin.list_topics(timeout=timeout).topics
    reports = [_report(plan, existing, created={p.name for p in missing}) for plan in plans]
    for report in reports:
        if report.outcome is TopicOutcome.MISMATCH:
            log.warning(
                "topic %s has %d partitions, the contract says %d; partitions cannot be "
                "reduced, and increasing them moves keys to other partitions",
                report.name,
                report.partitions,
                report.wanted_partitions,
            )
    return reports


def _wait_created(name: str, future: object) -> None:
    try:
        future.result()  # type: ignore[attr-defined]
    except KafkaException as error:
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        log.info("topic %s was created concurrently", name)


def _report(plan: TopicPlan, existing: Mapping[str, object], created: set[str]) -> TopicReport:
    metadata = existing.get(plan.name)
    partitions = len(metadata.partitions) if metadata is not None else 0  # type: ignore[attr-defined]
    if plan.name in created:
        outcome = TopicOutcome.CREATED
    elif partitions != plan.partitions:
        outcome = TopicOutcome.MISMATCH
    else:
        outcome = TopicOutcome.EXISTS
    return TopicReport(plan.name, outcome, partitions, plan.partitions)

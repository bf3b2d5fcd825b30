"""Lag per consumer group and DLQ depth per topic, read from the broker within a time limit.

Lag comes from `rbr_runtime.kafka.lag` (all groups at once), DLQ depth from partition bounds
(`rbr_runtime.kafka.admin.topic_depth`). Each read runs in its own thread; what does not
answer within the limit is reported in `errors`, not waited for.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from rbr_registrar.operator.views import ConsumerLag, TopicsView, TopicView
from rbr_runtime.kafka.admin import topic_depth
from rbr_runtime.kafka.lag import PartitionLag, all_groups_lag
from rbr_runtime.settings import CommonSettings
from rbr_schemas import TOPICS

T = TypeVar("T")

LAG_TIMEOUT = 15.0
"""Seconds the lag count may take; a partition whose end is not known by then is `capped`."""


def _all_lags(settings: CommonSettings) -> list[PartitionLag]:
    return all_groups_lag(settings, [spec.name for spec in TOPICS], timeout=LAG_TIMEOUT)


def topics_view(settings: CommonSettings, timeout: float) -> TopicsView:
    """Returns lag and DLQ depth per topic of the catalogue, read within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=len(TOPICS) + 1, thread_name_prefix="topics-view")
    try:
        lags = pool.submit(_all_lags, settings)
        depths = {spec.name: pool.submit(topic_depth, settings, spec.dlq, 5.0) for spec in TOPICS}
        errors: list[str] = []
        partitions = _wait(lags, deadline, "consumer lag", errors) or []
        by_topic: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for partition in partitions:
            counted = by_topic[partition.topic][partition.group]
            counted[0] += partition.lag
            counted[1] |= int(partition.capped)
        views = [
            TopicView(
                topic=spec.name,
                consumers=[
                    ConsumerLag(group=group, lag=lag, capped=bool(capped))
                    for group, (lag, capped) in sorted(by_topic[spec.name].items())
                ],
                dlq=spec.dlq,
                dlq_depth=_wait(depths[spec.name], deadline, f"depth of {spec.dlq}", errors),
            )
            for spec in TOPICS
        ]
        return TopicsView(topics=views, errors=errors)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _wait(future: Future[T], deadline: float, what: str, errors: list[str]) -> T | None:
    timeout = max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        errors.append(f"{what}: no answer from the broker in time")
    except Exception as error:  # noqa: BLE001 - any failure is what to report
        errors.append(f"{what}: {type(error).__name__}: {str(error)[:200]}")
    return None


class TopicsReader:
    """Reads topics_view at most once per `max_age` seconds, one read at a time.

    Each read opens a consumer per topic and counts by reading: a console refreshing a page,
    or several operators at once, share the last answer instead of piling reads up.
    """

    def __init__(self, settings: CommonSettings, timeout: float, max_age: float = 10.0) -> None:
        self._settings = settings
        self._timeout = timeout
        self._max_age = max_age
        self._lock = threading.Lock()
        self._last: tuple[float, TopicsView] | None = None

    def read(self) -> TopicsView:
        """Returns the latest view, read again if older than max_age."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self._max_age:
                return self._last[1]
            view = topics_view(self._settings, self._timeout)
            self._last = (time.monotonic(), view)
            return view

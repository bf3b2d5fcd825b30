"""The consumer handler of `alerts`: record, plan, deliver; reject what a channel refused.

Offsets are committed once every notification ended or waits for the retry sweeper. An event a
channel refused is rejected with `PermanentError` (to alerts.dlq; a replay retries only the
channels not reached); rejected positions are remembered, as the runner re-runs a rejected
batch message by message.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rbr_notifier.channels import ChannelsFile
from rbr_notifier.dispatch import DeliveryResult, Dispatcher
from rbr_notifier.lifecycle import is_one_shot
from rbr_notifier.metrics import ALERT_EVENTS
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.alerts import MAX_ID_CHARS, AlertEvent
from rbr_notifier.store.deliveries import PlannedDelivery
from rbr_runtime.kafka.consumer import Inbound, PermanentError
from rbr_schemas import Alert

log = logging.getLogger(__name__)
Position = tuple[str, int, int]
REMEMBERED_REJECTIONS = 10_000


def route(channels: ChannelsFile, alert: Alert) -> list[str]:
    """Returns the enabled channels whose filters accept the alert."""
    return [
        channel.name
        for channel in channels.enabled
        if channel.filters.accepts(alert.severity, alert.type, alert.bucket)
    ]


class AlertHandler:
    """Handles batches of `alerts` for the consumer runner."""

    def __init__(
        self,
        store: NotifierStore,
        dispatcher: Dispatcher,
        channels: ChannelsFile,
        *,
        reopen_after: float,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._channels = channels
        self._reopen_after = reopen_after
        # Why a message was rejected, and whether the fault is ours (see PermanentError).
        self._rejected: OrderedDict[Position, tuple[str, bool]] = OrderedDict()

    def __call__(self, batch: Sequence[Inbound[Any]]) -> None:
        """Records and delivers a batch; raises PermanentError if a message must be rejected."""
        fresh = [m for m in batch if _position(m) not in self._rejected]
        valid = [m for m in fresh if self._validate(m)]
        if valid:
            self._handle(valid)
        rejected = [self._rejected[_position(m)] for m in batch if _position(m) in self._rejected]
        if rejected:
            reason, ours = rejected[0]
            raise PermanentError(reason, counts_toward_cap=ours)

    def _validate(self, message: Inbound[Any]) -> bool:
        alert: Alert = message.data
        if len(alert.alert_id) > MAX_ID_CHARS or not alert.alert_id.strip():
            self._remember(
                _position(message), f"alert_id must be 1 to {MAX_ID_CHARS} characters", ours=True
            )
            return False
        return True

    def _handle(self, messages: list[Inbound[Any]]) -> None:
        events = [AlertEvent(_event_id(m), m.data) for m in messages]
        recorded = self._store.alerts.record_events(
            events,
            lambda alert: route(self._channels, alert),
            reopen_after=self._reopen_after,
        )
        # Two events of one batch may own the same delivery (a firing and its repeat). Each
        # carries its message: if it has to wait for a retry, the message is kept with it, to
        # dead-letter should its channel's retry schedule run out.
        by_id: dict[int, PlannedDelivery] = {}
        for message, (_, owned) in zip(messages, recorded, strict=True):
            for delivery in owned:
                by_id.setdefault(delivery.id, replace(delivery, message=message))
        planned = list(by_id.values())
        for message, (outcome, _) in zip(messages, recorded, strict=True):
            ALERT_EVENTS.labels(message.data.state.value, outcome).inc()
        results = self._dispatcher.run(planned) if planned else []
        failures: dict[int, DeliveryResult] = {r.delivery.id: r for r in results if r.gave_up}
        delivered_one_shots = []
        for message, (_, owned) in zip(messages, recorded, strict=True):
            reasons = [failures[d.id].summary for d in owned if d.id in failures]
            if reasons:
                # A channel that refuses or stays down is not our fault: dead-letter the alert
                # for a later `rbr dlq replay`, but never let it stop delivery to the others.
                self._remember(_position(message), "; ".join(dict.fromkeys(reasons)), ours=False)
            elif is_one_shot(message.data):
                delivered_one_shots.append(message.data.dedupe_key)
        # Closed only once every channel was served: left open, a DLQ replay still retries the
        # channels that were not reached (a closed occurrence's replay sends nothing).
        self._store.alerts.close_one_shot(delivered_one_shots)

    def _remember(self, position: Position, reason: str, *, ours: bool) -> None:
        self._rejected[position] = (reason[:1500], ours)
        while len(self._rejected) > REMEMBERED_REJECTIONS:
            self._rejected.popitem(last=False)


def _position(message: Inbound[Any]) -> Position:
    return (message.topic, message.partition, message.offset)


def _event_id(message: Inbound[Any]) -> str:
    return message.event.id if message.event is not None else f"{_position(message)}"

"""The consumer handler of `alerts`: record, plan, deliver; reject what a channel refused.

Offsets are committed once every notification ended or waits for the retry sweeper. An event a
channel refused is returned as a `Rejection` (to alerts.dlq; a replay retries only the
channels not reached); the other events of its batch count as done and are not run again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rbr_notifier.channels import ChannelConfig, ChannelsFile
from rbr_notifier.dispatch import DeliveryResult, Dispatcher
from rbr_notifier.lifecycle import is_one_shot
from rbr_notifier.metrics import ALERT_EVENTS, labelled
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.deliveries import PlannedDelivery
from rbr_notifier.store.rows import MAX_ID_CHARS, AlertEvent
from rbr_runtime.kafka.consumer import Inbound, Rejection
from rbr_schemas import Alert
from rbr_schemas.events import addressed_channel

log = logging.getLogger(__name__)


def route(channels: ChannelsFile | Sequence[ChannelConfig], alert: Alert) -> list[str]:
    """Returns the enabled channels whose filters accept the alert.

    A test alert addressed to one channel (`rbr channels test`) goes to that channel only,
    whatever its filters say. `channels` may be the enabled channels already listed.
    """
    enabled = channels.enabled if isinstance(channels, ChannelsFile) else channels
    addressed = addressed_channel(alert)
    if addressed is not None:
        return [channel.name for channel in enabled if channel.name == addressed]
    return [
        channel.name
        for channel in enabled
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
        # Listed once: routing reads them for every alert.
        self._enabled = channels.enabled
        self._reopen_after = reopen_after

    def __call__(self, batch: Sequence[Inbound[Any]]) -> list[Rejection]:
        """Records and delivers a batch; returns the messages to dead-letter, with why."""
        rejections: list[Rejection] = []
        valid: list[Inbound[Any]] = []
        for message in batch:
            fault = _invalid(message.data)
            if fault is None:
                valid.append(message)
            else:
                rejections.append(Rejection(message, fault))
        if valid:
            rejections += self._handle(valid)
        return rejections

    def _handle(self, messages: list[Inbound[Any]]) -> list[Rejection]:
        events = [AlertEvent(_event_id(m), m.data) for m in messages]
        recorded = self._store.alerts.record_events(
            events,
            lambda alert: route(self._enabled, alert),
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
            labelled(ALERT_EVENTS, message.data.state.value, outcome).inc()
        results = self._dispatcher.run(planned) if planned else []
        failures: dict[int, DeliveryResult] = {r.delivery.id: r for r in results if r.gave_up}
        rejections = []
        delivered_one_shots = []
        for message, (_, owned) in zip(messages, recorded, strict=True):
            reasons = [failures[d.id].summary for d in owned if d.id in failures]
            if reasons:
                # A channel that refuses or stays down is not our fault: dead-letter the alert
                # for a later `rbr dlq replay`, but never let it stop delivery to the others.
                reason = "; ".join(dict.fromkeys(reasons))[:1500]
                rejections.append(Rejection(message, reason, counts_toward_cap=False))
            elif is_one_shot(message.data):
                delivered_one_shots.append(message.data.dedupe_key)
        # Closed only once every channel was served: left open, a DLQ replay still retries the
        # channels that were not reached (a closed occurrence's replay sends nothing).
        self._store.alerts.close_one_shot(delivered_one_shots)
        return rejections


def _invalid(alert: Alert) -> str | None:
    """Says why the tables cannot hold an alert (a fault of ours: it counts toward the cap)."""
    if len(alert.alert_id) > MAX_ID_CHARS or not alert.alert_id.strip():
        return f"alert_id must be 1 to {MAX_ID_CHARS} characters"
    return None


def _event_id(message: Inbound[Any]) -> str:
    if message.event is not None:
        return message.event.id
    return f"{(message.topic, message.partition, message.offset)}"

"""The retry sweeper: tries waiting deliveries again on their channel's retry schedule.

Each turn, on every replica, one due delivery per channel goes first: while the channel is
still down its others wait for its next retry, once it is back they are all due. A delivery
whose schedule ran out is given up on and its kept alerts message goes to alerts.dlq.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from threading import Event

from rbr_notifier.channels import ChannelsFile
from rbr_notifier.dispatch import DeliveryResult, Dispatcher, Down
from rbr_notifier.lifecycle import first_per_channel
from rbr_notifier.metrics import PENDING
from rbr_notifier.model import DeliveryState
from rbr_notifier.retry_schedule import schedule_of
from rbr_notifier.senders.base import Sender
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.deliveries import PlannedDelivery
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.consumer import MESSAGES_DEAD_LETTERED, dead_letter_message
from rbr_runtime.schedule import PeriodicTask
from rbr_schemas import ALERTS, utcnow

log = logging.getLogger(__name__)
DUE_PER_SWEEP = 500
DLQ_REASON = "rejected"


class RetrySweeper:
    """Retries due waiting deliveries and dead-letters the ones given up on (run periodically)."""

    def __init__(
        self,
        store: NotifierStore,
        dispatcher: Dispatcher,
        channels: ChannelsFile,
        producer: EventProducer | None,
        *,
        group: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Wires the sweeper.

        Args:
            store: the notifier's tables.
            dispatcher: a dispatcher made with `retry_sweep=True`.
            channels: the channels (for the gauge of waiting deliveries).
            producer: where dead letters go; None keeps them in the table (tests).
            group: the consumer group named in the dead letters' headers.
            clock: the time the schedule is reckoned in.
        """
        self._store = store
        self._dispatcher = dispatcher
        self._channels = channels
        self._producer = producer
        self._group = group
        self._clock = clock

    def run_once(self) -> int:
        """Retries what is due, dead-letters what was given up on; returns how many were due."""
        now = self._clock()
        due = self._store.deliveries.due_retries(
            now, utcnow() - self._dispatcher.lease, DUE_PER_SWEEP
        )
        if due:
            down: Down = {}
            self._settle(self._retry(due, down), down, now)
        self._dead_letter_given_up()
        self._count_waiting()
        return len(due)

    def _retry(self, due: list[PlannedDelivery], down: Down) -> list[DeliveryResult]:
        firsts, others = first_per_channel(due)
        results = self._dispatcher.run(firsts, down)
        return results + (self._dispatcher.run(others, down) if others else [])

    def _settle(self, results: list[DeliveryResult], down: Down, now: datetime) -> None:
        for name, retry_at in down.items():
            self._hold(name, retry_at)
        sent = [r.delivery for r in results if r.ran and r.state is DeliveryState.SENT]
        for name in sorted({d.channel for d in sent}):
            woken = self._store.deliveries.wake(name, now)
            if woken:
                log.info("channel %s is back: %d waiting notification(s) due now", name, woken)
        self._store.alerts.close_one_shot(d.dedupe_key for d in sent)

    def _hold(self, name: str, retry_at: datetime) -> None:
        """A channel still down: its deliveries that would come back sooner come with its retry."""
        channel = self._channels.get(name)
        schedule = schedule_of(channel) if channel is not None else None
        if schedule is not None:
            since_after = retry_at - timedelta(seconds=schedule.max_age)
            self._store.deliveries.hold(name, retry_at, waiting_since_after=since_after)

    def _dead_letter_given_up(self) -> None:
        if self._producer is not None:
            self._send_dead_letters(self._producer)
        self._store.deliveries.forget_messages()  # those whose delivery ended otherwise

    def _send_dead_letters(self, producer: EventProducer) -> None:
        given_up = self._store.deliveries.given_up_messages()
        if not given_up:
            return
        producer.send_messages(
            [
                dead_letter_message(
                    g.message, ALERTS.dlq, group=self._group, reason=DLQ_REASON, error=g.reason
                )
                for g in given_up
            ]
        )
        MESSAGES_DEAD_LETTERED.labels(self._group, ALERTS.name, DLQ_REASON).inc(len(given_up))
        self._store.deliveries.forget_messages([g.delivery_id for g in given_up])

    def _count_waiting(self) -> None:
        counts = self._store.deliveries.waiting_counts()
        for name in {c.name for c in self._channels.channels} | set(counts):
            PENDING.labels(name).set(counts.get(name, 0))


def retry_task(
    store: NotifierStore,
    channels: ChannelsFile,
    senders: Mapping[str, Sender],
    settings: NotifierSettings,
    *,
    pool: ThreadPoolExecutor,
    producer: EventProducer,
    group: str,
    stop: Event,
    clock: Callable[[], datetime] = utcnow,
) -> PeriodicTask:
    """Returns the periodic retry sweep (every RBR_NOTIFIER_RETRY_SWEEP_INTERVAL seconds)."""
    dispatcher = Dispatcher(
        store, channels, senders, settings, pool, stop=stop, clock=clock, retry_sweep=True
    )
    sweeper = RetrySweeper(store, dispatcher, channels, producer, group=group, clock=clock)
    return PeriodicTask("retries", settings.notifier_retry_sweep_interval, sweeper.run_once)

"""Carrying out planned deliveries: claim, decide (see `lifecycle`), throttle, send, retry.

A batch's deliveries alone on their channel for their dedupe key are loaded and claimed
together and sent side by side; a dedupe key's deliveries to one channel run in order. Each is
claimed in the database before it is sent. Tries in a row that all fail make it wait for the
retry sweeper; once a channel failed, its other deliveries wait for its next retry.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rbr_notifier.channels import ChannelConfig, ChannelsFile, Throttle
from rbr_notifier.closing import KeyedLocks, send_digest_resolve
from rbr_notifier.delivery import (
    END_STATES,
    AttemptStatus,
    DeliveryOutcome,
    Interrupted,
    RetryPolicy,
    attempt_once,
    deliver,
)
from rbr_notifier.lifecycle import (
    Decision,
    DeliveryContext,
    Step,
    Turn,
    decide,
    first_per_channel,
    may_wait,
    postpone,
    turn_of,
    window_of,
)
from rbr_notifier.metrics import DELIVERIES, RETRIES, labelled
from rbr_notifier.model import DeliveryState, Notification, digest_key
from rbr_notifier.retry_schedule import Schedule, schedule_of
from rbr_notifier.senders.base import AttemptResult, Outcome, Sender
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.deliveries import PlannedDelivery, SentTry
from rbr_runtime.errors import TransientError
from rbr_runtime.jsonlog import log_context
from rbr_runtime.schedule import worker_identity
from rbr_schemas import utcnow

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Down = dict[str, datetime]
"""Channels that failed, with when their next retry is due: their deliveries wait for it."""


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery ended in this run, with a secret-free description."""

    delivery: PlannedDelivery
    state: DeliveryState
    summary: str
    ran: bool = True

    @property
    def gave_up(self) -> bool:
        """Tells whether this run could not reach the channel (the alert goes to the DLQ)."""
        return self.ran and self.state in (DeliveryState.FAILED, DeliveryState.REJECTED)


def throttle_of(channel: ChannelConfig, settings: NotifierSettings) -> Throttle | None:
    """Returns the channel's throttle: its own, the default, or None when disabled."""
    if channel.throttle is False:
        return None
    if channel.throttle is not None:
        return channel.throttle
    if settings.notifier_throttle_max <= 0:
        return None
    return Throttle(max=settings.notifier_throttle_max, window=settings.notifier_throttle_window)


def claim_lease(settings: NotifierSettings, channels: ChannelsFile) -> timedelta:
    """Returns how long a delivery's claim holds without renewal.

    Past it, another replica may take the delivery over. It is well above the longest time
    between two renewals (one try, then the longest pause) of any channel.
    """
    timeouts = [c.timeout or settings.notifier_timeout for c in channels.channels]
    longest_try = max([settings.notifier_timeout, *timeouts])
    longest_pause = max(settings.notifier_retry_max_backoff, settings.notifier_retry_after_max)
    return timedelta(seconds=2 * (longest_try + longest_pause) + 60)


def policy_of(channel: ChannelConfig, settings: NotifierSettings) -> RetryPolicy:
    """Returns the retry policy of a channel."""
    return RetryPolicy(
        max_attempts=channel.max_attempts or settings.notifier_max_attempts,
        initial_backoff=settings.notifier_retry_initial_backoff,
        max_backoff=settings.notifier_retry_max_backoff,
        retry_after_max=settings.notifier_retry_after_max,
    )


class Dispatcher:
    """Carries out planned deliveries."""

    def __init__(
        self,
        store: NotifierStore,
        channels: ChannelsFile,
        senders: Mapping[str, Sender],
        settings: NotifierSettings,
        pool: ThreadPoolExecutor,
        *,
        stop: threading.Event | None = None,
        clock: Clock = utcnow,
        wait: Callable[[float], bool] | None = None,
        owner: str | None = None,
        retry_sweep: bool = False,
        digest_locks: KeyedLocks | None = None,
    ) -> None:
        """Wires the dispatcher.

        `digest_locks` is shared with the digest sweeper of the same claim owner: one thread
        at a time sends a digest's resolve (the database claim cannot tell them apart).
        """
        self._store = store
        # By name: looked up several times per delivery (`ChannelsFile.get` scans the list).
        self._channels = {channel.name: channel for channel in channels.channels}
        self._senders = senders
        self._settings = settings
        self._pool = pool
        self.stop_event = stop or threading.Event()
        self._clock = clock
        self._wait = wait
        self._sweeping = retry_sweep
        # The retry sweeper claims as an owner of its own: a consumer thread of the same
        # replica must not take one of its claims for its own and send the delivery too.
        self._owner = (owner or worker_identity()) + ("/retries" if retry_sweep else "")
        self.lease = claim_lease(settings, channels)
        self._digest_locks = digest_locks or KeyedLocks()

    def stop(self) -> None:
        """Ends retry pauses early: deliveries in a pause are left for after the restart."""
        self.stop_event.set()

    def run(
        self, planned: Sequence[PlannedDelivery], down: Down | None = None
    ) -> list[DeliveryResult]:
        """Delivers everything planned; returns how each ended (or that it waits).

        Args:
            planned: the deliveries, in order.
            down: channels known to be down, with their next retry (filled in as channels
                fail); by default the channels with a retry scheduled in the future.

        Raises:
            Exception: the first outage met (database down, stopping); deliveries that did
                not end stay pending and are retried with the batch.
        """
        if down is None:
            down = self._store.deliveries.channels_down(self._clock())
        if self._sweeping:
            return self._run_groups(planned, down)
        singles, groups = split_batch(planned)
        futures = [self._pool.submit(self._run_group, group, down) for group in groups]
        try:
            results, outage = self._run_singles(singles, down), None
        except Exception as error:  # noqa: BLE001 - wait for every group, then re-raise
            results, outage = [], error
        grouped, failure = _gather(futures)
        first = outage or failure
        if first is not None:
            raise first
        return results + grouped

    def _run_groups(self, planned: Sequence[PlannedDelivery], down: Down) -> list[DeliveryResult]:
        """Delivers one at a time per dedupe key, loading and claiming each just before."""
        groups: dict[str, list[PlannedDelivery]] = {}
        for delivery in planned:
            groups.setdefault(delivery.dedupe_key, []).append(delivery)
        futures = [self._pool.submit(self._run_group, group, down) for group in groups.values()]
        results, outage = _gather(futures)
        if outage is not None:
            raise outage
        return results

    def _run_singles(self, planned: list[PlannedDelivery], down: Down) -> list[DeliveryResult]:
        """Delivers what is alone on its channel for its dedupe key, loaded and claimed at once.

        Due deliveries are sent side by side (`_send_due`); the other steps run one by one.
        Raises TransientError if another replica holds a claim, once the others are done.
        """
        contexts = self._store.deliveries.contexts([d.id for d in planned])
        results: list[DeliveryResult] = []
        ours: list[PlannedDelivery] = []
        for delivery in planned:
            context = contexts[delivery.id]
            turn = turn_of(context, retry_sweep=False)
            if turn is Turn.ENDED:
                results.append(
                    DeliveryResult(delivery, context.state, f"already {context.state}", ran=False)
                )
            elif turn is Turn.SWEEPER:
                results.append(
                    DeliveryResult(delivery, DeliveryState.WAITING, "waiting", ran=False)
                )
            else:
                ours.append(delivery)
        claimed = self._store.deliveries.claim_many(
            [d.id for d in ours], self._owner, self.lease, due_by=self._clock()
        )
        due: list[Due] = []
        futures: list[Future[list[DeliveryResult]]] = []
        for delivery in (d for d in ours if d.id in claimed):
            item = self._due(delivery, contexts[delivery.id], down)
            if item is not None:
                due.append(item)
            else:
                futures.append(
                    self._pool.submit(self._decide_one, delivery, contexts[delivery.id], down)
                )
        try:
            results += self._send_due(due, down)
            outage = None
        except Exception as error:  # noqa: BLE001 - wait for the others, then re-raise
            outage = error
        others, failure = _gather(futures)
        first = outage or failure
        if first is not None:
            # Stopping, or an outage: what was claimed and did not end is given back, so the
            # next owner of the batch sends it at once rather than after the claim's lease.
            self._store.deliveries.release_many(sorted(claimed), self._owner)
            raise first
        lost = [d for d in ours if d.id not in claimed]
        if lost:
            # Another replica sends them (it had the partition before a rebalance). The
            # runner retries the batch until they ended or their claims went stale.
            raise TransientError(
                f"{len(lost)} notification(s), the first the {lost[0].kind.value} of "
                f"{lost[0].alert_id} to channel {lost[0].channel}, are being sent by another "
                "notifier replica"
            )
        return results + others

    def _due(self, planned: PlannedDelivery, context: DeliveryContext, down: Down) -> Due | None:
        """Returns a claimed delivery as one to send now, or None if its step is another."""
        channel = self._channels.get(planned.channel)
        sender = self._senders.get(planned.channel)
        if self._decision(planned, context, down).step is not Step.SEND:
            return None
        assert channel is not None
        assert sender is not None
        return Due(planned, context, channel, sender)

    def _decide_one(
        self, planned: PlannedDelivery, context: DeliveryContext, down: Down
    ) -> list[DeliveryResult]:
        with log_context(alert_id=planned.alert_id, channel=planned.channel):
            return [self._decide(planned, context, down)]

    def _send_due(self, due: list[Due], down: Down) -> list[DeliveryResult]:
        """Sends due deliveries side by side; those not taken go on one by one per channel.

        A channel's first delivery is tried first: if that fails, the channel's others are
        not tried at once but decided one by one after its retries (they wait for its next
        retry if it stays down), as if they had been sent one at a time.
        """
        probes, rest = first_per_channel(due)
        tried = dict(zip(probes, self._try_first(probes), strict=True))
        up = {d.channel for d in probes if tried[d].outcome is not Outcome.RETRY}
        second = [d for d in rest if d.channel in up]
        tried |= dict(zip(second, self._try_first(second), strict=True))
        sent = [d for d in due if d in tried and tried[d].ok]
        unsent = [d for d in due if d not in tried or not tried[d].ok]
        self._store.deliveries.record_sent(
            [SentTry(d.planned, d.context.attempts + 1, tried[d].http_status) for d in sent]
        )
        results = [self._sent(d) for d in sent]
        left: dict[str, list[tuple[Due, AttemptResult | None]]] = {}
        for item in unsent:
            left.setdefault(item.channel, []).append((item, tried.get(item)))
        futures = [self._pool.submit(self._carry_on, items, down) for items in left.values()]
        carried, outage = _gather(futures)
        if outage is not None:
            raise outage
        return results + carried

    def _try_first(self, due: list[Due]) -> list[AttemptResult]:
        """Makes the first try of each delivery, side by side on the pool.

        A few pool tasks take the deliveries one after the other, rather than a task (a
        Future, its Condition and a thread wake-up) per delivery: as many at once, for less.
        """
        results: list[AttemptResult | None] = [None] * len(due)
        queue = iter(enumerate(due))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    taken = next(queue, None)
                if taken is None:
                    return
                index, item = taken
                results[index] = self._try_one(item)

        workers = min(self._settings.notifier_concurrency, len(due))
        for future in [self._pool.submit(work) for _ in range(workers)]:
            future.result()
        return [result for result in results if result is not None]

    def _try_one(self, item: Due) -> AttemptResult:
        with log_context(alert_id=item.planned.alert_id, channel=item.channel):
            notification = Notification(item.planned.kind, item.channel, alert=item.context.alert)
            return attempt_once(item.sender, notification)

    def _sent(self, item: Due) -> DeliveryResult:
        planned = item.planned
        labelled(DELIVERIES, planned.channel, planned.kind.value, DeliveryState.SENT.value).inc()
        summary = (
            f"channel {planned.channel} ({item.config.type}): sent after "
            f"{item.context.attempts + 1} attempt(s)"
        )
        return DeliveryResult(planned, DeliveryState.SENT, summary)

    def _carry_on(
        self, items: list[tuple[Due, AttemptResult | None]], down: Down
    ) -> list[DeliveryResult]:
        """Goes on, in order, with a channel's deliveries its first tries did not deliver.

        One that was tried goes on with its tries (only that one, if its channel failed in
        the meantime); one that was not is decided again (it waits if its channel is down).
        """
        results = []
        for item, tried in items:
            planned, context = item.planned, item.context
            with log_context(alert_id=planned.alert_id, channel=planned.channel):
                if tried is None:
                    results.append(self._decide(planned, context, down))
                    continue
                results.append(
                    self._send(
                        planned,
                        context,
                        item.config,
                        item.sender,
                        down,
                        tried=tried,
                        one_try=planned.channel in down,
                    )
                )
        return results

    def _run_group(self, group: list[PlannedDelivery], down: Down) -> list[DeliveryResult]:
        return [self.deliver_one(delivery, down) for delivery in group]

    def deliver_one(self, planned: PlannedDelivery, down: Down) -> DeliveryResult:
        """Decides and, if due, sends one delivery.

        Args:
            planned: the delivery.
            down: channels that failed, with their next retry (shared by the run's threads);
                their other deliveries wait for that retry instead of each making its own
                tries, so a dead channel cannot hold a batch for long.
        """
        with log_context(alert_id=planned.alert_id, channel=planned.channel):
            if self._sweeping and self.stop_event.is_set():
                return DeliveryResult(planned, DeliveryState.WAITING, "stopping", ran=False)
            context = self._store.deliveries.delivery(planned.id)
            turn = turn_of(context, retry_sweep=self._sweeping)
            if turn is Turn.ENDED:
                return DeliveryResult(planned, context.state, f"already {context.state}", ran=False)
            if turn is Turn.SWEEPER:
                # The event's offset can be committed.
                return DeliveryResult(planned, DeliveryState.WAITING, "waiting", ran=False)
            if not self._store.deliveries.claim(
                planned.id, self._owner, self.lease, due_by=self._clock()
            ):
                if self._sweeping:
                    return DeliveryResult(planned, context.state, "claimed elsewhere", ran=False)
                # Another replica sends it (it had the partition before a rebalance). The
                # runner retries the batch until that delivery ended or its claim went stale.
                raise TransientError(
                    f"{planned.kind.value} of {planned.alert_id} to channel {planned.channel} "
                    "is being sent by another notifier replica"
                )
            return self._decide(planned, context, down)

    def _decision(self, planned: PlannedDelivery, context: DeliveryContext, down: Down) -> Decision:
        """Decides what is done with a claimed delivery (see `lifecycle.decide`)."""
        channel = self._channels.get(planned.channel)
        sender = self._senders.get(planned.channel)
        configured = channel is not None and sender is not None and channel.enabled
        throttle = throttle_of(channel, self._settings) if channel is not None else None
        return decide(
            context,
            configured=configured,
            channel_down=planned.channel in down,
            closes_digests=sender is not None and sender.closes_digests,
            throttled=throttle is not None,
        )

    def _decide(
        self, planned: PlannedDelivery, context: DeliveryContext, down: Down
    ) -> DeliveryResult:
        """Skips, defers, folds or sends a claimed delivery."""
        channel = self._channels.get(planned.channel)
        sender = self._senders.get(planned.channel)
        decision = self._decision(planned, context, down)
        if decision.step is Step.SKIP:
            return self._end(planned, DeliveryState.SKIPPED, decision.reason)
        assert channel is not None
        assert sender is not None
        if decision.step is Step.WAIT_BEHIND:
            # Due as soon as the earlier one ended (the sweeper takes heads only).
            return self._defer(planned, self._clock(), context.waiting_since, decision.reason)
        if decision.step is Step.POSTPONE:
            return self._postpone(planned, context, channel, down[planned.channel])
        return self._deliver_due(planned, context, decision.step, channel=channel, down=down)

    def _deliver_due(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        step: Step,
        *,
        channel: ChannelConfig,
        down: Down,
    ) -> DeliveryResult:
        """Sends a delivery that is due, unless the throttle folds it or a digest carries it."""
        sender = self._senders[planned.channel]
        if step is Step.CLOSE_DIGEST:
            return self._close_digest(planned, context, channel, sender, down)
        if step is Step.JOIN_DIGEST:
            assert context.trigger_window is not None
            self._store.windows.fold(context.id, context.channel, context.trigger_window)
            return self._throttled(planned)
        if step is Step.COUNT:
            throttle = throttle_of(channel, self._settings)
            assert throttle is not None
            start, end = window_of(self._clock(), throttle.window)
            if not self._store.windows.claim_slot(
                context.id, context.channel, start, end, throttle.max
            ):
                return self._throttled(planned)
        return self._send(planned, context, channel, sender, down)

    def _throttled(self, planned: PlannedDelivery) -> DeliveryResult:
        DELIVERIES.labels(planned.channel, planned.kind.value, "throttled").inc()
        return DeliveryResult(planned, DeliveryState.THROTTLED, "folded into digest")

    def _postpone(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        retry_at: datetime,
    ) -> DeliveryResult:
        """Makes a delivery to a channel that just failed wait for its next retry, untried."""
        why = f"channel {planned.channel} ({channel.type}): not tried, "
        now = self._clock()
        postponed = postpone(schedule_of(channel), context.waiting_since, now, retry_at)
        if postponed.expired:
            summary = (
                f"channel {planned.channel} ({channel.type}): gave up after {context.attempts} "
                f"attempt(s) over {_age(postponed.since, now)}: the channel is still down"
            )
            self._give_up_line(planned, summary)
            return self._end(planned, DeliveryState.FAILED, summary)
        if postponed.retry_at is None:
            return self._end(
                planned, DeliveryState.FAILED, why + "it gave up on an earlier notification"
            )
        return self._defer(
            planned, postponed.retry_at, postponed.since, why + "it failed a moment ago"
        )

    def _defer(
        self,
        planned: PlannedDelivery,
        retry_at: datetime,
        since: datetime | None,
        why: str,
    ) -> DeliveryResult:
        """Makes a claimed delivery wait for the retry sweeper until `retry_at`."""
        detail = f"{why}; next try {retry_at:%Y-%m-%d %H:%M:%S} UTC"
        deferred = self._store.deliveries.defer(
            planned.id,
            self._owner,
            next_attempt_at=retry_at,
            waiting_since=since,
            detail=detail,
            message=planned.message,
        )
        if not deferred:
            raise TransientError(f"lost the claim of {planned.kind.value} of {planned.alert_id}")
        return DeliveryResult(planned, DeliveryState.WAITING, detail)

    def _policy(self, channel: ChannelConfig) -> RetryPolicy:
        """Returns the tries in a row: the channel's, or one per turn of the retry sweeper."""
        policy = policy_of(channel, self._settings)
        return replace(policy, max_attempts=1) if self._sweeping else policy

    def _close_digest(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        sender: Sender,
        down: Down,
    ) -> DeliveryResult:
        """Ends the resolve of an alert whose firing went out only in a digest.

        The digest's resolve is sent, once, when this was the last of its alerts to resolve.
        This resolve stays unfinished until then, so the alert's offset is not committed (and
        a crash loses nothing) before the digest's resolve ended.
        """
        assert context.trigger_window is not None
        # Another thread of this replica may be sending it (same claim owner): wait for it,
        # then find it ended.
        with self._digest_locks.hold((planned.channel, context.trigger_window)):
            return self._close_digest_held(planned, context, channel, sender, down)

    def _close_digest_held(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        sender: Sender,
        down: Down,
    ) -> DeliveryResult:
        assert context.trigger_window is not None
        key = f"{digest_key(context.trigger_window)}:{planned.channel}"
        target = self._store.windows.plan_digest_resolve(planned.channel, context.trigger_window)
        if target is None:
            why = f"firing only in digest {key}, resolved with it once all its alerts are"
            return self._end(planned, DeliveryState.DIGESTED, why)
        if target.state not in (DeliveryState.PENDING, DeliveryState.SENDING):
            return self._end(
                planned, DeliveryState.DIGESTED, f"digest {key} resolve {target.state}"
            )
        try:
            outcome = send_digest_resolve(
                self._store.deliveries,
                target,
                sender,
                self._policy(channel),
                owner=self._owner,
                lease=self.lease,
                stop=self.stop_event,
                wait=self._wait,
            )
        except Interrupted:
            self._store.deliveries.release(planned.id, self._owner)
            raise
        if outcome is None:
            raise TransientError(
                f"the resolve of digest {key} is being sent by another notifier replica"
            )
        if outcome.state is DeliveryState.SENT:
            return self._end(planned, DeliveryState.DIGESTED, f"digest {key} resolved")
        if outcome.state is DeliveryState.FAILED:
            down.setdefault(planned.channel, self._clock())
        summary = f"channel {planned.channel} ({channel.type}): resolve of digest {key} "
        return self._end(planned, outcome.state, summary + outcome.summary())

    def _send(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        sender: Sender,
        down: Down,
        *,
        tried: AttemptResult | None = None,
        one_try: bool = False,
    ) -> DeliveryResult:
        """Tries a claimed delivery in a row and records each try; it ends, or waits.

        `tried` is its first try, made already; with `one_try` it is the only one (its
        channel failed meanwhile: it waits for the channel's next retry, or is given up on).
        """
        notification = Notification(planned.kind, planned.channel, alert=context.alert)
        policy = self._policy(channel)
        schedule = schedule_of(channel)
        # Decided at the last try: may the delivery wait for a retry, or is it given up on?
        waits: list[bool] = []

        def record(attempt: int, status: str, result: AttemptResult) -> None:
            if status == AttemptStatus.FAILED:
                waits.append(may_wait(schedule, context.waiting_since, self._clock()))
                status = AttemptStatus.RETRYING if waits[-1] else status
            self._store.deliveries.record_attempt(
                alert_id=planned.alert_id,
                dedupe_key=planned.dedupe_key,
                channel=planned.channel,
                kind=planned.kind,
                attempt=attempt,
                status=status,
                http_status=result.http_status,
                error=result.error,
                delivery_id=planned.id,
                end_state=END_STATES.get(status),
            )

        try:
            outcome = deliver(
                sender,
                notification,
                replace(policy, max_attempts=1) if one_try else policy,
                record,
                stop=self.stop_event,
                first_attempt=context.attempts + 1,
                wait=self._wait,
                tried=tried,
            )
        except Interrupted:
            # Stopping between two tries: give the delivery back, so whichever replica gets
            # the alert next sends it at once instead of waiting for the claim to go stale.
            self._store.deliveries.release(planned.id, self._owner)
            raise
        if outcome.state is DeliveryState.FAILED and waits and waits[-1]:
            assert schedule is not None
            return self._wait_for_retry(
                planned, context, channel, schedule, outcome=outcome, down=down
            )
        if self._sweeping:
            RETRIES.labels(planned.channel, outcome.state.value).inc()
        DELIVERIES.labels(planned.channel, planned.kind.value, outcome.state.value).inc()
        if outcome.state is DeliveryState.SENT:
            summary = f"channel {planned.channel} ({channel.type}): {outcome.summary()}"
            return DeliveryResult(planned, outcome.state, summary)
        now = self._clock()
        if outcome.state is DeliveryState.FAILED:
            # The channel is down: its other deliveries do not try before its next retry.
            pause = schedule.initial if schedule is not None else 0.0
            down.setdefault(planned.channel, now + timedelta(seconds=pause))
        summary = f"channel {planned.channel} ({channel.type}): " + _gave_up(context, outcome, now)
        self._give_up_line(planned, summary)
        self._store.deliveries.finish(planned.id, outcome.state, summary)
        return DeliveryResult(planned, outcome.state, summary)

    def _wait_for_retry(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        schedule: Schedule,
        *,
        outcome: DeliveryOutcome,
        down: Down,
    ) -> DeliveryResult:
        """Makes a delivery whose tries failed wait for its next retry; the channel is down."""
        now = self._clock()
        since = context.waiting_since or now
        retry_at = schedule.next_attempt(since, now, outcome.last.retry_after)
        down[planned.channel] = min(retry_at, down.get(planned.channel, retry_at))
        if self._sweeping:
            RETRIES.labels(planned.channel, DeliveryState.WAITING.value).inc()
        log.warning(
            "%s of %s to channel %s failed (%s); next try at %s UTC",
            planned.kind.value,
            planned.dedupe_key,
            planned.channel,
            outcome.last.describe(),
            f"{retry_at:%Y-%m-%d %H:%M:%S}",
        )
        why = f"channel {planned.channel} ({channel.type}): {outcome.attempts} attempt(s)"
        return self._defer(planned, retry_at, since, f"{why}, last: {outcome.last.describe()}")

    def _give_up_line(self, planned: PlannedDelivery, summary: str) -> None:
        """Logs the one line that says a delivery was given up on (its alert goes to the DLQ)."""
        log.error(
            "gave up on the %s of %s: %s; the alert goes to %s",
            planned.kind.value,
            planned.dedupe_key,
            summary,
            "alerts.dlq",
        )

    def _end(self, planned: PlannedDelivery, state: DeliveryState, why: str) -> DeliveryResult:
        self._store.deliveries.finish(planned.id, state, why)
        DELIVERIES.labels(planned.channel, planned.kind.value, state.value).inc()
        return DeliveryResult(planned, state, why)


@dataclass(frozen=True, eq=False)
class Due:
    """A claimed delivery that is due to be sent now, with its channel and sender."""

    planned: PlannedDelivery
    context: DeliveryContext
    config: ChannelConfig
    sender: Sender

    @property
    def channel(self) -> str:
        """The channel's name."""
        return self.planned.channel


def split_batch(
    planned: Sequence[PlannedDelivery],
) -> tuple[list[PlannedDelivery], list[list[PlannedDelivery]]]:
    """Splits a batch into deliveries alone on their channel for their dedupe key, and groups.

    A group is a dedupe key with two or more deliveries to one channel (a firing and its
    resolve): they depend on each other, so its deliveries run one by one, in order.
    """
    counts = Counter((d.dedupe_key, d.channel) for d in planned)
    singles = [d for d in planned if counts[(d.dedupe_key, d.channel)] == 1]
    groups: dict[str, list[PlannedDelivery]] = {}
    for delivery in planned:
        if counts[(delivery.dedupe_key, delivery.channel)] > 1:
            groups.setdefault(delivery.dedupe_key, []).append(delivery)
    return singles, list(groups.values())


def _gather(
    futures: Sequence[Future[list[DeliveryResult]]],
) -> tuple[list[DeliveryResult], Exception | None]:
    """Waits for every future; returns their results and the first outage raised."""
    results: list[DeliveryResult] = []
    outage: Exception | None = None
    for future in futures:
        try:
            results.extend(future.result())
        except Exception as error:  # noqa: BLE001 - wait for every one, then re-raise
            outage = outage or error
    return results, outage


def _gave_up(context: DeliveryContext, outcome: DeliveryOutcome, now: datetime) -> str:
    """Describes why a delivery ended unsent, with how long it was retried if it waited."""
    if outcome.state is not DeliveryState.FAILED or context.waiting_since is None:
        return outcome.summary()
    return (
        f"gave up after {outcome.attempts} attempt(s) over {_age(context.waiting_since, now)}, "
        f"last: {outcome.last.describe()}"
    )


def _age(since: datetime, now: datetime) -> str:
    """Returns a duration like 45s, 12m or 6h05m."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

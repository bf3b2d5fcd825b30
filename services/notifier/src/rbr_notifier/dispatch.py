"""Sending planned deliveries: rules, throttle, retries, in parallel across alerts and channels.

Deliveries of one dedupe key run in order (a trigger before its resolve); different dedupe
keys run side by side on a bounded thread pool, so one slow or failing channel holds up only
its own deliveries. Each delivery is first claimed in the database (state sending, renewed at
every try): a replica that gets the same alert after a rebalance (the first one took longer
than max.poll.interval.ms) waits for that claim to end instead of sending a second time, and
takes the delivery over once the claim is stale (the first replica died).

A delivery gets the channel's `max_attempts` tries in a row. If they all fail, it waits (state
waiting) for the retry sweeper, on the channel's retry schedule (see `retry_schedule`), and
its alert's offset can be committed: a channel down for hours holds up nothing else. Once a
channel failed, its other deliveries wait for its next retry without trying (in this batch,
and in later ones until that retry). A delivery behind an earlier unfinished one of the same
dedupe key on the same channel waits behind it, so a resolve never overtakes its firing. The
retry sweeper runs its deliveries through a `Dispatcher` too (`retry_sweep=True`: one try per
turn), and gives up on one when its schedule ran out. Before sending, each delivery is checked
against what is true now:

* a trigger goes out only while its alert is firing: not acknowledged, and not resolved before
  it was first tried (a firing the channel could not take yet is still owed to it: once the
  channel is back, the firing goes out, then its resolve);
* a resolve goes out only to a channel that was notified of the firing (directly or in a
  digest), after the firing; if the firing is still waiting in a digest, the resolve joins it;
* on PagerDuty and Opsgenie, a resolve whose firing went out only in a digest is not sent on
  its own (it would address an incident that was never opened): once every alert of that
  digest resolved, the digest's own resolve is sent instead (see `closing`);
* the channel's throttle counts a trigger, or folds it into the window's digest; a resolve is
  never throttled (it joins a digest only when its firing waits in that same digest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rbr_notifier.closing import DIGEST_LOCKS, send_digest_resolve
from rbr_notifier.config import ChannelConfig, ChannelsFile, Throttle
from rbr_notifier.delivery import (
    END_STATES,
    AttemptStatus,
    DeliveryOutcome,
    Interrupted,
    RetryPolicy,
    deliver,
)
from rbr_notifier.metrics import DELIVERIES, RETRIES
from rbr_notifier.model import (
    NOTIFIED_STATES,
    AlertState,
    DeliveryState,
    Kind,
    Notification,
    digest_key,
)
from rbr_notifier.repository import DeliveryContext, NotifierStore, PlannedDelivery
from rbr_notifier.retry_schedule import Schedule, schedule_of
from rbr_notifier.senders.base import AttemptResult, Sender
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.errors import TransientError
from rbr_runtime.jsonlog import log_context
from rbr_runtime.schedule import worker_identity
from rbr_schemas import utcnow

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Down = dict[str, datetime]
"""Channels that failed, with when their next retry is due: their deliveries wait for it."""
UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.WAITING)


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


def window_of(moment: datetime, window: float) -> tuple[datetime, datetime]:
    """Returns the fixed throttle window (aligned to the epoch) containing a moment."""
    start = datetime.fromtimestamp((moment.timestamp() // window) * window, moment.tzinfo)
    return start, start + timedelta(seconds=window)


def claim_lease(settings: NotifierSettings, channels: ChannelsFile) -> timedelta:
    """Returns how long a delivery's claim holds without renewal.

    Past it, another replica may take the delivery over. It is well above the longest time
    between two renewals (one try, then the longest pause) of any channel.
    """
    timeouts = [c.timeout or settings.notifier_timeout for c in channels.channels]
    longest_try = max([settings.notifier_timeout, *timeouts])
    longest_pause = max(settings.notifier_retry_max_backoff, settings.notifier_retry_after_max)
    return timedelta(seconds=2 * (longest_try + longest_pause) + 60)


def longest_delivery(channel: ChannelConfig, settings: NotifierSettings) -> float:
    """Returns the most seconds one notification to a channel may take, every try failing."""
    policy = policy_of(channel, settings)
    longest_try = channel.timeout or settings.notifier_timeout
    longest_pause = max(policy.max_backoff, policy.retry_after_max)
    return policy.max_attempts * longest_try + (policy.max_attempts - 1) * longest_pause


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
    ) -> None:
        self._store = store
        self._channels = channels
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
            down = self._store.channels_down(self._clock())
        groups: dict[str, list[PlannedDelivery]] = {}
        for delivery in planned:
            groups.setdefault(delivery.dedupe_key, []).append(delivery)
        futures: list[Future[list[DeliveryResult]]] = [
            self._pool.submit(self._run_group, group, down) for group in groups.values()
        ]
        results: list[DeliveryResult] = []
        outage: BaseException | None = None
        for future in futures:
            try:
                results.extend(future.result())
            except Exception as error:  # noqa: BLE001 - wait for every group, then re-raise
                outage = outage or error
        if outage is not None:
            raise outage
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
            context = self._store.delivery(planned.id)
            if context.state not in UNFINISHED:
                return DeliveryResult(planned, context.state, f"already {context.state}", ran=False)
            if context.scheduled and not self._sweeping:
                # The retry sweeper is in charge of it: the event's offset can be committed.
                return DeliveryResult(planned, DeliveryState.WAITING, "waiting", ran=False)
            if not self._store.claim(planned.id, self._owner, self.lease, due_by=self._clock()):
                if self._sweeping:
                    return DeliveryResult(planned, context.state, "claimed elsewhere", ran=False)
                # Another replica sends it (it had the partition before a rebalance). The
                # runner retries the batch until that delivery ended or its claim went stale.
                raise TransientError(
                    f"{planned.kind.value} of {planned.alert_id} to channel {planned.channel} "
                    "is being sent by another notifier replica"
                )
            return self._decide(planned, context, down)

    def _decide(
        self, planned: PlannedDelivery, context: DeliveryContext, down: Down
    ) -> DeliveryResult:
        """Skips, defers or sends a claimed delivery."""
        channel = self._channels.get(planned.channel)
        sender = self._senders.get(planned.channel)
        if channel is None or sender is None or not channel.enabled:
            return self._end(planned, DeliveryState.SKIPPED, "channel no longer configured")
        skip = _skip_reason(context)
        if skip is not None:
            return self._end(planned, DeliveryState.SKIPPED, skip)
        if context.behind:
            # Due as soon as the earlier one ended (the sweeper takes heads only).
            why = "waits for an earlier notification of the same alert to this channel"
            return self._defer(planned, self._clock(), context.waiting_since, why)
        if planned.channel in down:
            return self._postpone(planned, context, channel, down[planned.channel])
        return self._deliver_due(planned, context, channel, sender, down)

    def _postpone(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        retry_at: datetime,
    ) -> DeliveryResult:
        """Makes a delivery to a channel that just failed wait for its next retry, untried."""
        why = f"channel {planned.channel} ({channel.type}): not tried, "
        schedule, now = schedule_of(channel), self._clock()
        if schedule is None:
            return self._end(
                planned, DeliveryState.FAILED, why + "it gave up on an earlier notification"
            )
        since = context.waiting_since or now
        if schedule.expired(since, now):
            summary = (
                f"channel {planned.channel} ({channel.type}): gave up after {context.attempts} "
                f"attempt(s) over {_age(since, now)}: the channel is still down"
            )
            self._give_up_line(planned, summary)
            return self._end(planned, DeliveryState.FAILED, summary)
        retry_at = min(retry_at, schedule.deadline(since))
        return self._defer(planned, retry_at, since, why + "it failed a moment ago")

    def _defer(
        self,
        planned: PlannedDelivery,
        retry_at: datetime,
        since: datetime | None,
        why: str,
    ) -> DeliveryResult:
        """Makes a claimed delivery wait for the retry sweeper until `retry_at`."""
        detail = f"{why}; next try {retry_at:%Y-%m-%d %H:%M:%S} UTC"
        deferred = self._store.defer(
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

    def _deliver_due(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        sender: Sender,
        down: Down,
    ) -> DeliveryResult:
        """Sends a delivery that is due, unless the throttle folds it or a digest carries it."""
        if _only_in_a_digest(context) and sender.closes_digests:
            return self._close_digest(planned, context, channel, sender, down)
        if not self._counted(context, channel):
            DELIVERIES.labels(planned.channel, planned.kind.value, "throttled").inc()
            return DeliveryResult(planned, DeliveryState.THROTTLED, "folded into digest")
        return self._send(planned, context, channel, sender, down)

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
        with DIGEST_LOCKS.hold((self._owner, planned.channel, context.trigger_window)):
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
        target = self._store.plan_digest_resolve(planned.channel, context.trigger_window)
        if target is None:
            why = f"firing only in digest {key}, resolved with it once all its alerts are"
            return self._end(planned, DeliveryState.DIGESTED, why)
        if target.state not in (DeliveryState.PENDING, DeliveryState.SENDING):
            return self._end(
                planned, DeliveryState.DIGESTED, f"digest {key} resolve {target.state}"
            )
        try:
            outcome = send_digest_resolve(
                self._store,
                target,
                sender,
                self._policy(channel),
                owner=self._owner,
                lease=self.lease,
                stop=self.stop_event,
                wait=self._wait,
            )
        except Interrupted:
            self._store.release(planned.id, self._owner)
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

    def _counted(self, context: DeliveryContext, channel: ChannelConfig) -> bool:
        """Applies the throttle; False when the delivery was folded into a digest."""
        if context.kind is Kind.RESOLVE and context.trigger_state is DeliveryState.THROTTLED:
            # The firing waits in a digest: the resolve joins it there.
            assert context.trigger_window is not None
            self._store.fold(context.id, context.channel, context.trigger_window)
            return False
        if context.kind is Kind.RESOLVE:
            # The channel heard the firing on its own: the resolve must follow it on its own.
            # Folded into a digest it would never close the PagerDuty incident or Opsgenie
            # alert. The throttle is for floods of firings; resolves are never held back.
            return True
        throttle = throttle_of(channel, self._settings)
        if throttle is None or context.window_start is not None:
            return True
        start, end = window_of(self._clock(), throttle.window)
        return self._store.claim_slot(context.id, context.channel, start, end, throttle.max)

    def _send(
        self,
        planned: PlannedDelivery,
        context: DeliveryContext,
        channel: ChannelConfig,
        sender: Sender,
        down: Down,
    ) -> DeliveryResult:
        notification = Notification(planned.kind, planned.channel, alert=context.alert)
        schedule = schedule_of(channel)
        # Decided at the last try: may the delivery wait for a retry, or is it given up on?
        waits: list[bool] = []

        def record(attempt: int, status: str, result: AttemptResult) -> None:
            if status == AttemptStatus.FAILED:
                waits.append(_may_wait(schedule, context, self._clock()))
                status = AttemptStatus.RETRYING if waits[-1] else status
            self._store.record_attempt(
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
                self._policy(channel),
                record,
                stop=self.stop_event,
                first_attempt=context.attempts + 1,
                wait=self._wait,
            )
        except Interrupted:
            # Stopping between two tries: give the delivery back, so whichever replica gets
            # the alert next sends it at once instead of waiting for the claim to go stale.
            self._store.release(planned.id, self._owner)
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
        self._store.finish(planned.id, outcome.state, summary)
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
        self._store.finish(planned.id, state, why)
        DELIVERIES.labels(planned.channel, planned.kind.value, state.value).inc()
        return DeliveryResult(planned, state, why)


def _may_wait(schedule: Schedule | None, context: DeliveryContext, now: datetime) -> bool:
    """Tells whether a delivery whose last try failed may still wait for a retry."""
    return schedule is not None and not schedule.expired(context.waiting_since, now)


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


def _only_in_a_digest(context: DeliveryContext) -> bool:
    """Tells whether this is a resolve whose firing reached the channel only in a digest."""
    return context.kind is Kind.RESOLVE and context.trigger_state is DeliveryState.DIGESTED


def _skip_reason(context: DeliveryContext) -> str | None:
    if context.kind is not Kind.TRIGGER:
        return _resolve_skip_reason(context)
    if context.alert.state is AlertState.ACKNOWLEDGED or context.alert.acknowledged_at:
        return "alert acknowledged before it was sent"
    if context.alert.state is AlertState.RESOLVED and not context.scheduled:
        # Resolved before the channel was ever tried (the notifier was down through the whole
        # incident): nothing to tell. A firing the channel failed to take is still owed to it.
        return "alert resolved before it was sent"
    return None


def _resolve_skip_reason(context: DeliveryContext) -> str | None:
    if context.trigger_state in UNFINISHED:
        return None  # it waits behind its firing
    if context.trigger_state in (DeliveryState.FAILED, DeliveryState.REJECTED):
        return "the firing could not be delivered to the channel, so no resolve either"
    if context.trigger_state not in NOTIFIED_STATES:
        return "channel was not notified of the firing"
    return None

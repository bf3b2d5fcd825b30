"""The notifier's lifecycle rules, as pure functions over plain values.

What a firing, a resolve, an acknowledgement or a replay does to an alert occurrence and to
each channel's delivery is decided here, without a database, so the rules can be tested
alone; `store` loads the rows and writes what these decide, `dispatch` carries it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

from rbr_notifier.model import AlertState, AlertView, DeliveryState, Kind
from rbr_notifier.retry_schedule import Schedule
from rbr_schemas import Alert, AlertType
from rbr_schemas import AlertState as EventState

OPEN_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)
"""An occurrence in these states is open: firings of its dedupe key are repeats of it."""

UNFINISHED_STATES = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.WAITING)
"""Not ended yet: to do, being sent (maybe by a replica that lost the partition), or waiting."""

RETRYABLE_STATES = (DeliveryState.FAILED, DeliveryState.REJECTED)
"""Given up on: a replay of the alert from the DLQ tries these again."""

NOTIFIED_STATES = (DeliveryState.SENT, DeliveryState.DIGESTED, DeliveryState.THROTTLED)
"""A trigger in one of these reached the channel, or will in a digest."""

RESOLVABLE_TRIGGER_STATES = UNFINISHED_STATES + NOTIFIED_STATES
"""A resolve is planned for a channel whose trigger is in one of these (it waits behind it)."""

ONE_SHOT_TYPES = frozenset({AlertType.DAILY_SUMMARY.value, AlertType.TEST.value})
"""Alerts that report rather than track a condition (the daily summary, a channel test):
nothing ever resolves them."""


# -- alert occurrences -------------------------------------------------------------------------


class Outcome(StrEnum):
    """What an alert event meant for the alert history."""

    NEW = "new"
    REPEAT = "repeat"
    REPLAY = "replay"
    RESOLVE = "resolve"
    RESOLVE_UNKNOWN = "resolve-unknown"


@dataclass(frozen=True)
class Occurrence:
    """What the rules need of one occurrence of an alert (a row of `alerts`)."""

    alert_id: str
    state: AlertState
    fired_at: datetime
    last_seen_at: datetime | None = None
    last_event_id: str | None = None

    @property
    def last_seen(self) -> datetime:
        """Returns when it last fired (rows written by others may leave `last_seen_at` NULL)."""
        return self.last_seen_at or self.fired_at


@dataclass(frozen=True)
class Repeat:
    """One more firing to count on an open occurrence."""

    alert_id: str
    last_seen_at: datetime
    event_id: str


@dataclass(frozen=True)
class Firing:
    """What a firing event does: its outcome and the occurrences it touches.

    `owned` are the occurrences whose trigger deliveries the event is responsible for (a new
    occurrence's plan, or an open one's unfinished deliveries); `superseded` the open
    occurrences gone stale, closed without a resolve.
    """

    outcome: Outcome
    owned: tuple[str, ...] = ()
    repeat: Repeat | None = None
    superseded: tuple[Occurrence, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """What a resolve event does: the occurrences it closes, and those whose resolves it owns."""

    outcome: Outcome
    closes: tuple[str, ...] = ()
    owned: tuple[str, ...] = ()


def on_firing(
    alert_id: str,
    event_id: str,
    occurred_at: datetime,
    *,
    same_id: Occurrence | None,
    open_occurrences: Sequence[Occurrence],
    reopen_after: float,
) -> Firing:
    """Decides what a firing event does to the alert history.

    Args:
        alert_id: the event's alert id.
        event_id: the event's id (as stored).
        occurred_at: when it fired.
        same_id: the occurrence with that alert id, if any.
        open_occurrences: the open occurrences of its dedupe key.
        reopen_after: seconds after which an open occurrence that has not fired is stale and
            a new alert id starts a new occurrence; 0: never.
    """
    if same_id is not None:
        if same_id.state is AlertState.RESOLVED:
            return Firing(Outcome.REPLAY)  # a late copy of an occurrence that has ended
        return Firing(
            Outcome.REPEAT, (same_id.alert_id,), count_repeat(same_id, event_id, occurred_at)
        )
    newest_first = sorted(open_occurrences, key=lambda o: o.last_seen, reverse=True)
    horizon = occurred_at - timedelta(seconds=reopen_after)
    current = [o for o in newest_first if reopen_after <= 0 or o.last_seen > horizon]
    if current:
        target = current[0]
        return Firing(
            Outcome.REPEAT, (target.alert_id,), count_repeat(target, event_id, occurred_at)
        )
    return Firing(Outcome.NEW, (alert_id,), superseded=tuple(newest_first))


def count_repeat(occurrence: Occurrence, event_id: str, occurred_at: datetime) -> Repeat | None:
    """Returns the repeat a firing adds to an open occurrence; None for the same event again."""
    if occurrence.last_event_id == event_id:
        return None
    return Repeat(occurrence.alert_id, max(occurrence.last_seen, occurred_at), event_id)


def on_resolve(targets: Sequence[Occurrence]) -> Resolution:
    """Decides what a resolve event does.

    Args:
        targets: the occurrence with the event's alert id and every open occurrence of its
            dedupe key. None: an alert never seen, recorded as resolved, notifying nobody.
    """
    if not targets:
        return Resolution(Outcome.RESOLVE_UNKNOWN)
    return Resolution(
        Outcome.RESOLVE,
        closes=tuple(t.alert_id for t in targets if t.state is not AlertState.RESOLVED),
        owned=tuple(t.alert_id for t in targets),
    )


def resolve_channels(triggers: Iterable[tuple[str, DeliveryState]]) -> list[str]:
    """Returns the channels a resolve goes to, from each channel's trigger state.

    Those the firing reached or will reach (directly or in a digest): not those whose trigger
    was skipped, or given up on (a replay of the firing from the DLQ is still owed first).
    """
    return [channel for channel, state in triggers if state in RESOLVABLE_TRIGGER_STATES]


def is_one_shot(alert: Alert) -> bool:
    """Tells whether an event is the firing of a one-shot alert (the daily summary).

    Once every channel was served, its occurrence is closed without a resolve: a resolve
    means "the condition ended", and a summary never began one.
    """
    return alert.state is EventState.FIRING and alert.type in ONE_SHOT_TYPES


# -- deliveries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryContext:
    """A delivery with what deciding and sending it needs."""

    id: int
    channel: str
    kind: Kind
    state: DeliveryState
    attempts: int
    window_start: datetime | None
    alert: AlertView
    trigger_state: DeliveryState | None
    trigger_window: datetime | None
    next_attempt_at: datetime | None = None
    waiting_since: datetime | None = None
    detail: str | None = None
    behind: bool = False
    """An earlier delivery of the same dedupe key to the same channel has not ended."""

    @property
    def scheduled(self) -> bool:
        """Tells whether the retry sweeper is in charge of it (it waited at least once)."""
        return self.next_attempt_at is not None


class Turn(StrEnum):
    """Who handles a delivery a run meets."""

    ENDED = "ended"  # nobody: it ended already
    SWEEPER = "sweeper"  # the retry sweeper (the consumer leaves it: its offset may commit)
    THIS_RUN = "this run"


def turn_of(context: DeliveryContext, *, retry_sweep: bool) -> Turn:
    """Returns who handles a delivery: this run (consumer or retry sweep), or nobody now."""
    if context.state not in UNFINISHED_STATES:
        return Turn.ENDED
    if context.scheduled and not retry_sweep:
        return Turn.SWEEPER
    return Turn.THIS_RUN


class Step(StrEnum):
    """What is done with a claimed delivery."""

    SKIP = "skip"  # ended unsent, for the decision's reason
    WAIT_BEHIND = "wait behind"  # an earlier one of its dedupe key to its channel has not ended
    POSTPONE = "postpone"  # its channel failed a moment ago: wait for its next retry, untried
    CLOSE_DIGEST = "close digest"  # its firing went out only in a digest that opened an incident
    JOIN_DIGEST = "join digest"  # a resolve whose firing waits in a digest joins it there
    COUNT = "count"  # a trigger the throttle counts in the current window, or folds
    SEND = "send"


@dataclass(frozen=True)
class Decision:
    """The step for a claimed delivery, with why when it is skipped."""

    step: Step
    reason: str = ""


def decide(
    context: DeliveryContext,
    *,
    configured: bool,
    channel_down: bool,
    closes_digests: bool,
    throttled: bool,
) -> Decision:
    """Decides what to do with a claimed delivery, by what is true now.

    Args:
        context: the delivery, its alert and (for a resolve) its trigger.
        configured: its channel is configured and enabled.
        channel_down: its channel failed and its next retry is not due yet.
        closes_digests: its channel resolves the incident a digest opened (PagerDuty, Opsgenie).
        throttled: its channel has a throttle.
    """
    if not configured:
        return Decision(Step.SKIP, "channel no longer configured")
    reason = skip_reason(context)
    if reason is not None:
        return Decision(Step.SKIP, reason)
    if context.behind:
        return Decision(
            Step.WAIT_BEHIND, "waits for an earlier notification of the same alert to this channel"
        )
    if channel_down:
        return Decision(Step.POSTPONE)
    return Decision(_due_step(context, closes_digests, throttled))


def _due_step(context: DeliveryContext, closes_digests: bool, throttled: bool) -> Step:
    if context.kind is Kind.RESOLVE:
        return _resolve_step(context.trigger_state, closes_digests)
    if not throttled or context.window_start is not None:
        return Step.SEND  # no throttle, or counted already (by a try before this one)
    return Step.COUNT


def _resolve_step(trigger: DeliveryState | None, closes_digests: bool) -> Step:
    if trigger is DeliveryState.DIGESTED and closes_digests:
        # Sent on its own it would address an incident that was never opened.
        return Step.CLOSE_DIGEST
    if trigger is DeliveryState.THROTTLED:
        return Step.JOIN_DIGEST
    # The channel heard the firing: the resolve follows it at once, never throttled (folded
    # into a digest it would never close the PagerDuty incident or Opsgenie alert).
    return Step.SEND


def skip_reason(context: DeliveryContext) -> str | None:
    """Returns why a delivery is not to be sent any more, or None if it still is."""
    if context.kind is not Kind.TRIGGER:
        return _resolve_skip_reason(context.trigger_state)
    if context.alert.state is AlertState.ACKNOWLEDGED or context.alert.acknowledged_at:
        return "alert acknowledged before it was sent"
    if context.alert.state is AlertState.RESOLVED and not context.scheduled:
        # Resolved before the channel was ever tried (the notifier was down through the whole
        # incident): nothing to tell. A firing the channel failed to take is still owed to it.
        return "alert resolved before it was sent"
    return None


def _resolve_skip_reason(trigger: DeliveryState | None) -> str | None:
    if trigger in UNFINISHED_STATES:
        return None  # it waits behind its firing
    if trigger in RETRYABLE_STATES:
        return "the firing could not be delivered to the channel, so no resolve either"
    if trigger not in NOTIFIED_STATES:
        return "channel was not notified of the firing"
    return None


def window_of(moment: datetime, window: float) -> tuple[datetime, datetime]:
    """Returns the fixed throttle window (aligned to the epoch) containing a moment."""
    start = datetime.fromtimestamp((moment.timestamp() // window) * window, moment.tzinfo)
    return start, start + timedelta(seconds=window)


# -- the retry schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class Postponement:
    """What a delivery to a channel that just failed does instead of trying.

    It waits from `since` until `retry_at`, or, when `retry_at` is None, is given up on: its
    schedule ran out (`expired`), or its channel has none.
    """

    since: datetime
    retry_at: datetime | None = None
    expired: bool = False


def postpone(
    schedule: Schedule | None,
    waiting_since: datetime | None,
    now: datetime,
    channel_retry_at: datetime,
) -> Postponement:
    """Decides how long a delivery waits for its channel's next retry (`channel_retry_at`)."""
    since = waiting_since or now
    if schedule is None:
        return Postponement(since)
    if schedule.expired(since, now):
        return Postponement(since, expired=True)
    return Postponement(since, min(channel_retry_at, schedule.deadline(since)))


def may_wait(schedule: Schedule | None, waiting_since: datetime | None, now: datetime) -> bool:
    """Tells whether a delivery whose last try failed may still wait for a retry."""
    return schedule is not None and not schedule.expired(waiting_since, now)


class OnChannel(Protocol):
    """Anything addressed to a channel."""

    @property
    def channel(self) -> str:
        """The channel's name."""
        ...


Addressed = TypeVar("Addressed", bound=OnChannel)


def first_per_channel(due: Sequence[Addressed]) -> tuple[list[Addressed], list[Addressed]]:
    """Splits due retries into the first of each channel and the others, keeping their order.

    The first ones are tried before the others: if a channel is still down, its others wait
    for its next retry without each trying.
    """
    firsts: dict[str, Addressed] = {}
    for delivery in due:
        firsts.setdefault(delivery.channel, delivery)
    return list(firsts.values()), [d for d in due if firsts[d.channel] is not d]


# -- digests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldedItem:
    """A throttled delivery waiting in a window's digest."""

    delivery_id: int
    kind: Kind
    alert: AlertView


@dataclass(frozen=True)
class DigestContents:
    """How a window's folded deliveries end when its digest is sent.

    `acknowledged` are skipped, `late` (resolves whose firing went out in an earlier digest of
    the window, on a channel that resolves digests) are digested with that digest's resolve,
    `carried` go out in the digest.
    """

    acknowledged: tuple[FoldedItem, ...]
    late: tuple[FoldedItem, ...]
    carried: tuple[FoldedItem, ...]


def digest_contents(items: Sequence[FoldedItem], *, closes_digests: bool) -> DigestContents:
    """Sorts a window's folded deliveries by how they end when its digest is sent."""
    acknowledged = [
        i for i in items if i.kind is Kind.TRIGGER and i.alert.state is AlertState.ACKNOWLEDGED
    ]
    rest = [i for i in items if i not in acknowledged]
    late = _late_resolves(rest) if closes_digests else []
    carried = [i for i in rest if i not in late]
    return DigestContents(tuple(acknowledged), tuple(late), tuple(carried))


def _late_resolves(items: Sequence[FoldedItem]) -> list[FoldedItem]:
    """Returns the resolves whose firing is not in this digest (it went out in an earlier one).

    On PagerDuty and Opsgenie, sent in a digest they would re-open that digest's incident.
    """
    firing = {i.alert.alert_id for i in items if i.kind is Kind.TRIGGER}
    return [i for i in items if i.kind is Kind.RESOLVE and i.alert.alert_id not in firing]


def digest_resolvable(carried: Iterable[AlertState]) -> bool:
    """Tells whether a digest's own resolve is due: it carried alerts and all have resolved."""
    states = list(carried)
    return bool(states) and all(state is AlertState.RESOLVED for state in states)


def digested_state(sent: DeliveryState) -> DeliveryState:
    """Returns the state of the deliveries a digest carried, from how the digest ended."""
    return DeliveryState.DIGESTED if sent is DeliveryState.SENT else sent

"""The notifier's tables: alert history, the delivery plan, throttle windows, attempts.

Everything the notifier decides is written here before anything is sent: an alert event
becomes (or updates) a row in `alerts` and, in the same transaction, one `notifier_deliveries`
row per channel that must hear about it. Sending then moves each delivery to its end state and
appends every try to `notifications`. So a crash at any point loses nothing, and handling the
same event again finds the plan already made and the deliveries already done.

Works on MariaDB/MySQL and SQLite (Core SQL only).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from rbr_notifier import lifecycle
from rbr_notifier.lifecycle import (
    DeliveryContext,
    FoldedItem,
    Occurrence,
    Outcome,
    Repeat,
    digest_resolvable,
    on_firing,
    on_resolve,
    resolve_channels,
)
from rbr_notifier.model import (
    DIGEST_KEY_PREFIX,
    AlertState,
    AlertView,
    DeliveryState,
    Kind,
    digest_key,
)
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import (
    alerts,
    notifications,
    notifier_deliveries,
    notifier_delivery_events,
    notifier_windows,
)
from rbr_runtime.kafka.consumer import Record
from rbr_schemas import Alert, Severity, utcnow
from rbr_schemas import AlertState as EventState

OPEN_STATES = tuple(state.value for state in lifecycle.OPEN_STATES)
RETRYABLE_STATES = tuple(state.value for state in lifecycle.RETRYABLE_STATES)
UNFINISHED_STATES = tuple(state.value for state in lifecycle.UNFINISHED_STATES)
ONE_SHOT_TYPES = tuple(lifecycle.ONE_SHOT_TYPES)
MAX_ID_CHARS = 64
MAX_DETAIL_CHARS = 500


@dataclass(frozen=True)
class AlertEvent:
    """One alert event from the topic, with what identifies the message."""

    event_id: str
    alert: Alert


@dataclass(frozen=True)
class PlannedDelivery:
    """A delivery an event is responsible for, still to be attempted.

    `message` is the alerts message responsible for it, kept with the delivery if it has to
    wait for the retry sweeper (to dead-letter if its retry schedule runs out).
    """

    id: int
    alert_id: str
    dedupe_key: str
    channel: str
    kind: Kind
    message: Record | None = None


@dataclass(frozen=True)
class DueWindow:
    """A throttle window that ended with folded notifications not yet sent as a digest."""

    channel: str
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class GivenUp:
    """A delivery given up on, with the alerts message to dead-letter for it."""

    delivery_id: int
    channel: str
    reason: str
    message: Record


@dataclass(frozen=True)
class DigestResolve:
    """The resolve of a digest on a channel that opened an incident for it.

    A `notifier_deliveries` row (kind resolve, alert_id the digest's key, window_start its
    window), so it is claimed, retried and recorded like any delivery, and planned once.
    """

    id: int
    channel: str
    window_start: datetime
    window_end: datetime
    state: DeliveryState
    attempts: int
    total: int


Router = Callable[[Alert], list[str]]
"""Returns the names of the channels an alert's trigger goes to (the filters)."""


def alert_view(row: Row[Any] | Any) -> AlertView:
    """Builds an AlertView from an `alerts` row."""
    return AlertView(
        alert_id=row.alert_id,
        dedupe_key=row.dedupe_key,
        type=row.type,
        severity=Severity(row.severity),
        state=AlertState(row.state),
        title=row.title,
        detail=row.detail,
        source=row.source,
        fired_at=row.fired_at,
        bucket=row.bucket,
        resolved_at=row.resolved_at,
        context=dict(row.context or {}),
        acknowledged_at=row.acknowledged_at,
    )


class NotifierStore:
    """Reads and writes the notifier's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- recording events (phase 1) ------------------------------------------------------------

    def record_events(
        self,
        events: Sequence[AlertEvent],
        route: Router,
        *,
        reopen_after: float,
    ) -> list[tuple[str, list[PlannedDelivery]]]:
        """Records a batch of alert events in one transaction and plans their deliveries.

        Returns, per event, what it meant (new, repeat, replay, resolve, resolve-unknown) and
        the deliveries it is responsible for that still have to be attempted: the ones it
        planned, and ones that failed before (a replay from the DLQ retries them).
        """
        results = []
        with self.engine.begin() as connection:
            for event in events:
                if event.alert.state is EventState.FIRING:
                    outcome, owned = self._record_firing(connection, event, route, reopen_after)
                    kind = Kind.TRIGGER
                else:
                    outcome, owned = self._record_resolved(connection, event)
                    kind = Kind.RESOLVE
                results.append((outcome, self._claim_owned(connection, owned, kind)))
        return results

    def _record_firing(
        self, connection: Connection, event: AlertEvent, route: Router, reopen_after: float
    ) -> tuple[str, list[str]]:
        alert, now = event.alert, utcnow()
        same_id = connection.execute(
            select(alerts).where(alerts.c.alert_id == alert.alert_id)
        ).one_or_none()
        open_rows: Sequence[Row[Any]] = []
        if same_id is None:
            open_rows = connection.execute(
                select(alerts).where(
                    alerts.c.dedupe_key == alert.dedupe_key, alerts.c.state.in_(OPEN_STATES)
                )
            ).all()
        firing = on_firing(
            alert.alert_id,
            _stored_id(event.event_id),
            alert.occurred_at,
            same_id=occurrence(same_id) if same_id is not None else None,
            open_occurrences=[occurrence(row) for row in open_rows],
            reopen_after=reopen_after,
        )
        if firing.repeat is not None:
            _count_repeat(connection, firing.repeat, now)
        for stale in firing.superseded:
            connection.execute(
                update(alerts)
                .where(alerts.c.alert_id == stale.alert_id)
                .values(
                    state=AlertState.RESOLVED.value,
                    resolved_at=stale.last_seen,
                    resolved_by="superseded",
                    updated_at=now,
                )
            )
        if firing.outcome is Outcome.NEW:
            connection.execute(insert_ignore(connection, alerts).values(**_alert_row(event, now)))
            _plan(connection, alert.alert_id, route(alert), Kind.TRIGGER, now)
        return firing.outcome, list(firing.owned)

    def _record_resolved(self, connection: Connection, event: AlertEvent) -> tuple[str, list[str]]:
        alert, now = event.alert, utcnow()
        targets = connection.execute(
            select(alerts).where(
                or_(
                    alerts.c.alert_id == alert.alert_id,
                    and_(
                        alerts.c.dedupe_key == alert.dedupe_key,
                        alerts.c.state.in_(OPEN_STATES),
                    ),
                )
            )
        ).all()
        resolution = on_resolve([occurrence(row) for row in targets])
        if resolution.outcome is Outcome.RESOLVE_UNKNOWN:
            connection.execute(
                insert_ignore(connection, alerts).values(
                    {
                        **_alert_row(event, now),
                        "state": AlertState.RESOLVED.value,
                        "resolved_at": alert.occurred_at,
                        "resolved_by": "event",
                    }
                )
            )
        for alert_id in resolution.owned:
            if alert_id in resolution.closes:
                connection.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == alert_id)
                    .values(
                        state=AlertState.RESOLVED.value,
                        resolved_at=alert.occurred_at,
                        resolved_by="event",
                        last_event_id=_stored_id(event.event_id),
                        updated_at=now,
                    )
                )
            self._plan_resolves(connection, alert_id, now)
        return resolution.outcome, list(resolution.owned)

    def _plan_resolves(self, connection: Connection, alert_id: str, now: datetime) -> None:
        triggers = connection.execute(
            select(notifier_deliveries.c.channel, notifier_deliveries.c.state).where(
                notifier_deliveries.c.alert_id == alert_id,
                notifier_deliveries.c.kind == Kind.TRIGGER.value,
            )
        ).all()
        channels = resolve_channels((r.channel, DeliveryState(r.state)) for r in triggers)
        _plan(connection, alert_id, channels, Kind.RESOLVE, now)

    def _claim_owned(
        self, connection: Connection, alert_ids: list[str], kind: Kind
    ) -> list[PlannedDelivery]:
        """Returns the event's unfinished deliveries; failed ones are made pending again.

        A delivery another replica is sending is returned too: the event's offset must not be
        committed before it ended, and if that replica died, this one takes it over.
        """
        if not alert_ids:
            return []
        scope = and_(
            notifier_deliveries.c.alert_id.in_(alert_ids),
            notifier_deliveries.c.kind == kind.value,
        )
        # A replay from the DLQ: a fresh set of tries, then a fresh retry schedule.
        connection.execute(
            update(notifier_deliveries)
            .where(scope, notifier_deliveries.c.state.in_(RETRYABLE_STATES))
            .values(
                state=DeliveryState.PENDING.value,
                next_attempt_at=None,
                waiting_since=None,
                updated_at=utcnow(),
            )
        )
        rows = connection.execute(
            select(
                notifier_deliveries.c.id,
                notifier_deliveries.c.alert_id,
                notifier_deliveries.c.channel,
                alerts.c.dedupe_key,
            )
            .join(alerts, alerts.c.alert_id == notifier_deliveries.c.alert_id)
            .where(scope, notifier_deliveries.c.state.in_(UNFINISHED_STATES))
            .order_by(notifier_deliveries.c.id)
        ).all()
        return [PlannedDelivery(r.id, r.alert_id, r.dedupe_key, r.channel, kind) for r in rows]

    def close_one_shot(self, dedupe_keys: Iterable[str]) -> int:
        """Closes the open occurrences of one-shot alerts (the daily summary); returns how many.

        No resolve is planned: a resolve means "the condition ended", and a summary never
        began one (PagerDuty and Opsgenie would get a resolve for nothing).
        """
        keys = sorted(set(dedupe_keys))
        if not keys:
            return 0
        now = utcnow()
        # Not while a channel still waits for it or gave up on it: left open, it is still sent
        # when its retry comes, and a replay of it from alerts.dlq still reaches that channel.
        unserved = (
            select(notifier_deliveries.c.id)
            .where(
                notifier_deliveries.c.alert_id == alerts.c.alert_id,
                notifier_deliveries.c.state.in_(UNFINISHED_STATES + RETRYABLE_STATES),
            )
            .exists()
        )
        with self.engine.begin() as connection:
            closed: int = connection.execute(
                update(alerts)
                .where(
                    alerts.c.dedupe_key.in_(keys),
                    alerts.c.type.in_(ONE_SHOT_TYPES),
                    alerts.c.state.in_(OPEN_STATES),
                    ~unserved,
                )
                .values(
                    state=AlertState.RESOLVED.value,
                    resolved_at=now,
                    resolved_by="one-shot",
                    updated_at=now,
                )
            ).rowcount
        return closed

    # -- deliveries (phase 2) ------------------------------------------------------------------

    def delivery(self, delivery_id: int) -> DeliveryContext:
        """Loads a delivery, its alert and (for a resolve) its trigger's state."""
        with self.engine.connect() as connection:
            plan = notifier_deliveries.c
            row = connection.execute(
                select(
                    plan.channel,
                    plan.kind,
                    plan.state.label("delivery_state"),
                    plan.attempts,
                    plan.window_start,
                    plan.next_attempt_at,
                    plan.waiting_since,
                    plan.detail.label("delivery_detail"),
                    alerts,
                )
                .join(alerts, alerts.c.alert_id == plan.alert_id)
                .where(plan.id == delivery_id)
            ).one()
            behind = connection.execute(
                select(_earlier_unfinished(delivery_id, row.channel, row.dedupe_key))
            ).scalar_one()
            trigger = None
            if row.kind == Kind.RESOLVE:
                trigger = connection.execute(
                    select(notifier_deliveries.c.state, notifier_deliveries.c.window_start).where(
                        notifier_deliveries.c.alert_id == row.alert_id,
                        notifier_deliveries.c.channel == row.channel,
                        notifier_deliveries.c.kind == Kind.TRIGGER.value,
                    )
                ).one_or_none()
        return DeliveryContext(
            id=delivery_id,
            channel=row.channel,
            kind=Kind(row.kind),
            state=DeliveryState(row.delivery_state),
            attempts=row.attempts,
            window_start=row.window_start,
            alert=alert_view(row),
            trigger_state=DeliveryState(trigger.state) if trigger else None,
            trigger_window=trigger.window_start if trigger else None,
            next_attempt_at=row.next_attempt_at,
            waiting_since=row.waiting_since,
            detail=row.delivery_detail,
            behind=bool(behind),
        )

    def claim(
        self, delivery_id: int, owner: str, lease: timedelta, *, due_by: datetime | None = None
    ) -> bool:
        """Claims an unfinished delivery for sending (state sending); False if it cannot be.

        It can be claimed when pending, when waiting and its retry is due by `due_by`, when
        this owner already holds it (a batch re-run after an outage), or when its claim was not
        renewed for `lease` (the replica sending it died). Otherwise another replica is sending
        it, or it has just ended.
        """
        now = utcnow()
        plan = notifier_deliveries.c
        due = and_(
            plan.state == DeliveryState.WAITING.value,
            plan.next_attempt_at <= (due_by or now),
        )
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.id == delivery_id,
                    or_(
                        plan.state == DeliveryState.PENDING.value,
                        due,
                        and_(
                            plan.state == DeliveryState.SENDING.value,
                            or_(
                                plan.claimed_by == owner[:255],
                                plan.claimed_at.is_(None),
                                plan.claimed_at < now - lease,
                            ),
                        ),
                    ),
                )
                .values(
                    state=DeliveryState.SENDING.value,
                    claimed_by=owner[:255],
                    claimed_at=now,
                    updated_at=now,
                )
            ).rowcount
        return bool(claimed)

    def release(self, delivery_id: int, owner: str) -> None:
        """Gives a claimed delivery back, e.g. when stopping between two tries.

        It becomes pending again, or waiting if the retry sweeper is in charge of it (its
        alert's offset was committed: nobody else would ever pick a pending one up).
        """
        plan = notifier_deliveries.c
        back = case(
            (plan.next_attempt_at.is_(None), DeliveryState.PENDING.value),
            else_=DeliveryState.WAITING.value,
        )
        with self.engine.begin() as connection:
            connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.id == delivery_id,
                    plan.state == DeliveryState.SENDING.value,
                    plan.claimed_by == owner[:255],
                )
                .values(state=back, claimed_at=None, updated_at=utcnow())
            )

    # -- the retry schedule --------------------------------------------------------------------

    def defer(
        self,
        delivery_id: int,
        owner: str,
        *,
        next_attempt_at: datetime,
        waiting_since: datetime | None,
        detail: str,
        message: Record | None = None,
    ) -> bool:
        """Makes a claimed delivery wait for the retry sweeper; False if the claim was lost.

        With `message` (the alerts message responsible for it), the message is kept in the
        same transaction, unless one is kept already: if the retry schedule runs out, it is
        what goes to alerts.dlq.
        """
        plan = notifier_deliveries.c
        with self.engine.begin() as connection:
            deferred = connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.id == delivery_id,
                    plan.state == DeliveryState.SENDING.value,
                    plan.claimed_by == owner[:255],
                )
                .values(
                    state=DeliveryState.WAITING.value,
                    next_attempt_at=next_attempt_at,
                    waiting_since=waiting_since,
                    claimed_at=None,
                    detail=_short(detail),
                    updated_at=utcnow(),
                )
            ).rowcount
            if deferred and message is not None:
                connection.execute(
                    insert_ignore(connection, notifier_delivery_events).values(
                        _event_row(delivery_id, message)
                    )
                )
        return bool(deferred)

    def channels_down(self, now: datetime) -> dict[str, datetime]:
        """Returns the channels with a retry scheduled after `now`, with the earliest one.

        Such a channel failed recently: new deliveries to it wait for that retry instead of
        each making its own tries in the consumer.
        """
        plan = notifier_deliveries.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(plan.channel, func.min(plan.next_attempt_at))
                .where(plan.state == DeliveryState.WAITING.value, plan.next_attempt_at > now)
                .group_by(plan.channel)
            ).all()
        return {channel: moment for channel, moment in rows}

    def due_retries(
        self, now: datetime, stale_before: datetime, limit: int
    ) -> list[PlannedDelivery]:
        """Returns the waiting deliveries whose retry is due, oldest due first.

        Only the first unfinished delivery of a dedupe key on a channel is returned (the others
        wait behind it, so they keep their order), and also the deliveries in the retry
        schedule whose claim went stale (the replica retrying it died).
        """
        plan = notifier_deliveries.c
        due = or_(
            and_(plan.state == DeliveryState.WAITING.value, plan.next_attempt_at <= now),
            and_(
                plan.state == DeliveryState.SENDING.value,
                plan.next_attempt_at.is_not(None),
                or_(plan.claimed_at.is_(None), plan.claimed_at < stale_before),
            ),
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(plan.id, plan.alert_id, plan.channel, plan.kind, alerts.c.dedupe_key)
                .join(alerts, alerts.c.alert_id == plan.alert_id)
                .where(due, ~_earlier_unfinished(plan.id, plan.channel, alerts.c.dedupe_key))
                .order_by(plan.next_attempt_at, plan.id)
                .limit(limit)
            ).all()
        return [
            PlannedDelivery(r.id, r.alert_id, r.dedupe_key, r.channel, Kind(r.kind)) for r in rows
        ]

    def wake(self, channel: str, now: datetime) -> int:
        """Makes every waiting delivery of a channel due now (the channel took one again)."""
        plan = notifier_deliveries.c
        with self.engine.begin() as connection:
            woken: int = connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.channel == channel,
                    plan.state == DeliveryState.WAITING.value,
                    plan.next_attempt_at > now,
                )
                .values(next_attempt_at=now, updated_at=utcnow())
            ).rowcount
        return woken

    def hold(self, channel: str, until: datetime, *, waiting_since_after: datetime) -> int:
        """Moves a down channel's earlier retries to `until` (its next one), so one goes first.

        Left alone: deliveries already due later, those waiting only behind another (no
        `waiting_since`), and those whose schedule runs out before `until` (that began before
        `waiting_since_after`): they come back at their own time and are given up on then.
        """
        plan = notifier_deliveries.c
        with self.engine.begin() as connection:
            held: int = connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.channel == channel,
                    plan.state == DeliveryState.WAITING.value,
                    plan.next_attempt_at < until,
                    plan.waiting_since >= waiting_since_after,
                )
                .values(next_attempt_at=until, updated_at=utcnow())
            ).rowcount
        return held

    def waiting_counts(self) -> dict[str, int]:
        """Returns how many deliveries wait for the retry sweeper, per channel."""
        plan = notifier_deliveries.c
        in_schedule = or_(
            plan.state == DeliveryState.WAITING.value,
            and_(plan.state == DeliveryState.SENDING.value, plan.next_attempt_at.is_not(None)),
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(plan.channel, func.count()).where(in_schedule).group_by(plan.channel)
            ).all()
        return {channel: count for channel, count in rows}

    def given_up_messages(self, limit: int = 100) -> list[GivenUp]:
        """Returns the kept messages of deliveries given up on: they go to alerts.dlq."""
        events = notifier_delivery_events.c
        plan = notifier_deliveries.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(notifier_delivery_events, plan.channel, plan.detail)
                .join(notifier_deliveries, plan.id == events.delivery_id)
                .where(plan.state.in_(RETRYABLE_STATES))
                .order_by(events.delivery_id)
                .limit(limit)
            ).all()
        return [GivenUp(r.delivery_id, r.channel, r.detail or "gave up", _record(r)) for r in rows]

    def forget_messages(self, delivery_ids: Iterable[int] | None = None) -> int:
        """Deletes kept messages: the given ones, or (None) every one no longer needed.

        A message is no longer needed once its delivery ended otherwise than given up on (sent,
        skipped, ...) or is gone.
        """
        events = notifier_delivery_events.c
        if delivery_ids is not None:
            where: Any = events.delivery_id.in_(list(delivery_ids))
        else:
            needed = (
                select(notifier_deliveries.c.id)
                .where(
                    notifier_deliveries.c.id == events.delivery_id,
                    notifier_deliveries.c.state.in_(UNFINISHED_STATES + RETRYABLE_STATES),
                )
                .exists()
            )
            where = ~needed
        with self.engine.begin() as connection:
            deleted: int = connection.execute(
                delete(notifier_delivery_events).where(where)
            ).rowcount
        return deleted

    def finish(self, delivery_id: int, state: DeliveryState, detail: str | None = None) -> None:
        """Moves a pending delivery to an end state (skipped, sent, failed, rejected)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(notifier_deliveries)
                .where(notifier_deliveries.c.id == delivery_id)
                .values(state=state.value, detail=_short(detail), updated_at=utcnow())
            )

    def claim_slot(
        self,
        delivery_id: int,
        channel: str,
        window_start: datetime,
        window_end: datetime,
        limit: int,
    ) -> bool:
        """Counts the delivery in the channel's window if the window has room.

        Returns True when it may be sent now; False when the window was full and the
        delivery was folded into the window's digest (state throttled), durably.
        """
        # The window row is created in a transaction of its own: an INSERT IGNORE that meets
        # an existing row holds a shared lock, and two of them upgrading to the UPDATE's
        # exclusive lock would deadlock each other.
        with self.engine.begin() as connection:
            connection.execute(
                insert_ignore(connection, notifier_windows).values(
                    channel=channel, window_start=window_start, window_end=window_end
                )
            )
        with self.engine.begin() as connection:
            counted = connection.execute(
                update(notifier_windows)
                .where(
                    notifier_windows.c.channel == channel,
                    notifier_windows.c.window_start == window_start,
                    notifier_windows.c.sent < limit,
                )
                .values(sent=notifier_windows.c.sent + 1)
            ).rowcount
            if counted:
                connection.execute(
                    update(notifier_deliveries)
                    .where(notifier_deliveries.c.id == delivery_id)
                    .values(window_start=window_start, updated_at=utcnow())
                )
                return True
            self._fold(connection, delivery_id, channel, window_start)
            return False

    def fold(self, delivery_id: int, channel: str, window_start: datetime) -> None:
        """Folds a delivery into an existing window's digest (a resolve joins its trigger)."""
        with self.engine.begin() as connection:
            self._fold(connection, delivery_id, channel, window_start)

    def _fold(
        self, connection: Connection, delivery_id: int, channel: str, window_start: datetime
    ) -> None:
        connection.execute(
            update(notifier_windows)
            .where(
                notifier_windows.c.channel == channel,
                notifier_windows.c.window_start == window_start,
            )
            .values(folded=notifier_windows.c.folded + 1)
        )
        connection.execute(
            update(notifier_deliveries)
            .where(notifier_deliveries.c.id == delivery_id)
            .values(
                state=DeliveryState.THROTTLED.value,
                window_start=window_start,
                detail="folded into the window's digest",
                updated_at=utcnow(),
            )
        )

    def record_attempt(
        self,
        *,
        alert_id: str | None,
        dedupe_key: str | None,
        channel: str,
        kind: Kind,
        attempt: int,
        status: str,
        http_status: int | None,
        error: str | None,
        delivery_id: int | None = None,
        end_state: DeliveryState | None = None,
    ) -> None:
        """Appends one try to `notifications`; with `end_state`, also ends the delivery."""
        with self.engine.begin() as connection:
            connection.execute(
                insert(notifications).values(
                    alert_id=alert_id,
                    dedupe_key=dedupe_key,
                    channel=channel,
                    kind=kind.value,
                    attempt=attempt,
                    status=status,
                    http_status=http_status,
                    error=error[:1000] if error else None,
                    created_at=utcnow(),
                )
            )
            if delivery_id is None:
                return
            # Every try renews the delivery's claim (see `claim`).
            values: dict[str, Any] = {
                "attempts": attempt,
                "updated_at": utcnow(),
                "claimed_at": utcnow(),
            }
            if end_state is not None:
                values |= {"state": end_state.value, "detail": _short(error)}
            connection.execute(
                update(notifier_deliveries)
                .where(notifier_deliveries.c.id == delivery_id)
                .values(**values)
            )

    # -- digests -------------------------------------------------------------------------------

    def due_windows(self, now: datetime) -> list[DueWindow]:
        """Returns the ended windows that still hold folded notifications."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    notifier_windows.c.channel,
                    notifier_windows.c.window_start,
                    notifier_windows.c.window_end,
                )
                .where(
                    notifier_windows.c.window_end <= now,
                    select(notifier_deliveries.c.id)
                    .where(
                        notifier_deliveries.c.channel == notifier_windows.c.channel,
                        notifier_deliveries.c.window_start == notifier_windows.c.window_start,
                        notifier_deliveries.c.state == DeliveryState.THROTTLED.value,
                    )
                    .exists(),
                )
                .order_by(notifier_windows.c.window_start)
            ).all()
        return [DueWindow(r.channel, r.window_start, r.window_end) for r in rows]

    def backlog(self) -> int:
        """Returns how many notifications wait in digests."""
        with self.engine.connect() as connection:
            count: int = connection.execute(
                select(func.count()).where(
                    notifier_deliveries.c.state == DeliveryState.THROTTLED.value
                )
            ).scalar_one()
        return count

    def claim_digest(self, window: DueWindow, owner: str, now: datetime, lease: timedelta) -> bool:
        """Claims the sending of a window's digest; False if another replica holds it."""
        with self.engine.begin() as connection:
            claimed = connection.execute(
                update(notifier_windows)
                .where(
                    notifier_windows.c.channel == window.channel,
                    notifier_windows.c.window_start == window.window_start,
                    or_(
                        notifier_windows.c.digest_claimed_at.is_(None),
                        notifier_windows.c.digest_claimed_at < now - lease,
                    ),
                )
                .values(digest_claimed_by=owner[:255], digest_claimed_at=now)
            ).rowcount
        return bool(claimed)

    def folded_items(self, window: DueWindow) -> list[FoldedItem]:
        """Returns the notifications folded into a window, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    notifier_deliveries.c.id.label("delivery_id"),
                    notifier_deliveries.c.kind,
                    alerts,
                )
                .join(alerts, alerts.c.alert_id == notifier_deliveries.c.alert_id)
                .where(
                    notifier_deliveries.c.channel == window.channel,
                    notifier_deliveries.c.window_start == window.window_start,
                    notifier_deliveries.c.state == DeliveryState.THROTTLED.value,
                )
                .order_by(notifier_deliveries.c.id)
            ).all()
        return [FoldedItem(r.delivery_id, Kind(r.kind), alert_view(r)) for r in rows]

    def finish_digest(
        self,
        window: DueWindow,
        delivery_ids: Iterable[int],
        state: DeliveryState,
        detail: str | None,
        *,
        release: bool = True,
        plan_resolve: bool = False,
    ) -> None:
        """Ends the folded deliveries a digest carried, and releases the window's claim.

        With `plan_resolve` (a channel where the digest opened an incident), the digest's
        resolve is planned in the same transaction when every alert it carried has already
        resolved: no resolve event will come for them any more.
        """
        ids = list(delivery_ids)
        with self.engine.begin() as connection:
            if ids:
                connection.execute(
                    update(notifier_deliveries)
                    .where(notifier_deliveries.c.id.in_(ids))
                    .values(state=state.value, detail=_short(detail), updated_at=utcnow())
                )
            if plan_resolve:
                self._plan_digest_resolve(connection, window.channel, window.window_start)
            if not release:
                return
            connection.execute(
                update(notifier_windows)
                .where(
                    notifier_windows.c.channel == window.channel,
                    notifier_windows.c.window_start == window.window_start,
                )
                .values(
                    digest_claimed_by=None,
                    digest_claimed_at=None,
                    digests_sent=notifier_windows.c.digests_sent
                    + (1 if state is DeliveryState.DIGESTED else 0),
                )
            )

    # -- digest resolves -----------------------------------------------------------------------

    def plan_digest_resolve(self, channel: str, window_start: datetime) -> DigestResolve | None:
        """Plans a digest's resolve once every alert it carried resolved; returns it, or None.

        Planning is idempotent (one row per digest and channel, whoever plans it first). A
        resolve that failed or was rejected before is made pending again: the resolve event
        (or its DLQ replay) that asks for it now gets a fresh set of tries.
        """
        with self.engine.begin() as connection:
            if not self._plan_digest_resolve(connection, channel, window_start):
                return None
            connection.execute(
                update(notifier_deliveries)
                .where(
                    _digest_resolve_row(channel, window_start),
                    notifier_deliveries.c.state.in_(RETRYABLE_STATES),
                )
                .values(state=DeliveryState.PENDING.value, updated_at=utcnow())
            )
            return self._digest_resolves(connection, _digest_resolve_row(channel, window_start))[0]

    def _plan_digest_resolve(
        self, connection: Connection, channel: str, window_start: datetime
    ) -> bool:
        """Plans the resolve if every alert the window's digest carried resolved; True if so."""
        plan = notifier_deliveries.c
        carried = and_(
            plan.channel == channel,
            plan.window_start == window_start,
            plan.kind == Kind.TRIGGER.value,
            plan.state == DeliveryState.DIGESTED.value,
        )
        joined = notifier_deliveries.join(alerts, alerts.c.alert_id == plan.alert_id)
        states = connection.execute(select(alerts.c.state).select_from(joined).where(carried))
        if not digest_resolvable(AlertState(state) for state in states.scalars()):
            return False
        now = utcnow()
        row = _delivery_row(digest_key(window_start), channel, Kind.RESOLVE, now)
        connection.execute(
            insert_ignore(connection, notifier_deliveries).values(**row, window_start=window_start)
        )
        return True

    def pending_digest_resolves(self) -> list[DigestResolve]:
        """Returns the digest resolves not ended yet (planned, or claimed by someone)."""
        with self.engine.connect() as connection:
            return self._digest_resolves(
                connection,
                and_(
                    notifier_deliveries.c.alert_id.startswith(DIGEST_KEY_PREFIX, autoescape=True),
                    notifier_deliveries.c.kind == Kind.RESOLVE.value,
                    notifier_deliveries.c.state.in_(UNFINISHED_STATES),
                ),
            )

    def _digest_resolves(self, connection: Connection, where: Any) -> list[DigestResolve]:
        plan = notifier_deliveries.c
        item = notifier_deliveries.alias("item").c
        window = notifier_windows.c
        carried = (
            select(func.count())
            .where(
                item.channel == plan.channel,
                item.window_start == plan.window_start,
                item.kind == Kind.TRIGGER.value,
                item.state == DeliveryState.DIGESTED.value,
            )
            .correlate(notifier_deliveries)
            .scalar_subquery()
        )
        # An outer join: the retention may have purged the window of a long-firing digest.
        rows = connection.execute(
            select(
                plan.id,
                plan.channel,
                plan.state,
                plan.attempts,
                plan.window_start,
                window.window_end,
                carried.label("total"),
            )
            .select_from(
                notifier_deliveries.join(
                    notifier_windows,
                    and_(window.channel == plan.channel, window.window_start == plan.window_start),
                    isouter=True,
                )
            )
            .where(where)
            .order_by(plan.id)
        ).all()
        return [
            DigestResolve(
                id=r.id,
                channel=r.channel,
                window_start=r.window_start,
                window_end=r.window_end or r.window_start,
                state=DeliveryState(r.state),
                attempts=r.attempts,
                total=r.total,
            )
            for r in rows
        ]

    # -- operators (rbr alerts) ----------------------------------------------------------------

    def list_alerts(
        self, *, state: AlertState | None = None, bucket: str | None = None, limit: int = 50
    ) -> list[Row[Any]]:
        """Returns alert occurrences, newest first."""
        query = select(alerts).order_by(alerts.c.fired_at.desc(), alerts.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(alerts.c.state == state.value)
        if bucket is not None:
            query = query.where(alerts.c.bucket == bucket)
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def acknowledge(self, dedupe_key: str, by: str, now: datetime) -> int:
        """Acknowledges the firing occurrences of a dedupe key; returns how many."""
        with self.engine.begin() as connection:
            count: int = connection.execute(
                update(alerts)
                .where(
                    alerts.c.dedupe_key == dedupe_key,
                    alerts.c.state == AlertState.FIRING.value,
                )
                .values(
                    state=AlertState.ACKNOWLEDGED.value,
                    acknowledged_at=now,
                    acknowledged_by=by[:255],
                    updated_at=now,
                )
            ).rowcount
        return count

    def history(self, dedupe_key: str) -> tuple[list[Row[Any]], list[Row[Any]]]:
        """Returns a dedupe key's occurrences and every notification attempt for them."""
        with self.engine.connect() as connection:
            occurrences = connection.execute(
                select(alerts).where(alerts.c.dedupe_key == dedupe_key).order_by(alerts.c.id)
            ).all()
            ids = [row.alert_id for row in occurrences]
            attempts = (
                connection.execute(
                    select(notifications)
                    .where(notifications.c.alert_id.in_(ids))
                    .order_by(notifications.c.id)
                ).all()
                if ids
                else []
            )
        return list(occurrences), list(attempts)

    def deliveries_of(self, alert_id: str) -> list[Row[Any]]:
        """Returns the delivery plan of one occurrence."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(notifier_deliveries)
                    .where(notifier_deliveries.c.alert_id == alert_id)
                    .order_by(notifier_deliveries.c.id)
                ).all()
            )

    # -- retention -----------------------------------------------------------------------------

    def purge(self, cutoff: datetime, chunk: int = 1000) -> dict[str, int]:
        """Deletes what ended before `cutoff`, in small transactions.

        That is: resolved alerts with their delivery plans and attempts, older attempts
        (digests, tests) and throttle windows.
        """
        removed = {"alerts": 0, "notifications": 0, "windows": 0}
        while True:
            with self.engine.begin() as connection:
                # Not while a channel still waits for it (a retention shorter than a retry
                # schedule): the delivery and its kept message must outlive the wait.
                waiting = (
                    select(notifier_deliveries.c.id)
                    .where(
                        notifier_deliveries.c.alert_id == alerts.c.alert_id,
                        notifier_deliveries.c.state.in_(UNFINISHED_STATES),
                    )
                    .exists()
                )
                ids = (
                    connection.execute(
                        select(alerts.c.alert_id)
                        .where(
                            alerts.c.state == AlertState.RESOLVED.value,
                            alerts.c.resolved_at < cutoff,
                            ~waiting,
                        )
                        .limit(chunk)
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    break
                connection.execute(
                    delete(notifier_delivery_events).where(
                        notifier_delivery_events.c.delivery_id.in_(
                            select(notifier_deliveries.c.id).where(
                                notifier_deliveries.c.alert_id.in_(ids)
                            )
                        )
                    )
                )
                connection.execute(
                    delete(notifier_deliveries).where(notifier_deliveries.c.alert_id.in_(ids))
                )
                removed["notifications"] += connection.execute(
                    delete(notifications).where(notifications.c.alert_id.in_(ids))
                ).rowcount
                removed["alerts"] += connection.execute(
                    delete(alerts).where(alerts.c.alert_id.in_(ids))
                ).rowcount
        with self.engine.begin() as connection:
            removed["notifications"] += connection.execute(
                delete(notifications).where(notifications.c.created_at < cutoff)
            ).rowcount
            # Digest resolves belong to no alert occurrence: they go with their window.
            connection.execute(
                delete(notifier_deliveries).where(
                    notifier_deliveries.c.alert_id.startswith(DIGEST_KEY_PREFIX, autoescape=True),
                    notifier_deliveries.c.window_start < cutoff,
                    notifier_deliveries.c.state.not_in(UNFINISHED_STATES),
                )
            )
            removed["windows"] += connection.execute(
                delete(notifier_windows).where(notifier_windows.c.window_end < cutoff)
            ).rowcount
        return removed


def occurrence(row: Row[Any]) -> Occurrence:
    """Returns what the lifecycle rules need of an `alerts` row."""
    return Occurrence(
        alert_id=row.alert_id,
        state=AlertState(row.state),
        fired_at=row.fired_at,
        last_seen_at=row.last_seen_at,
        last_event_id=row.last_event_id,
    )


def _stored_id(event_id: str) -> str:
    """Returns an event id as `alerts.last_event_id` keeps it."""
    return event_id[:MAX_ID_CHARS]


def _count_repeat(connection: Connection, repeat: Repeat, now: datetime) -> None:
    connection.execute(
        update(alerts)
        .where(alerts.c.alert_id == repeat.alert_id)
        .values(
            repeats=alerts.c.repeats + 1,
            last_seen_at=repeat.last_seen_at,
            last_event_id=repeat.event_id,
            updated_at=now,
        )
    )


def _plan(
    connection: Connection, alert_id: str, channels: Sequence[str], kind: Kind, now: datetime
) -> None:
    """Plans one delivery of an occurrence per channel (those planned already are kept)."""
    if channels:
        connection.execute(
            insert_ignore(connection, notifier_deliveries),
            [_delivery_row(alert_id, channel, kind, now) for channel in channels],
        )


def _alert_row(event: AlertEvent, now: datetime) -> dict[str, Any]:
    alert = event.alert
    return {
        "alert_id": alert.alert_id,
        "dedupe_key": alert.dedupe_key,
        "type": alert.type,
        "severity": alert.severity.value,
        "state": AlertState.FIRING.value,
        "bucket": alert.bucket,
        "title": alert.title,
        "detail": alert.detail,
        "source": alert.source,
        "context": dict(alert.context),
        "fired_at": alert.occurred_at,
        "last_seen_at": alert.occurred_at,
        "repeats": 0,
        "last_event_id": _stored_id(event.event_id),
        "updated_at": now,
    }


def _delivery_row(alert_id: str, channel: str, kind: Kind, now: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "channel": channel,
        "kind": kind.value,
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _digest_resolve_row(channel: str, window_start: datetime) -> Any:
    return and_(
        notifier_deliveries.c.alert_id == digest_key(window_start),
        notifier_deliveries.c.channel == channel,
        notifier_deliveries.c.kind == Kind.RESOLVE.value,
    )


def _earlier_unfinished(delivery_id: Any, channel: Any, dedupe_key: Any) -> Any:
    """Returns EXISTS(an unfinished delivery of the dedupe key to the channel, before this one)."""
    earlier = notifier_deliveries.alias("earlier")
    earlier_alert = alerts.alias("earlier_alert")
    return (
        select(earlier.c.id)
        .select_from(earlier.join(earlier_alert, earlier_alert.c.alert_id == earlier.c.alert_id))
        .where(
            earlier.c.channel == channel,
            earlier_alert.c.dedupe_key == dedupe_key,
            earlier.c.id < delivery_id,
            earlier.c.state.in_(UNFINISHED_STATES),
        )
        .exists()
    )


def _event_row(delivery_id: int, message: Record) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "topic": message.topic,
        "kafka_partition": message.partition,
        "kafka_offset": message.offset,
        "message_key": message.key,
        "value": message.value,
        "headers": [[name, base64.b64encode(value).decode()] for name, value in message.headers],
        "created_at": utcnow(),
    }


def _record(row: Row[Any]) -> Record:
    return Record(
        topic=row.topic,
        partition=row.kafka_partition,
        offset=row.kafka_offset,
        key=row.message_key,
        value=row.value,
        headers=[(name, base64.b64decode(value)) for name, value in row.headers],
    )


def _short(detail: str | None) -> str | None:
    if detail is None:
        return None
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"

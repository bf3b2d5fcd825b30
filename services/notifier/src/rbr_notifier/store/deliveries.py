"""SQL of deliveries: the plan of who hears of each alert, claims, retries, and every try.

Tables `notifier_deliveries` (one row per occurrence, channel and kind), `notifications` (one
row per try) and `notifier_delivery_events` (the message kept with a waiting delivery).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Row

from rbr_notifier.lifecycle import DeliveryContext, resolve_channels
from rbr_notifier.model import DeliveryState, Kind
from rbr_notifier.store.rows import (
    RETRYABLE_STATES,
    UNFINISHED_STATES,
    UNSERVED_STATES,
    alert_view,
    alert_view_columns,
    literal_ids,
    short,
)
from rbr_runtime.db.bulk import insert_rows
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import (
    alerts,
    notifications,
    notifier_deliveries,
    notifier_delivery_events,
)
from rbr_runtime.kafka.consumer import Record
from rbr_schemas import utcnow

ALERT_VIEW_COLUMNS = alert_view_columns(alerts)
"""What a delivery's context reads of its alert (not the counters and who closed it)."""


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
class SentTry:
    """A try that delivered a planned delivery: its number and the channel's HTTP status."""

    delivery: PlannedDelivery
    attempt: int
    http_status: int | None


@dataclass(frozen=True)
class GivenUp:
    """A delivery given up on, with the alerts message to dead-letter for it."""

    delivery_id: int
    channel: str
    reason: str
    message: Record


class DeliveryStore:
    """Reads and writes deliveries and their tries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def delivery(self, delivery_id: int) -> DeliveryContext:
        """Loads a delivery, its alert and (for a resolve) its trigger's state."""
        return self.contexts([delivery_id])[delivery_id]

    def contexts(self, delivery_ids: Sequence[int]) -> dict[int, DeliveryContext]:
        """Loads deliveries with their alerts and (for resolves) their triggers' states.

        Three queries, however many deliveries: a batch loads everything it decides on at once.
        """
        if not delivery_ids:
            return {}
        plan = notifier_deliveries.c
        ids = list(delivery_ids)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    plan.id.label("delivery_id"),
                    plan.channel,
                    plan.kind,
                    plan.state.label("delivery_state"),
                    plan.attempts,
                    plan.window_start,
                    plan.next_attempt_at,
                    plan.waiting_since,
                    plan.detail.label("delivery_detail"),
                    *ALERT_VIEW_COLUMNS,
                )
                .join(alerts, alerts.c.alert_id == plan.alert_id)
                .where(plan.id.in_(literal_ids(ids)))
            ).all()
            behind = _behind(connection, rows)
            triggers = _triggers(connection, [r.alert_id for r in rows if r.kind == Kind.RESOLVE])
        return {row.delivery_id: _context(row, row.delivery_id in behind, triggers) for row in rows}

    def claim(
        self, delivery_id: int, owner: str, lease: timedelta, *, due_by: datetime | None = None
    ) -> bool:
        """Claims an unfinished delivery for sending (state sending); False if it cannot be.

        It can be claimed when pending, when waiting and its retry is due by `due_by`, when
        this owner already holds it (a batch re-run after an outage), or when its claim was not
        renewed for `lease` (the replica sending it died). Otherwise another replica is sending
        it, or it has just ended.
        """
        return delivery_id in self.claim_many([delivery_id], owner, lease, due_by=due_by)

    def claim_many(
        self,
        delivery_ids: Sequence[int],
        owner: str,
        lease: timedelta,
        *,
        due_by: datetime | None = None,
    ) -> set[int]:
        """Claims deliveries as `claim` does, in one transaction; returns those claimed."""
        if not delivery_ids:
            return set()
        now = utcnow()
        plan = notifier_deliveries.c
        ids = list(delivery_ids)
        due = and_(
            plan.state == DeliveryState.WAITING.value,
            plan.next_attempt_at <= (due_by or now),
        )
        with self.engine.begin() as connection:
            updated: int = connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.id.in_(literal_ids(ids)),
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
            if updated == len(set(ids)):
                # Every one matched the claimable condition, so every one is ours now: the
                # usual case skips the read below (a statement and the ids sent once more).
                return set(ids)
            # Read in the same transaction: the rows updated are locked until it commits, and
            # every row of this owner in state sending was claimable, so was updated just now.
            claimed = connection.execute(
                select(plan.id).where(
                    plan.id.in_(literal_ids(ids)),
                    plan.state == DeliveryState.SENDING.value,
                    plan.claimed_by == owner[:255],
                )
            ).scalars()
            return set(claimed)

    def release(self, delivery_id: int, owner: str) -> None:
        """Gives a claimed delivery back, e.g. when stopping between two tries.

        It becomes pending again, or waiting if the retry sweeper is in charge of it (its
        alert's offset was committed: nobody else would ever pick a pending one up).
        """
        self.release_many([delivery_id], owner)

    def release_many(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Gives back those of some deliveries this owner still holds (see `release`)."""
        if not delivery_ids:
            return
        plan = notifier_deliveries.c
        back = case(
            (plan.next_attempt_at.is_(None), DeliveryState.PENDING.value),
            else_=DeliveryState.WAITING.value,
        )
        with self.engine.begin() as connection:
            connection.execute(
                update(notifier_deliveries)
                .where(
                    plan.id.in_(list(delivery_ids)),
                    plan.state == DeliveryState.SENDING.value,
                    plan.claimed_by == owner[:255],
                )
                .values(state=back, claimed_at=None, updated_at=utcnow())
            )

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
                    detail=short(detail),
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
                    notifier_deliveries.c.state.in_(UNSERVED_STATES),
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
                .values(state=state.value, detail=short(detail), updated_at=utcnow())
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
                values |= {"state": end_state.value, "detail": short(error)}
            connection.execute(
                update(notifier_deliveries)
                .where(notifier_deliveries.c.id == delivery_id)
                .values(**values)
            )

    def record_sent(self, sent: Sequence[SentTry]) -> None:
        """Records tries that delivered and ends their deliveries sent, in one transaction.

        What `record_attempt` does for each with status sent, for a whole batch at once.
        """
        if not sent:
            return
        now = utcnow()
        rows = [
            {
                "alert_id": s.delivery.alert_id,
                "dedupe_key": s.delivery.dedupe_key,
                "channel": s.delivery.channel,
                "kind": s.delivery.kind.value,
                "attempt": s.attempt,
                "status": "sent",
                "http_status": s.http_status,
                "error": None,
                "created_at": now,
            }
            for s in sent
        ]
        by_attempts: dict[int, list[int]] = {}
        for item in sent:
            by_attempts.setdefault(item.attempt, []).append(item.delivery.id)
        with self.engine.begin() as connection:
            insert_rows(connection, notifications, rows)
            # One UPDATE per try number (nearly always one): an UPDATE per row would cost
            # a round trip each.
            for attempts, ids in by_attempts.items():
                connection.execute(
                    update(notifier_deliveries)
                    .where(notifier_deliveries.c.id.in_(literal_ids(ids)))
                    .values(
                        attempts=attempts,
                        state=DeliveryState.SENT.value,
                        detail=None,
                        updated_at=now,
                        claimed_at=now,
                    )
                )

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


def plan_resolves(connection: Connection, alert_id: str, now: datetime) -> None:
    """Plans an occurrence's resolve to each channel its firing reached or still will."""
    triggers = connection.execute(
        select(notifier_deliveries.c.channel, notifier_deliveries.c.state).where(
            notifier_deliveries.c.alert_id == alert_id,
            notifier_deliveries.c.kind == Kind.TRIGGER.value,
        )
    ).all()
    channels = resolve_channels((r.channel, DeliveryState(r.state)) for r in triggers)
    plan_deliveries(connection, alert_id, channels, Kind.RESOLVE, now)


def owned_deliveries(
    connection: Connection, alert_ids: list[str], kind: Kind
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


def plan_deliveries(
    connection: Connection, alert_id: str, channels: Sequence[str], kind: Kind, now: datetime
) -> None:
    """Plans one delivery of an occurrence per channel (those planned already are kept)."""
    if channels:
        connection.execute(
            insert_ignore(connection, notifier_deliveries),
            [delivery_row(alert_id, channel, kind, now) for channel in channels],
        )


def delivery_row(alert_id: str, channel: str, kind: Kind, now: datetime) -> dict[str, Any]:
    """Returns a new delivery's row (pending, not tried)."""
    return {
        "alert_id": alert_id,
        "channel": channel,
        "kind": kind.value,
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


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


def _behind(connection: Connection, rows: Sequence[Row[Any]]) -> set[int]:
    """Returns the deliveries behind an unfinished one of their dedupe key to their channel.

    The same as `_earlier_unfinished` for each, in one query led by the dedupe keys' index
    (led by the channel, as in that EXISTS, it reads every unfinished delivery of a channel).
    The rows' own states are the ones they were read with, so a delivery's turn and whether
    the others are behind it come from one read of it.
    """
    if not rows:
        return set()
    plan = notifier_deliveries.c
    # The rows' own states were read in the same transaction: only the others are read here
    # (for a batch of new alerts, none), not every row of the batch once more.
    others = connection.execute(
        select(plan.id, plan.channel, alerts.c.dedupe_key)
        .join(alerts, alerts.c.alert_id == plan.alert_id)
        .where(
            alerts.c.dedupe_key.in_(sorted({row.dedupe_key for row in rows})),
            plan.state.in_(UNFINISHED_STATES),
            plan.id.not_in(literal_ids(sorted({row.delivery_id for row in rows}))),
        )
    ).all()
    unfinished = [
        (row.delivery_id, row.channel, row.dedupe_key)
        for row in rows
        if row.delivery_state in UNFINISHED_STATES
    ]
    unfinished += [(other.id, other.channel, other.dedupe_key) for other in others]
    first: dict[tuple[str, str], int] = {}
    for delivery_id, channel, dedupe_key in unfinished:
        place = (channel, dedupe_key)
        first[place] = min(delivery_id, first.get(place, delivery_id))
    return {
        row.delivery_id
        for row in rows
        if first.get((row.channel, row.dedupe_key), row.delivery_id) < row.delivery_id
    }


def _triggers(connection: Connection, alert_ids: list[str]) -> dict[tuple[str, str], Any]:
    """Returns the trigger deliveries of some occurrences, by (alert id, channel)."""
    if not alert_ids:
        return {}
    plan = notifier_deliveries.c
    rows = connection.execute(
        select(plan.alert_id, plan.channel, plan.state, plan.window_start).where(
            plan.alert_id.in_(sorted(set(alert_ids))), plan.kind == Kind.TRIGGER.value
        )
    ).all()
    return {(row.alert_id, row.channel): row for row in rows}


def _context(row: Row[Any], behind: bool, triggers: dict[tuple[str, str], Any]) -> DeliveryContext:
    """Builds a delivery's context from its row joined with its alert."""
    trigger = triggers.get((row.alert_id, row.channel)) if row.kind == Kind.RESOLVE else None
    return DeliveryContext(
        id=row.delivery_id,
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
        behind=behind,
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

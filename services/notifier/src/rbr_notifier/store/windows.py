"""SQL of throttle windows: counts per channel and window, folded deliveries, digests.

Table `notifier_windows`, and the `notifier_deliveries` rows a window's digest carries or
resolves (a digest's resolve is a delivery with `alert_id` the digest's key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.engine import Connection

from rbr_notifier.lifecycle import FoldedItem, digest_resolvable
from rbr_notifier.model import DIGEST_KEY_PREFIX, AlertState, DeliveryState, Kind, digest_key
from rbr_notifier.store.deliveries import delivery_row
from rbr_notifier.store.rows import RETRYABLE_STATES, UNFINISHED_STATES, alert_view, short
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import alerts, notifier_deliveries, notifier_windows
from rbr_schemas import utcnow


@dataclass(frozen=True)
class DueWindow:
    """A throttle window that ended with folded notifications not yet sent as a digest."""

    channel: str
    window_start: datetime
    window_end: datetime


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


class WindowStore:
    """Reads and writes throttle windows and their digests."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
            _fold(connection, delivery_id, channel, window_start)
            return False

    def fold(self, delivery_id: int, channel: str, window_start: datetime) -> None:
        """Folds a delivery into an existing window's digest (a resolve joins its trigger)."""
        with self.engine.begin() as connection:
            _fold(connection, delivery_id, channel, window_start)

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
                    .values(state=state.value, detail=short(detail), updated_at=utcnow())
                )
            if plan_resolve:
                _plan_digest_resolve(connection, window.channel, window.window_start)
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

    def plan_digest_resolve(self, channel: str, window_start: datetime) -> DigestResolve | None:
        """Plans a digest's resolve once every alert it carried resolved; returns it, or None.

        Planning is idempotent (one row per digest and channel, whoever plans it first). A
        resolve that failed or was rejected before is made pending again: the resolve event
        (or its DLQ replay) that asks for it now gets a fresh set of tries.
        """
        with self.engine.begin() as connection:
            if not _plan_digest_resolve(connection, channel, window_start):
                return None
            connection.execute(
                update(notifier_deliveries)
                .where(
                    _digest_resolve_row(channel, window_start),
                    notifier_deliveries.c.state.in_(RETRYABLE_STATES),
                )
                .values(state=DeliveryState.PENDING.value, updated_at=utcnow())
            )
            return _digest_resolves(connection, _digest_resolve_row(channel, window_start))[0]

    def pending_digest_resolves(self) -> list[DigestResolve]:
        """Returns the digest resolves not ended yet (planned, or claimed by someone)."""
        with self.engine.connect() as connection:
            return _digest_resolves(
                connection,
                and_(
                    notifier_deliveries.c.alert_id.startswith(DIGEST_KEY_PREFIX, autoescape=True),
                    notifier_deliveries.c.kind == Kind.RESOLVE.value,
                    notifier_deliveries.c.state.in_(UNFINISHED_STATES),
                ),
            )


def _fold(connection: Connection, delivery_id: int, channel: str, window_start: datetime) -> None:
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


def _plan_digest_resolve(connection: Connection, channel: str, window_start: datetime) -> bool:
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
    row = delivery_row(digest_key(window_start), channel, Kind.RESOLVE, now)
    connection.execute(
        insert_ignore(connection, notifier_deliveries).values(**row, window_start=window_start)
    )
    return True


def _digest_resolves(connection: Connection, where: Any) -> list[DigestResolve]:
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


def _digest_resolve_row(channel: str, window_start: datetime) -> Any:
    return and_(
        notifier_deliveries.c.alert_id == digest_key(window_start),
        notifier_deliveries.c.channel == channel,
        notifier_deliveries.c.kind == Kind.RESOLVE.value,
    )

"""Operator changes: buckets one or many at a time, alerts acknowledged or resolved, channel tests.

Every change writes an audit entry (`audit.record_audit`). Alerts belong to the notifier: an
acknowledgement is the one change of its table made here (`rbr_runtime.db.acknowledgements`;
the notifier never pages an acknowledged alert again), a resolve and a channel test are events
on `alerts` (queued in the registrar's outbox) that the notifier applies like any other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from rbr_registrar.domain import EVENT_NAMESPACE, Decision
from rbr_registrar.merges import BucketMerges, MergeRefused
from rbr_registrar.operator.audit import record_audit
from rbr_registrar.operator.auth import Actor
from rbr_registrar.operator.views import BucketFilter, BulkAction
from rbr_registrar.store import OUTBOX, BucketRepository, with_retries
from rbr_runtime.db.acknowledgements import acknowledge
from rbr_runtime.db.tables import alerts
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.outbox import OutboxMessage
from rbr_schemas import ALERTS, Alert, AlertState, Severity, utcnow
from rbr_schemas.events import TEST_CHANNEL_CONTEXT, AlertType

SOURCE = "/rbr/registrar/operator"
MAX_BULK = 1000
"""Most buckets one bulk request changes."""


@dataclass(frozen=True)
class BucketOutcome:
    """What an action did to one bucket."""

    name: str
    outcome: str
    """updated, unchanged, removed, merged, not_found or refused."""
    state: str | None = None
    detail: str | None = None


class TooMany(ValueError):
    """A filter matching more buckets than one request may change."""


class BucketActions:
    """Applies operator actions to buckets, each in its own transaction, each audited."""

    def __init__(
        self, store: BucketRepository, merges: BucketMerges, on_commit: Callable[[], None]
    ) -> None:
        self._store = store
        self._merges = merges
        self._on_commit = on_commit

    def names_for(self, where: BucketFilter) -> list[str]:
        """Returns the names a filter designates.

        Raises:
            TooMany: more than MAX_BULK match.
        """
        names = self._store.matching_names(where, MAX_BULK + 1)
        if len(names) > MAX_BULK:
            raise TooMany(
                f"the filter matches more than {MAX_BULK} buckets; one request changes at most "
                f"{MAX_BULK}: narrow the filter (state, mode, prefix) or send names"
            )
        return names

    def apply(
        self, actor: Actor, action: BulkAction, names: Sequence[str], into: str | None = None
    ) -> list[BucketOutcome]:
        """Applies the action to each named bucket; one outcome (and audit entry) each."""
        outcomes = [self._one(action, name, into) for name in dict.fromkeys(names)]
        if any(o.outcome in ("updated", "removed", "merged") for o in outcomes):
            self._on_commit()
        for outcome in outcomes:
            detail: dict[str, Any] = {"bulk": len(outcomes) > 1}
            if into is not None:
                detail["into"] = into
            if outcome.detail:
                detail["detail"] = outcome.detail
            record_audit(
                self._store.engine,
                actor,
                f"bucket.{action.value}",
                outcome.name,
                outcome.outcome,
                detail=detail,
            )
        return outcomes

    def _one(self, action: BulkAction, name: str, into: str | None) -> BucketOutcome:
        if action is BulkAction.MERGE:
            return self._merge(name, into)
        if action is BulkAction.REMOVE:
            row = self._store.remove(name)
            if row is None:
                return BucketOutcome(name, "not_found", detail=f"no bucket named {name}")
            return BucketOutcome(name, "removed")
        change = self._store.approve if action is BulkAction.APPROVE else self._store.disable
        return _decided(name, change(name))

    def _merge(self, name: str, into: str | None) -> BucketOutcome:
        if into is None:
            return BucketOutcome(
                name, "refused", detail="merge needs `into`: the bucket that stays"
            )
        try:
            result = self._merges.merge(name, into)
        except MergeRefused as refused:
            outcome = "not_found" if refused.status == 404 else "refused"
            return BucketOutcome(name, outcome, detail=refused.message)
        return BucketOutcome(name, result.status, state=result.bucket.state)


def _decided(name: str, decision: Decision | None) -> BucketOutcome:
    if decision is None or decision.row is None:
        return BucketOutcome(name, "not_found", detail=f"no bucket named {name}")
    return BucketOutcome(name, decision.verdict.value, state=decision.row.state)


# -- alerts -----------------------------------------------------------------------------------


class AlertRefused(Exception):
    """An alert change that cannot be made; nothing was changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


OPEN_STATES = ("firing", "acknowledged")


def acknowledge_alert(engine: Engine, actor: Actor, alert_id: str) -> str:
    """Acknowledges a firing alert occurrence; returns `acknowledged` or `unchanged`.

    The transition of `rbr_runtime.db.acknowledgements`: an acknowledged occurrence stays
    open, is resolved as usual, and is never paged again (repeats are only counted).

    Raises:
        AlertRefused: 404 no such alert, 409 it is resolved.
    """
    return with_retries(lambda: _acknowledge_once(engine, actor, alert_id))


def _acknowledge_once(engine: Engine, actor: Actor, alert_id: str) -> str:
    now = utcnow()
    with engine.begin() as connection:
        state = connection.execute(
            select(alerts.c.state).where(alerts.c.alert_id == alert_id).with_for_update()
        ).scalar_one_or_none()
        if state is None:
            raise AlertRefused(404, f"no alert with id {alert_id}")
        if state == "resolved":
            raise AlertRefused(409, f"alert {alert_id} is resolved: nothing to acknowledge")
        changed = acknowledge(connection, alerts.c.alert_id == alert_id, actor.name, now)
        outcome = "acknowledged" if changed else "unchanged"
        record_audit(connection, actor, "alert.acknowledge", alert_id, outcome, at=now)
    return outcome


def resolve_alert(engine: Engine, actor: Actor, alert_id: str) -> str:
    """Queues the resolve of an open alert occurrence on `alerts`; returns `queued`.

    The notifier applies it as any resolve: it closes the open occurrences of the dedupe key
    and sends the resolve to the channels that got the trigger. The producer of the alert
    fires it again if its condition still holds.

    Raises:
        AlertRefused: 404 no such alert, 409 it is resolved already.
    """
    return with_retries(lambda: _resolve_once(engine, actor, alert_id))


def _resolve_once(engine: Engine, actor: Actor, alert_id: str) -> str:
    now = utcnow()
    with engine.begin() as connection:
        row = connection.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
        if row is None:
            raise AlertRefused(404, f"no alert with id {alert_id}")
        if row.state not in OPEN_STATES:
            raise AlertRefused(409, f"alert {alert_id} is resolved already")
        resolve = Alert(
            alert_id=row.alert_id,
            dedupe_key=row.dedupe_key,
            type=row.type,
            severity=Severity(row.severity),
            state=AlertState.RESOLVED,
            bucket=row.bucket,
            title=row.title,
            detail=f"Resolved by {actor.name} (operator).",
            source=SOURCE,
            occurred_at=now,
            context={"resolved_by": actor.name},
        )
        _queue_alert(connection, resolve, now, f"{alert_id}:resolve:{now.isoformat()}")
        record_audit(connection, actor, "alert.resolve", alert_id, "queued", at=now)
    return "queued"


def queue_channel_test(
    engine: Engine, actor: Actor, channel: str, now: datetime | None = None
) -> str:
    """Queues a test alert addressed to one notification channel; returns its alert id.

    The notifier sends it to that channel only (whatever its filters) and records the
    delivery under this id (`GET /api/v1/alerts/{id}` shows it); a channel the notifier does
    not have gets nothing, and the alert shows no delivery.
    """
    when = now or utcnow()
    alert_id = str(uuid.uuid4())
    alert = Alert(
        alert_id=alert_id,
        dedupe_key=f"test:{channel}:{alert_id}",
        type=AlertType.TEST.value,
        severity=Severity.INFO,
        state=AlertState.FIRING,
        title=f"Test notification for channel {channel}",
        detail=f"A test sent by {actor.name} from the operator API. No action is needed.",
        source=SOURCE,
        occurred_at=when,
        context={TEST_CHANNEL_CONTEXT: channel, "sent_by": actor.name},
    )
    with engine.begin() as connection:
        _queue_alert(connection, alert, when, alert_id)
        record_audit(
            connection, actor, "channel.test", channel, "queued", detail={"alert_id": alert_id}
        )
    return alert_id


def _queue_alert(connection: Any, alert: Alert, now: datetime, event_seed: str) -> None:
    event_id = str(uuid.uuid5(EVENT_NAMESPACE, event_seed))
    event = make_event(ALERTS, alert, source=SOURCE, subject=alert.bucket, event_id=event_id)
    OUTBOX.add(connection, [OutboxMessage(ALERTS.name, alert.dedupe_key, encode(event))], now)

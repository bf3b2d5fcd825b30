"""Prometheus metrics of the notifier (served on /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

ALERT_EVENTS = Counter(
    "rbr_notifier_alert_events_total",
    "Alert events handled, by state and what they meant (new, repeat, resolve, replay).",
    ["state", "outcome"],
)
DELIVERIES = Counter(
    "rbr_notifier_deliveries_total",
    "Notifications that reached an end state, by channel, kind and state "
    "(sent, throttled, failed, rejected, skipped).",
    ["channel", "kind", "state"],
)
ATTEMPTS = Counter(
    "rbr_notifier_attempts_total",
    "Tries at sending, by channel and result (ok, retry, permanent).",
    ["channel", "result"],
)
ATTEMPT_SECONDS = Histogram(
    "rbr_notifier_attempt_seconds",
    "Duration of one try at sending, by channel.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DIGESTS = Counter(
    "rbr_notifier_digests_total",
    "Digests of throttled notifications, by channel and state (sent, failed, rejected).",
    ["channel", "state"],
)
DIGEST_RESOLVES = Counter(
    "rbr_notifier_digest_resolves_total",
    "Resolves of digests (PagerDuty, Opsgenie) once all their alerts resolved, by channel and "
    "state (sent, failed, rejected).",
    ["channel", "state"],
)
DIGEST_BACKLOG = Gauge(
    "rbr_notifier_digest_backlog",
    "Notifications folded by the throttle and waiting for their window's digest.",
)
CHANNELS = Gauge("rbr_notifier_channels", "Channels configured, by type.", ["type"])
RETRIES = Counter(
    "rbr_notifier_retries_total",
    "Tries of waiting deliveries by the retry sweeper, by channel and how they ended: sent, "
    "waiting (failed, tried again later), failed (given up on, alert dead-lettered), rejected.",
    ["channel", "result"],
)
PENDING = Gauge(
    "rbr_notifier_pending_deliveries",
    "Deliveries waiting for a retry (state waiting: their channel did not take them yet), by "
    "channel.",
    ["channel"],
)

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """Returns `metric.labels(*values)`, kept: `labels` checks and converts on every call.

    The hot paths (every event, delivery and try) use it; a metric's children are never
    removed, so a kept one stays the one exported.
    """
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*values))
    return child

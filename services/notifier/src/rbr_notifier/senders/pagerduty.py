"""PagerDuty Events API v2: `POST {base_url}/v2/enqueue`, answered 202 when accepted.

A trigger and its resolve share the alert's dedupe key (`dedup_key`); a digest triggers and
resolves under `rbr-digest:<window start>:<channel>`. 400 is permanent, 429 and 5xx retried.
"""

from __future__ import annotations

from typing import Any

from rbr_notifier.channels import PagerDutyChannel
from rbr_notifier.model import Kind, Notification
from rbr_notifier.render import clip, digest_line, headline, one_line
from rbr_notifier.senders.base import AttemptResult, HttpSender
from rbr_schemas import Severity

PAGERDUTY_SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}
CLIENT = "Rustbucket Registry"
DEFAULT_SOURCE = "rustbucket-registry"


def pagerduty_event(
    notification: Notification,
    routing_key: str,
    *,
    action: str,
    dedup_key: str,
    client_url: str | None = None,
) -> dict[str, Any]:
    """Returns one Events API v2 event for the notification."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key[:255],
    }
    if action != "trigger":
        return event
    event["payload"] = _payload(notification)
    event["client"] = CLIENT
    if client_url:
        event["client_url"] = client_url
    return event


def _payload(notification: Notification) -> dict[str, Any]:
    if notification.kind is Kind.DIGEST:
        digest = notification.require_digest()
        return {
            "summary": clip(headline(notification, 1024), 1024),
            "source": DEFAULT_SOURCE,
            "severity": PAGERDUTY_SEVERITY[digest.highest_severity],
            "timestamp": digest.window_end.isoformat(),
            "class": "digest",
            "component": "notifier",
            "custom_details": {
                "channel": notification.channel,
                "total": digest.total,
                "alerts": [digest_line(item) for item in digest.items],
            },
        }
    alert = notification.require_alert()
    return {
        "summary": clip(one_line(alert.title, 1024), 1024),
        "source": one_line(alert.bucket or alert.source or DEFAULT_SOURCE, 255),
        "severity": PAGERDUTY_SEVERITY[alert.severity],
        "timestamp": alert.fired_at.isoformat(),
        "class": alert.type,
        "component": alert.bucket or "registry",
        "group": "rustbucket-registry",
        "custom_details": {
            **{key: value for key, value in alert.as_json().items() if key != "context"},
            "severity": alert.severity.value,
            **{f"context.{key}": value for key, value in alert.context.items()},
        },
    }


class PagerDutySender(HttpSender):
    """Sends events to one PagerDuty service integration."""

    channel_type = "pagerduty"
    closes_digests = True

    def __init__(self, config: PagerDutyChannel, timeout: float) -> None:
        super().__init__(config, timeout)
        self._url = f"{config.base_url.rstrip('/')}/v2/enqueue"
        self._routing_key = config.routing_key.get_secret_value()
        self._client_url = config.client_url

    def send(self, notification: Notification) -> AttemptResult:
        """Triggers or resolves; a test triggers then resolves its own incident."""
        if notification.kind is Kind.TEST:
            test_key = f"rbr-test:{notification.channel}:{notification.require_alert().alert_id}"
            triggered = self._event(notification, "trigger", test_key)
            return triggered if not triggered.ok else self._event(notification, "resolve", test_key)
        action = "resolve" if notification.kind is Kind.RESOLVE else "trigger"
        return self._event(notification, action, notification.dedupe_key)

    def _event(self, notification: Notification, action: str, dedup_key: str) -> AttemptResult:
        event = pagerduty_event(
            notification,
            self._routing_key,
            action=action,
            dedup_key=dedup_key,
            client_url=self._client_url,
        )
        return self.post_json(self._url, event)

"""Opsgenie Alert API: create by alias, close by alias; `Authorization: GenieKey <key>`.

Fields, limits and responders follow Opsgenie's Alert API documentation (README: "opsgenie");
both calls are answered 202 Accepted and processed asynchronously.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from rbr_notifier.channels import OpsgenieChannel
from rbr_notifier.model import Kind, Notification
from rbr_notifier.render import clip, digest_line, headline, one_line, when
from rbr_notifier.senders.base import AttemptResult, HttpSender
from rbr_schemas import Severity

OPSGENIE_PRIORITY = {
    Severity.CRITICAL: "P1",
    Severity.HIGH: "P2",
    Severity.MEDIUM: "P3",
    Severity.LOW: "P4",
    Severity.INFO: "P5",
}
SOURCE = "rustbucket-registry"
MAX_DETAILS_CHARS = 8000
MAX_TAGS = 20


def _details(values: dict[str, Any]) -> dict[str, str]:
    """Returns a string map within Opsgenie's 8,000-character budget for details."""
    details: dict[str, str] = {}
    used = 0
    for key, value in values.items():
        if value is None:
            continue
        text = clip(one_line(str(value), 1000), 1000)
        name = clip(str(key), 100)
        if used + len(name) + len(text) > MAX_DETAILS_CHARS:
            break
        details[name] = text
        used += len(name) + len(text)
    return details


def _tags(*candidates: str | None) -> list[str]:
    tags: list[str] = []
    for tag in candidates:
        if tag and tag not in tags:
            tags.append(clip(one_line(tag, 50), 50))
    return tags[:MAX_TAGS]


def create_request(
    notification: Notification, alias: str, config: OpsgenieChannel
) -> dict[str, Any]:
    """Returns the body of a create-alert request."""
    responders = [responder.as_json() for responder in config.responders]
    if notification.kind is Kind.DIGEST:
        digest = notification.require_digest()
        body: dict[str, Any] = {
            "message": headline(notification, 130),
            "alias": alias[:512],
            "description": clip("\n".join(digest_line(i) for i in digest.items), 15000),
            "priority": OPSGENIE_PRIORITY[digest.highest_severity],
            "tags": _tags("rbr", "digest", *config.tags),
            "details": _details({"channel": notification.channel, "total": digest.total}),
            "source": SOURCE,
        }
        return {**body, "responders": responders} if responders else body
    alert = notification.require_alert()
    body = {
        "message": one_line(alert.title, 130),
        "alias": alias[:512],
        "description": clip(alert.detail or alert.title, 15000),
        "priority": OPSGENIE_PRIORITY[alert.severity],
        "tags": _tags("rbr", alert.type, f"severity:{alert.severity.value}", *config.tags),
        "details": _details(
            {
                "alert_id": alert.alert_id,
                "dedupe_key": alert.dedupe_key,
                "type": alert.type,
                "severity": alert.severity.value,
                "bucket": alert.bucket,
                "fired_at": when(alert.fired_at),
                "raised_by": alert.source,
                **{f"context.{key}": value for key, value in alert.context.items()},
            }
        ),
        "entity": clip(alert.bucket or "registry", 512),
        "source": SOURCE,
    }
    return {**body, "responders": responders} if responders else body


def close_request(notification: Notification) -> dict[str, Any]:
    """Returns the body of a close-alert request (an alert's, or a digest's)."""
    if notification.digest is not None:
        total = notification.digest.total
        noun = "alert" if total == 1 else "alerts"
        note = f"All {total} {noun} of this digest resolved (Rustbucket Registry)."
        return {"source": SOURCE, "note": note}
    alert = notification.require_alert()
    return {
        "source": SOURCE,
        "note": clip(f"Resolved at {when(alert.resolved_at)} (Rustbucket Registry).", 25000),
    }


class OpsgenieSender(HttpSender):
    """Creates and closes alerts through one Opsgenie API integration."""

    channel_type = "opsgenie"
    closes_digests = True

    def __init__(self, config: OpsgenieChannel, timeout: float) -> None:
        super().__init__(config, timeout)
        self._config = config
        self._alerts_url = f"{config.api_url}/v2/alerts"
        self._headers = {"Authorization": f"GenieKey {config.api_key.get_secret_value()}"}

    def send(self, notification: Notification) -> AttemptResult:
        """Creates (trigger, digest), closes (resolve), or creates then closes (test)."""
        if notification.kind is Kind.TEST:
            alias = f"rbr-test:{notification.channel}:{notification.require_alert().alert_id}"
            created = self._create(notification, alias)
            return created if not created.ok else self._close(notification, alias)
        if notification.kind is Kind.RESOLVE:
            return self._close(notification, notification.dedupe_key)
        return self._create(notification, notification.dedupe_key)

    def _create(self, notification: Notification, alias: str) -> AttemptResult:
        body = create_request(notification, alias, self._config)
        return self.post_json(self._alerts_url, body, self._headers)

    def _close(self, notification: Notification, alias: str) -> AttemptResult:
        url = f"{self._alerts_url}/{quote(alias[:512], safe='')}/close?identifierType=alias"
        return self.post_json(url, close_request(notification), self._headers)

"""Generic webhooks: a JSON document per notification, signed with HMAC-SHA256.

`X-Rbr-Signature` is `sha256=` + hex HMAC-SHA256(secret, "<X-Rbr-Timestamp>." + raw body); the
body's `delivery_id` is stable across retries, so receivers drop duplicates on it (README:
"Verifying the signature").
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from rbr_notifier.channels import WebhookChannel
from rbr_notifier.model import Notification
from rbr_notifier.senders.base import AttemptResult, HttpSender, json_body
from rbr_schemas import utcnow

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Rbr-Signature"
TIMESTAMP_HEADER = "X-Rbr-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Returns the X-Rbr-Signature value for a body sent at a timestamp."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_payload(notification: Notification) -> dict[str, Any]:
    """Returns the JSON document posted for a notification."""
    digest = notification.digest
    return {
        "version": PAYLOAD_VERSION,
        "kind": notification.kind.value,
        "channel": notification.channel,
        "delivery_id": notification.delivery_id,
        "sent_at": utcnow().isoformat(),
        "alert": notification.alert.as_json() if notification.alert else None,
        "digest": None
        if digest is None
        else {
            "window_start": digest.window_start.isoformat(),
            "window_end": digest.window_end.isoformat(),
            "total": digest.total,
            "items": [
                {"kind": item.kind.value, "alert": item.alert.as_json()} for item in digest.items
            ],
        },
    }


class WebhookSender(HttpSender):
    """Posts signed JSON to one endpoint."""

    channel_type = "webhook"

    def __init__(self, config: WebhookChannel, timeout: float) -> None:
        super().__init__(config, timeout)
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value().encode() if config.secret else None
        self._headers = {name: value.get_secret_value() for name, value in config.headers.items()}

    def send(self, notification: Notification) -> AttemptResult:
        """Posts the notification's document, signed."""
        payload = webhook_payload(notification)
        body = json_body(payload)
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "X-Rbr-Event": notification.kind.value,
            "X-Rbr-Delivery": payload["delivery_id"],
        }
        if self._secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        return self.post(self._url, body, headers)

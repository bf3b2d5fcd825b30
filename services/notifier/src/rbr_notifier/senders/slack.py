"""Slack incoming webhooks.

`POST <webhook URL>` with `text` (the notification fallback) and Block Kit `blocks` (header,
section, context), as Slack's "Sending messages using incoming webhooks" documents. Slack
answers 200 "ok", or 4xx with an error word (invalid_payload, no_service, channel_is_archived,
...), which is permanent, or 429/5xx, which is retried.
"""

from __future__ import annotations

from rbr_notifier.channels import SlackChannel
from rbr_notifier.model import Notification
from rbr_notifier.render import headline, slack_blocks, slack_escape
from rbr_notifier.senders.base import AttemptResult, HttpSender


def slack_payload(notification: Notification) -> dict[str, object]:
    """Returns the webhook body: escaped fallback text plus blocks."""
    return {
        # `text` is parsed as mrkdwn too: escaped, so a hostile title cannot mention anyone.
        "text": slack_escape(headline(notification, 300)),
        "blocks": slack_blocks(notification),
    }


class SlackSender(HttpSender):
    """Posts to one Slack incoming webhook."""

    channel_type = "slack"

    def __init__(self, config: SlackChannel, timeout: float) -> None:
        super().__init__(config, timeout)
        self._url = config.url.get_secret_value()

    def send(self, notification: Notification) -> AttemptResult:
        """Posts the notification."""
        return self.post_json(self._url, slack_payload(notification))

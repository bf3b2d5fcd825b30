"""One sender per channel type; `build_sender` picks it from the channel's configuration."""

from __future__ import annotations

from rbr_notifier.channels import (
    ChannelConfig,
    EmailChannel,
    OpsgenieChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from rbr_notifier.senders.base import AttemptResult, Outcome, Sender
from rbr_notifier.senders.email import EmailSender
from rbr_notifier.senders.opsgenie import OpsgenieSender
from rbr_notifier.senders.pagerduty import PagerDutySender
from rbr_notifier.senders.slack import SlackSender
from rbr_notifier.senders.webhook import WebhookSender


def build_sender(config: ChannelConfig, default_timeout: float) -> Sender:
    """Returns the sender for a channel; the channel's own timeout wins over the default."""
    timeout = config.timeout or default_timeout
    if isinstance(config, EmailChannel):
        return EmailSender(config, timeout)
    if isinstance(config, SlackChannel):
        return SlackSender(config, timeout)
    if isinstance(config, WebhookChannel):
        return WebhookSender(config, timeout)
    if isinstance(config, PagerDutyChannel):
        return PagerDutySender(config, timeout)
    if isinstance(config, OpsgenieChannel):
        return OpsgenieSender(config, timeout)
    raise TypeError(f"no sender for channel type {type(config).__name__}")


__all__ = ["AttemptResult", "Outcome", "Sender", "build_sender"]

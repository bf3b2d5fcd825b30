"""The long retry schedule: when a delivery its channel did not take is tried again, until when.

Waits grow with how long the delivery has waited, from `initial` up to `max_interval`, until
`max_age` after its first failed try; then its alert goes to alerts.dlq. The defaults per
channel type follow the providers' guidance (cited at `DEFAULT_SCHEDULES`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from rbr_notifier.channels import ChannelConfig


@dataclass(frozen=True)
class Schedule:
    """How a waiting delivery is retried: first wait, longest wait, how long in all (seconds)."""

    initial: float
    max_interval: float
    max_age: float

    def deadline(self, waiting_since: datetime) -> datetime:
        """Returns when a delivery waiting since then is given up on."""
        return waiting_since + timedelta(seconds=self.max_age)

    def expired(self, waiting_since: datetime | None, now: datetime) -> bool:
        """Tells whether a delivery waiting since then must be given up on now."""
        return waiting_since is not None and now >= self.deadline(waiting_since)

    def next_attempt(
        self, waiting_since: datetime, now: datetime, retry_after: float | None = None
    ) -> datetime:
        """Returns when to try again after a failed try at `now`.

        The wait is as long as the delivery has waited so far (so waits double), between
        `initial` and `max_interval`, ±20 % jitter so that deliveries failed together do not
        come back together, at least the server's Retry-After (up to `max_interval`), and
        never past the deadline: the last try is made at the deadline.
        """
        waited = (now - waiting_since).total_seconds()
        delay = min(self.max_interval, max(self.initial, waited)) * random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_interval))
        return min(now + timedelta(seconds=delay), self.deadline(waiting_since))


MINUTE, HOUR = 60.0, 3600.0
# What the providers ask of their clients:
# * PagerDuty Events API v2 ("API Response Codes & Retry Logic",
#   https://developer.pagerduty.com/docs/events-api-v2/overview/): 429, any 5xx and networking
#   errors: "Yes - retry after some time"; "If each of the events your monitoring system is
#   sending is important, be sure to retry on a 429 response code, preferably with a back off."
#   A page is what matters most: a day, waits up to 15 min.
# * Opsgenie ("Rate Limiting", https://docs.opsgenie.com/docs/api-rate-limiting): requests over
#   its limits are refused with 429 (or delayed); the Alert API answers 202 and processes
#   requests asynchronously. An alert matters as much as a page: same as PagerDuty.
# * Slack ("Rate limits", https://api.slack.com/apis/rate-limits): about one message per second
#   per incoming webhook; beyond it, HTTP 429 with Retry-After, the seconds to wait (honoured).
#   A chat message hours late is still worth having: 6 h, waits up to 30 min.
# * Email: RFC 5321 section 4.5.4.1 asks a sender to wait at least 30 minutes between retries
#   and to give up only after 4-5 days. The notifier only hands mail to its relay, which then
#   queues it by those rules, so it starts sooner (1 min) but keeps the 30 min ceiling, a day.
# * Generic webhooks: like Slack.
DEFAULT_SCHEDULES: dict[str, Schedule] = {
    "pagerduty": Schedule(initial=30, max_interval=15 * MINUTE, max_age=24 * HOUR),
    "opsgenie": Schedule(initial=30, max_interval=15 * MINUTE, max_age=24 * HOUR),
    "slack": Schedule(initial=30, max_interval=30 * MINUTE, max_age=6 * HOUR),
    "webhook": Schedule(initial=30, max_interval=30 * MINUTE, max_age=6 * HOUR),
    "email": Schedule(initial=MINUTE, max_interval=30 * MINUTE, max_age=24 * HOUR),
}
"""The schedule of each channel type when the channel's `retry` leaves a field out."""


def schedule_of(channel: ChannelConfig) -> Schedule | None:
    """Returns the channel's retry schedule: its own fields, else its type's; None if it has none.

    A channel with `retry: false` or `max_age: 0` has none: a delivery whose first tries all
    failed is given up on at once (the alert goes to alerts.dlq).
    """
    default = DEFAULT_SCHEDULES[channel.type]
    own = channel.retry
    max_interval = own.max_interval if own and own.max_interval else default.max_interval
    schedule = Schedule(
        initial=min(own.initial if own and own.initial else default.initial, max_interval),
        max_interval=max_interval,
        max_age=own.max_age if own and own.max_age is not None else default.max_age,
    )
    return schedule if schedule.max_age > 0 else None

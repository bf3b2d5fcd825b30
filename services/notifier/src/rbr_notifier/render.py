"""Turning a notification into words: headlines, plain text, HTML and Slack mrkdwn.

Alert titles and details can carry attacker-controlled text (the analyst quotes honeypot
logs), so every renderer escapes for its medium: HTML is escaped, Slack's control characters
(&, <, >) become entities so a log line cannot @-mention a channel or forge a link, and one-line
fields lose their line breaks so nothing can inject a header.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rbr_notifier.model import AlertView, Digest, DigestItem, Kind, Notification
from rbr_schemas import Severity

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
SEVERITY_EMOJI = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.HIGH: ":red_circle:",
    Severity.MEDIUM: ":large_orange_diamond:",
    Severity.LOW: ":large_blue_diamond:",
    Severity.INFO: ":information_source:",
}
RESOLVED_EMOJI = ":white_check_mark:"
TEST_EMOJI = ":test_tube:"
DIGEST_EMOJI = ":package:"


def one_line(text: str, limit: int) -> str:
    """Returns text on one line (control characters become spaces), cut to `limit` chars."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)].rstrip() + "…"


def clip(text: str, limit: int) -> str:
    """Returns text cut to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def when(moment: datetime | None) -> str:
    """Returns a timestamp as 2026-11-21 09:35:00 UTC."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def headline(notification: Notification, limit: int = 200) -> str:
    """Returns the one-line summary used as subject, Slack fallback text and titles."""
    if notification.kind is Kind.DIGEST:
        return one_line(digest_headline(notification.require_digest()), limit)
    alert = notification.require_alert()
    prefix = {
        Kind.TRIGGER: f"FIRING [{alert.severity.value.upper()}]",
        Kind.RESOLVE: "RESOLVED",
        Kind.TEST: "TEST",
    }[notification.kind]
    return one_line(f"{prefix} {alert.title}", limit)


def digest_headline(digest: Digest) -> str:
    """Returns the summary line of a digest."""
    noun = "notification" if digest.total == 1 else "notifications"
    return (
        f"{digest.total} alert {noun} held back by the throttle between "
        f"{digest.window_start:%H:%M:%S} and {digest.window_end:%H:%M:%S} UTC"
    )


def alert_facts(alert: AlertView, kind: Kind) -> list[tuple[str, str]]:
    """Returns the labelled facts of an alert, in display order."""
    facts = [
        ("Severity", alert.severity.value),
        ("Type", alert.type),
        ("Bucket", alert.bucket or "-"),
        ("Fired at", when(alert.fired_at)),
    ]
    if kind is Kind.RESOLVE:
        facts.append(("Resolved at", when(alert.resolved_at)))
    facts += [
        ("Dedupe key", alert.dedupe_key),
        ("Alert id", alert.alert_id),
        ("Source", alert.source),
    ]
    return [(label, one_line(value, 300)) for label, value in facts]


def context_lines(context: dict[str, Any]) -> list[str]:
    """Returns `key: value` lines for an alert's context."""
    return [one_line(f"{key}: {value}", 300) for key, value in sorted(context.items())]


def digest_line(item: DigestItem) -> str:
    """Returns one line describing a folded notification."""
    alert = item.alert
    state = "RESOLVED" if item.kind is Kind.RESOLVE else f"FIRING [{alert.severity.value}]"
    where = f" ({alert.bucket})" if alert.bucket else ""
    return one_line(f"{state} {alert.title}{where} — {alert.dedupe_key}", 300)


def text_body(notification: Notification) -> str:
    """Returns the plain-text body (emails)."""
    if notification.kind is Kind.DIGEST:
        return _digest_text(notification.require_digest(), notification.channel)
    alert = notification.require_alert()
    lines = [headline(notification, 300), ""]
    if notification.kind is Kind.TEST:
        lines += [f"A test of channel {notification.channel}: if you read this, it works.", ""]
    width = max(len(label) for label, _ in alert_facts(alert, notification.kind))
    lines += [
        f"{label + ':':<{width + 1}} {value}"
        for label, value in alert_facts(alert, notification.kind)
    ]
    if alert.detail:
        lines += ["", alert.detail]
    if alert.context:
        lines += ["", "Context:", *(f"  {line}" for line in context_lines(alert.context))]
    lines += ["", "-- ", "Rustbucket Registry notifier"]
    return "\n".join(lines) + "\n"


def _digest_text(digest: Digest, channel: str) -> str:
    lines = [one_line(digest_headline(digest), 300), ""]
    lines += [f"Channel {channel} reached its throttle; these were folded into this digest:", ""]
    lines += [f"- {digest_line(item)}" for item in digest.items]
    hidden = digest.total - len(digest.items)
    if hidden > 0:
        lines.append(f"- … and {hidden} more (see `rbr alerts list`)")
    lines += ["", "-- ", "Rustbucket Registry notifier"]
    return "\n".join(lines) + "\n"


def html_body(notification: Notification) -> str:
    """Returns the HTML body (emails); every value is escaped."""
    title = html.escape(headline(notification, 300))
    if notification.kind is Kind.DIGEST:
        digest = notification.require_digest()
        items = "".join(f"<li>{html.escape(digest_line(item))}</li>" for item in digest.items)
        hidden = digest.total - len(digest.items)
        more = f"<li>… and {hidden} more</li>" if hidden > 0 else ""
        content = f"<ul>{items}{more}</ul>"
    else:
        content = _alert_html(notification.require_alert(), notification.kind)
    return (
        '<!DOCTYPE html><html><body style="font-family: sans-serif">'
        f"<h2>{title}</h2>{content}"
        '<p style="color: #777">Rustbucket Registry notifier</p></body></html>'
    )


def _alert_html(alert: AlertView, kind: Kind) -> str:
    rows = "".join(
        f'<tr><th align="left">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>'
        for label, value in alert_facts(alert, kind)
    )
    detail = f"<pre>{html.escape(alert.detail)}</pre>" if alert.detail else ""
    context = ""
    if alert.context:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in context_lines(alert.context))
        context = f"<h3>Context</h3><ul>{items}</ul>"
    return f"<table>{rows}</table>{detail}{context}"


def slack_escape(text: str) -> str:
    """Escapes Slack's control characters (&, <, >) so text is shown, never parsed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_blocks(notification: Notification) -> list[dict[str, Any]]:
    """Returns the Block Kit blocks of a notification (within Slack's documented limits)."""
    if notification.kind is Kind.DIGEST:
        return _digest_blocks(notification.require_digest())
    alert = notification.require_alert()
    emoji = {
        Kind.TRIGGER: SEVERITY_EMOJI[alert.severity],
        Kind.RESOLVE: RESOLVED_EMOJI,
        Kind.TEST: TEST_EMOJI,
    }[notification.kind]
    facts = alert_facts(alert, notification.kind)
    blocks: list[dict[str, Any]] = [
        _header(f"{emoji} {headline(notification, 300)}"),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": clip(f"*{label}*\n{slack_escape(value)}", 2000)}
                for label, value in facts[:4]
            ],
        },
    ]
    if alert.detail:
        blocks.append(_section(slack_escape(alert.detail)))
    if alert.context:
        blocks.append(_section(slack_escape("\n".join(context_lines(alert.context)))))
    ids = " · ".join(f"{label}: {slack_escape(value)}" for label, value in facts[4:])
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(ids, 3000)}]})
    return blocks


def _digest_blocks(digest: Digest) -> list[dict[str, Any]]:
    blocks = [_header(f"{DIGEST_EMOJI} {digest_headline(digest)}")]
    lines = [
        f"{RESOLVED_EMOJI if item.kind is Kind.RESOLVE else SEVERITY_EMOJI[item.alert.severity]}"
        f" {slack_escape(digest_line(item))}"
        for item in digest.items
    ]
    hidden = digest.total - len(digest.items)
    if hidden > 0:
        lines.append(f"… and {hidden} more (see `rbr alerts list`)")
    blocks += [_section(chunk) for chunk in _chunks(lines, 2900)][:48]
    return blocks


def _chunks(lines: Iterable[str], limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + len(line) + 1 > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else clip(line, limit)
    if current:
        chunks.append(current)
    return chunks


def _header(text: str) -> dict[str, Any]:
    # Header blocks take plain_text of at most 150 characters. Angle brackets become look-alike
    # quotes, so nothing in a hostile title can ever read as <!channel> or a link.
    plain = text.replace("<", "\u2039").replace(">", "\u203a")
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(plain, 150), "emoji": True},
    }


def _section(mrkdwn: str) -> dict[str, Any]:
    # Section text is at most 3000 characters.
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, 3000)}}

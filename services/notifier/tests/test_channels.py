"""Each channel against a real server: SMTP on loopback, HTTP receivers for the web APIs.

Payloads are checked against the providers' documented request formats (JSON Schemas written
from the PagerDuty Events API v2, Opsgenie Alert API and Slack Block Kit references; see the
README's "Provider formats" section).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest

from rbr_notifier.channels import ChannelConfig, ChannelConfigError, parse_channels
from rbr_notifier.model import (
    DELIVERY_NAMESPACE,
    AlertState,
    AlertView,
    Digest,
    DigestItem,
    Kind,
    Notification,
    name_uuid,
)
from rbr_notifier.senders import Outcome, Sender, build_sender
from rbr_notifier.senders.base import trust_context
from rbr_schemas import Severity
from rbr_testing.http_receiver import HttpReceiver, Reply
from rbr_testing.smtp import SmtpServer

T0 = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)
HOSTILE_TITLE = "Login as root <!channel> <script>alert(1)</script>\r\nBcc: evil@example.com"
WEBHOOK_SECRET = "whsec-test-0123456789"


def alert(**changes: Any) -> AlertView:
    values: dict[str, Any] = {
        "alert_id": "3f6c2b1a-9d8e-5f7a-b6c5-d4e3f2a1b0c9",
        "dedupe_key": "bucket_unresponsive:rustbucket-a1",
        "type": "bucket_unresponsive",
        "severity": Severity.HIGH,
        "state": AlertState.FIRING,
        "title": "Bucket rustbucket-a1 has not answered for 15 minutes",
        "detail": "No successful poll since 09:20; last error: timeout.",
        "source": "/rbr/poller",
        "fired_at": T0,
        "bucket": "rustbucket-a1",
        "context": {"consecutive_failures": 3},
    }
    return AlertView(**{**values, **changes})


def channel(document: dict[str, Any], **environ: str) -> ChannelConfig:
    return parse_channels({"channels": [document]}, environ=environ).channels[0]


@pytest.fixture
def senders() -> Any:
    built: list[Sender] = []

    def make(document: dict[str, Any], **environ: str) -> Sender:
        sender = build_sender(channel(document, **environ), default_timeout=2.0)
        built.append(sender)
        return sender

    yield make
    for sender in built:
        sender.close()


# -- email -------------------------------------------------------------------------------------


def email_channel(server: SmtpServer, **changes: Any) -> dict[str, Any]:
    return {
        "name": "ops-email",
        "type": "email",
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "username": "alerts",
        "password": "${SMTP_PASSWORD}",
        "from": "Rustbucket Registry <alerts@rbr.example>",
        "to": ["secops@example.com", "oncall@example.com"],
        "ca_file": str(server.ca_file),
        **changes,
    }


def test_email_over_starttls_reaches_every_recipient_with_text_and_html(
    smtp_server: SmtpServer, senders: Callable[..., Sender]
) -> None:
    sender = senders(email_channel(smtp_server), SMTP_PASSWORD="s3cret-pass")
    hostile = alert(title=HOSTILE_TITLE, detail="payload: <img src=x onerror=alert(1)>")

    result = sender.send(Notification(Kind.TRIGGER, "ops-email", alert=hostile))

    assert result.outcome is Outcome.OK, result
    (mail,) = smtp_server.wait_for_messages(1)
    assert mail.encrypted
    assert mail.authenticated_as == "alerts"
    assert mail.mail_from == "alerts@rbr.example"
    assert sorted(mail.rcpt_tos) == ["oncall@example.com", "secops@example.com"]
    message = mail.message
    assert message["From"] == "Rustbucket Registry <alerts@rbr.example>"
    assert "secops@example.com" in message["To"]
    assert "oncall@example.com" in message["To"]
    assert message["Subject"].startswith("[rbr] FIRING [HIGH] Login as root")
    assert "Bcc" not in message  # the CR/LF in the title cannot inject a header
    assert message["X-Rbr-Dedupe-Key"] == "bucket_unresponsive:rustbucket-a1"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Bucket:     rustbucket-a1" in text.get_content()
    assert "payload: <img src=x onerror=alert(1)>" in text.get_content()
    assert "&lt;script&gt;" in html.get_content()
    assert "<script>" not in html.get_content()
    assert "<img src=x" not in html.get_content()


def test_email_resolve_threads_under_its_trigger(
    smtp_server: SmtpServer, senders: Callable[..., Sender]
) -> None:
    sender = senders(email_channel(smtp_server), SMTP_PASSWORD="s3cret-pass")
    firing = alert()
    resolved = alert(state=AlertState.RESOLVED, resolved_at=T0 + timedelta(minutes=20))

    assert sender.send(Notification(Kind.TRIGGER, "ops-email", alert=firing)).ok
    assert sender.send(Notification(Kind.RESOLVE, "ops-email", alert=resolved)).ok

    trigger, resolve = (m.message for m in smtp_server.wait_for_messages(2))
    assert resolve["Subject"].startswith("[rbr] RESOLVED ")
    assert resolve["In-Reply-To"] == trigger["Message-ID"]
    assert resolve["References"] == trigger["Message-ID"]
    assert "Resolved at: 2026-11-21 09:20:00 UTC" in str(resolve.get_body(("plain",)))


def test_email_over_implicit_tls(
    smtp_server_factory: Callable[..., SmtpServer], senders: Callable[..., Sender]
) -> None:
    server = smtp_server_factory("ssl", username="alerts", password="p4ss")
    sender = senders(
        email_channel(server, to=["a@example.com", "b@example.com", "c@example.com"]),
        SMTP_PASSWORD="p4ss",
    )

    assert sender.send(Notification(Kind.TRIGGER, "ops-email", alert=alert())).ok

    (mail,) = server.wait_for_messages(1)
    assert mail.encrypted
    assert sorted(mail.rcpt_tos) == ["a@example.com", "b@example.com", "c@example.com"]


def test_email_wrong_password_is_permanent_and_never_echoes_it(
    smtp_server: SmtpServer, senders: Callable[..., Sender]
) -> None:
    sender = senders(email_channel(smtp_server), SMTP_PASSWORD="wrong-password-123")

    result = sender.send(Notification(Kind.TRIGGER, "ops-email", alert=alert()))

    assert result.outcome is Outcome.PERMANENT
    assert "535" in (result.error or "")
    assert "wrong-password-123" not in (result.error or "")
    assert smtp_server.messages == []


def test_email_unknown_certificate_authority_is_refused(
    smtp_server: SmtpServer, senders: Callable[..., Sender]
) -> None:
    document = email_channel(smtp_server)
    del document["ca_file"]
    sender = senders(document, SMTP_PASSWORD="s3cret-pass")

    result = sender.send(Notification(Kind.TRIGGER, "ops-email", alert=alert()))

    assert result.outcome is Outcome.PERMANENT
    assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert smtp_server.messages == []


def test_a_ca_file_is_trusted_in_addition_to_the_usual_authorities(
    smtp_server: SmtpServer,
) -> None:
    usual = {cert["serialNumber"] for cert in trust_context(None).get_ca_certs()}
    extra = trust_context(smtp_server.ca_file).get_ca_certs()

    serials = {cert["serialNumber"] for cert in extra}
    assert usual  # certifi's bundle at least
    assert usual < serials  # nothing replaced, the channel's CA added


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("451 4.3.0 Try again later", Outcome.RETRY), ("554 5.7.1 Rejected", Outcome.PERMANENT)],
)
def test_email_smtp_replies_decide_retry(
    smtp_server: SmtpServer, senders: Callable[..., Sender], reply: str, outcome: Outcome
) -> None:
    sender = senders(email_channel(smtp_server), SMTP_PASSWORD="s3cret-pass")
    smtp_server.fail_next(reply)

    result = sender.send(Notification(Kind.TRIGGER, "ops-email", alert=alert()))

    assert result.outcome is outcome
    assert reply.split(maxsplit=1)[0] in (result.error or "")


def test_email_connection_refused_is_retried(senders: Callable[..., Sender]) -> None:
    sender = senders(
        {
            "name": "m",
            "type": "email",
            "host": "127.0.0.1",
            "port": 1,
            "security": "none",
            "from": "a@rbr.example",
            "to": ["b@example.com"],
        }
    )
    result = sender.send(Notification(Kind.TRIGGER, "m", alert=alert()))
    assert result.outcome is Outcome.RETRY


# -- Slack -------------------------------------------------------------------------------------

TEXT_OBJECT = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["plain_text", "mrkdwn"]}, "text": {"type": "string"}},
}
SLACK_MESSAGE = {
    "type": "object",
    "required": ["text", "blocks"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "header"},
                            "text": {
                                **TEXT_OBJECT,
                                "properties": {
                                    "type": {"const": "plain_text"},
                                    "text": {"type": "string", "minLength": 1, "maxLength": 150},
                                },
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type"],
                        "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                        "properties": {
                            "type": {"const": "section"},
                            "text": {
                                **TEXT_OBJECT,
                                "properties": {
                                    "type": {"enum": ["plain_text", "mrkdwn"]},
                                    "text": {"type": "string", "minLength": 1, "maxLength": 3000},
                                },
                            },
                            "fields": {
                                "type": "array",
                                "maxItems": 10,
                                "items": {
                                    **TEXT_OBJECT,
                                    "properties": {
                                        "type": {"enum": ["plain_text", "mrkdwn"]},
                                        "text": {"type": "string", "maxLength": 2000},
                                    },
                                },
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "properties": {
                            "type": {"const": "context"},
                            "elements": {"type": "array", "maxItems": 10, "items": TEXT_OBJECT},
                        },
                    },
                ]
            },
        },
    },
}


def test_slack_message_follows_block_kit_and_escapes_hostile_text(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    sender = senders(
        {"name": "slack", "type": "slack", "url": "${SLACK_URL}"},
        SLACK_URL=f"{http_receiver.url}/services/T000/B000/XXXX",
    )
    hostile = alert(title=HOSTILE_TITLE, detail="<@U123> & <https://evil.example|click>")

    assert sender.send(Notification(Kind.TRIGGER, "slack", alert=hostile)).ok

    (request,) = http_receiver.wait_for_requests(1)
    assert request.path == "/services/T000/B000/XXXX"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    jsonschema.validate(body, SLACK_MESSAGE)
    assert body["blocks"][0]["type"] == "header"
    assert "FIRING [HIGH]" in body["text"]
    raw = request.body.decode()
    for forbidden in ("<!channel>", "<@U123>", "<https://evil.example|click>"):
        assert forbidden not in raw
    assert "&lt;!channel&gt;" in body["text"]


def test_slack_digest_lists_folded_alerts_within_limits(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    sender = senders({"name": "slack", "type": "slack", "url": f"{http_receiver.url}/hook"})
    items = tuple(
        DigestItem(Kind.TRIGGER, alert(alert_id=f"id-{i}", dedupe_key=f"k:{i}", title="x" * 250))
        for i in range(60)
    )
    digest = Digest(T0, T0 + timedelta(minutes=5), items, total=75)

    assert sender.send(Notification(Kind.DIGEST, "slack", digest=digest)).ok

    body = http_receiver.wait_for_requests(1)[0].json()
    jsonschema.validate(body, SLACK_MESSAGE)
    assert "75 alert notifications held back" in body["text"]
    assert "and 15 more" in body["blocks"][-1]["text"]["text"]


def test_slack_refusal_is_permanent_and_hides_the_webhook_url(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    http_receiver.respond(Reply(404, b"no_service"))
    url = f"{http_receiver.url}/services/T000/B000/SECRETPATH"
    sender = senders({"name": "slack", "type": "slack", "url": "${URL}"}, URL=url)

    result = sender.send(Notification(Kind.TRIGGER, "slack", alert=alert()))

    assert result.outcome is Outcome.PERMANENT
    assert result.http_status == 404
    assert result.error == "no_service"


# -- generic webhook ---------------------------------------------------------------------------


def verify_signature(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """The verification procedure the README documents for receivers."""
    timestamp = headers["x-rbr-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", headers["x-rbr-signature"])


def test_webhook_body_is_signed_and_verifiable(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    sender = senders(
        {
            "name": "siem",
            "type": "webhook",
            "url": f"{http_receiver.url}/ingest",
            "secret": "${HOOK_SECRET}",
            "headers": {"Authorization": "Bearer ${SIEM_TOKEN}"},
        },
        HOOK_SECRET=WEBHOOK_SECRET,
        SIEM_TOKEN="tok-123",
    )
    notification = Notification(Kind.TRIGGER, "siem", alert=alert())

    assert sender.send(notification).ok

    (request,) = http_receiver.wait_for_requests(1)
    assert verify_signature(WEBHOOK_SECRET.encode(), request.headers, request.body)
    assert not verify_signature(WEBHOOK_SECRET.encode(), request.headers, request.body + b" ")
    assert not verify_signature(b"another-secret", request.headers, request.body)
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["x-rbr-event"] == "trigger"
    assert request.headers["x-rbr-delivery"] == notification.delivery_id
    body = request.json()
    assert body["version"] == 1
    assert body["kind"] == "trigger"
    assert body["delivery_id"] == notification.delivery_id
    assert body["alert"]["dedupe_key"] == "bucket_unresponsive:rustbucket-a1"
    assert body["alert"]["severity"] == "high"
    assert body["alert"]["context"] == {"consecutive_failures": 3}


def test_webhook_delivery_id_is_stable_across_tries(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    sender = senders({"name": "siem", "type": "webhook", "url": f"{http_receiver.url}/x"})
    notification = Notification(Kind.RESOLVE, "siem", alert=alert(state=AlertState.RESOLVED))
    sender.send(notification)
    sender.send(notification)
    first, second = http_receiver.wait_for_requests(2)
    assert first.headers["x-rbr-delivery"] == second.headers["x-rbr-delivery"]
    # What receivers dedupe on (the README): the body's delivery_id, the same on each try.
    assert first.json()["delivery_id"] == second.json()["delivery_id"]
    assert first.json()["delivery_id"] == first.headers["x-rbr-delivery"]
    trigger = Notification(Kind.TRIGGER, "siem", alert=alert())
    assert trigger.delivery_id != notification.delivery_id  # trigger and resolve differ
    assert "x-rbr-signature" not in first.headers  # no secret configured: unsigned


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        (Reply(503, b"busy"), Outcome.RETRY, None),
        (Reply(429, b"slow down", {"Retry-After": "7"}), Outcome.RETRY, 7.0),
        (Reply(400, b"bad"), Outcome.PERMANENT, None),
        (Reply(301, b"", {"Location": "https://elsewhere.example/"}), Outcome.PERMANENT, None),
    ],
)
def test_http_answers_are_classified(
    http_receiver: HttpReceiver,
    senders: Callable[..., Sender],
    reply: Reply,
    outcome: Outcome,
    retry_after: float | None,
) -> None:
    http_receiver.respond(reply)
    sender = senders({"name": "siem", "type": "webhook", "url": f"{http_receiver.url}/x"})
    result = sender.send(Notification(Kind.TRIGGER, "siem", alert=alert()))
    assert (result.outcome, result.http_status, result.retry_after) == (
        outcome,
        reply.status,
        retry_after,
    )


def test_slow_endpoint_times_out_as_retryable(
    http_receiver: HttpReceiver, senders: Callable[..., Sender]
) -> None:
    http_receiver.respond(Reply(200, delay=1.5))
    sender = senders(
        {"name": "slow", "type": "webhook", "url": f"{http_receiver.url}/x", "timeout": 0.3}
    )
    result = sender.send(Notification(Kind.TRIGGER, "slow", alert=alert()))
    assert result.outcome is Outcome.RETRY
    assert "timeout" in (result.error or "")


# -- PagerDuty ---------------------------------------------------------------------------------

PAGERDUTY_EVENT = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "properties": {
        "routing_key": {"type": "string", "minLength": 1},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    "else": {"required": ["dedup_key"]},
}


@pytest.fixture
def pagerduty(http_receiver: HttpReceiver, senders: Callable[..., Sender]) -> Sender:
    http_receiver.respond(
        Reply(202, b'{"status":"success","message":"Event processed","dedup_key":"k"}')
    )
    return senders(
        {"name": "pd", "type": "pagerduty", "routing_key": "${PD}", "base_url": http_receiver.url},
        PD="R0123456789ABCDEF0123456789ABCDE",
    )


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, "critical"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "info"),
        (Severity.INFO, "info"),
    ],
)
def test_pagerduty_trigger_matches_events_api_v2(
    http_receiver: HttpReceiver, pagerduty: Sender, severity: Severity, expected: str
) -> None:
    assert pagerduty.send(Notification(Kind.TRIGGER, "pd", alert=alert(severity=severity))).ok

    (request,) = http_receiver.wait_for_requests(1)
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    event = request.json()
    jsonschema.validate(event, PAGERDUTY_EVENT, format_checker=jsonschema.FormatChecker())
    assert event["routing_key"] == "R0123456789ABCDEF0123456789ABCDE"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "bucket_unresponsive:rustbucket-a1"
    assert event["payload"]["severity"] == expected
    assert event["payload"]["source"] == "rustbucket-a1"
    assert event["payload"]["custom_details"]["alert_id"] == alert().alert_id


def test_pagerduty_resolve_and_test_events(http_receiver: HttpReceiver, pagerduty: Sender) -> None:
    resolved = alert(state=AlertState.RESOLVED, resolved_at=T0)
    assert pagerduty.send(Notification(Kind.RESOLVE, "pd", alert=resolved)).ok
    assert pagerduty.send(Notification(Kind.TEST, "pd", alert=alert(alert_id="t1"))).ok

    resolve, test_trigger, test_resolve = (r.json() for r in http_receiver.wait_for_requests(3))
    for event in (resolve, test_trigger, test_resolve):
        jsonschema.validate(event, PAGERDUTY_EVENT)
    assert resolve == {
        "routing_key": "R0123456789ABCDEF0123456789ABCDE",
        "event_action": "resolve",
        "dedup_key": "bucket_unresponsive:rustbucket-a1",
    }
    assert test_trigger["event_action"] == "trigger"
    assert test_resolve["event_action"] == "resolve"
    assert test_trigger["dedup_key"] == test_resolve["dedup_key"] == "rbr-test:pd:t1"


def test_pagerduty_digest_is_one_event(http_receiver: HttpReceiver, pagerduty: Sender) -> None:
    items = (
        DigestItem(Kind.TRIGGER, alert(severity=Severity.CRITICAL)),
        DigestItem(Kind.RESOLVE, alert(alert_id="b", dedupe_key="k:b")),
    )
    digest = Digest(T0, T0 + timedelta(minutes=5), items, total=2)
    assert pagerduty.send(Notification(Kind.DIGEST, "pd", digest=digest)).ok
    event = http_receiver.wait_for_requests(1)[0].json()
    jsonschema.validate(event, PAGERDUTY_EVENT)
    assert event["payload"]["severity"] == "critical"
    assert event["dedup_key"].startswith("rbr-digest:")
    assert len(event["payload"]["custom_details"]["alerts"]) == 2


# -- Opsgenie ----------------------------------------------------------------------------------

OPSGENIE_CREATE = {
    "type": "object",
    "required": ["message"],
    "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 130},
        "alias": {"type": "string", "maxLength": 512},
        "description": {"type": "string", "maxLength": 15000},
        "responders": {
            "type": "array",
            # A user by id or username; a team, escalation or schedule by id or name.
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "id"],
                        "properties": {
                            "type": {"enum": ["team", "user", "escalation", "schedule"]},
                            "id": {"type": "string", "minLength": 1},
                        },
                    },
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "username"],
                        "properties": {
                            "type": {"const": "user"},
                            "username": {"type": "string", "minLength": 1},
                        },
                    },
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "name"],
                        "properties": {
                            "type": {"enum": ["team", "escalation", "schedule"]},
                            "name": {"type": "string", "minLength": 1},
                        },
                    },
                ]
            },
        },
        "visibleTo": {"type": "array"},
        "actions": {"type": "array", "maxItems": 10, "items": {"type": "string"}},
        "tags": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 50}},
        "details": {"type": "object", "additionalProperties": {"type": "string"}},
        "entity": {"type": "string", "maxLength": 512},
        "source": {"type": "string", "maxLength": 100},
        "priority": {"enum": ["P1", "P2", "P3", "P4", "P5"]},
        "user": {"type": "string", "maxLength": 100},
        "note": {"type": "string", "maxLength": 25000},
    },
}
OPSGENIE_CLOSE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "user": {"type": "string", "maxLength": 100},
        "source": {"type": "string", "maxLength": 100},
        "note": {"type": "string", "maxLength": 25000},
    },
}


@pytest.fixture
def opsgenie(http_receiver: HttpReceiver, senders: Callable[..., Sender]) -> Sender:
    http_receiver.respond(
        Reply(202, b'{"result":"Request will be processed","took":0.1,"requestId":"r"}')
    )
    return senders(
        {
            "name": "og",
            "type": "opsgenie",
            "api_key": "${OG_KEY}",
            "base_url": http_receiver.url,
            "responders": [
                {"type": "team", "name": "SecOps"},
                {"type": "user", "name": "trinity@example.com"},
                {"type": "escalation", "name": "Nightwatch"},
                {"type": "schedule", "id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c"},
            ],
            "tags": ["honeypot"],
        },
        OG_KEY="eb243592-faa2-4ba2-a551-1afdf565c889",
    )


def test_opsgenie_create_and_close_by_alias(http_receiver: HttpReceiver, opsgenie: Sender) -> None:
    long_title = "Successful login on rustbucket-a1 followed by a download of " + "x" * 200
    firing = alert(title=long_title, severity=Severity.CRITICAL, context={"ip": "203.0.113.9"})
    assert opsgenie.send(Notification(Kind.TRIGGER, "og", alert=firing)).ok
    resolved = alert(state=AlertState.RESOLVED, resolved_at=T0)
    assert opsgenie.send(Notification(Kind.RESOLVE, "og", alert=resolved)).ok

    create, close = http_receiver.wait_for_requests(2)
    for request in (create, close):
        assert request.headers["authorization"] == "GenieKey eb243592-faa2-4ba2-a551-1afdf565c889"
    assert (create.method, create.path) == ("POST", "/v2/alerts")
    body = create.json()
    jsonschema.validate(body, OPSGENIE_CREATE)
    assert body["alias"] == "bucket_unresponsive:rustbucket-a1"
    assert body["priority"] == "P1"
    assert len(body["message"]) <= 130
    assert body["responders"] == [
        {"type": "team", "name": "SecOps"},
        {"type": "user", "username": "trinity@example.com"},
        {"type": "escalation", "name": "Nightwatch"},
        {"type": "schedule", "id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c"},
    ]
    assert {"rbr", "bucket_unresponsive", "severity:critical", "honeypot"} <= set(body["tags"])
    assert body["details"]["context.ip"] == "203.0.113.9"
    assert close.method == "POST"
    assert unquote(close.path) == "/v2/alerts/bucket_unresponsive:rustbucket-a1/close"
    assert close.query == {"identifierType": ["alias"]}
    jsonschema.validate(close.json(), OPSGENIE_CLOSE)


def test_opsgenie_test_creates_then_closes(http_receiver: HttpReceiver, opsgenie: Sender) -> None:
    assert opsgenie.send(Notification(Kind.TEST, "og", alert=alert(alert_id="t9"))).ok
    create, close = http_receiver.wait_for_requests(2)
    assert create.json()["alias"] == "rbr-test:og:t9"
    assert unquote(close.path) == "/v2/alerts/rbr-test:og:t9/close"


@pytest.mark.parametrize(
    "responder",
    [{"type": "team"}, {"type": "user", "name": "neo@example.com", "id": "u-1"}],
)
def test_opsgenie_responder_needs_exactly_one_of_name_or_id(responder: dict[str, str]) -> None:
    channel = {"name": "o", "type": "opsgenie", "api_key": "k", "responders": [responder]}
    with pytest.raises(ChannelConfigError, match="exactly one of name or id"):
        parse_channels({"channels": [channel]})


def test_opsgenie_region_selects_the_api() -> None:
    eu = channel({"name": "o", "type": "opsgenie", "api_key": "k", "region": "eu"})
    us = channel({"name": "o", "type": "opsgenie", "api_key": "k"})
    assert eu.target() == "https://api.eu.opsgenie.com/v2/alerts"
    assert us.target() == "https://api.opsgenie.com/v2/alerts"


def test_opsgenie_digest_is_one_alert(http_receiver: HttpReceiver, opsgenie: Sender) -> None:
    items = tuple(
        DigestItem(Kind.TRIGGER, alert(alert_id=f"a{i}", dedupe_key=f"k:{i}", severity=severity))
        for i, severity in enumerate((Severity.LOW, Severity.HIGH))
    )
    digest = Digest(T0, T0 + timedelta(minutes=5), items, total=2)
    assert opsgenie.send(Notification(Kind.DIGEST, "og", digest=digest)).ok
    body = http_receiver.wait_for_requests(1)[0].json()
    jsonschema.validate(body, OPSGENIE_CREATE)
    assert body["alias"].startswith("rbr-digest:")
    assert body["priority"] == "P2"
    assert "k:0" in body["description"]
    assert "k:1" in body["description"]


def test_email_digest_lists_the_folded_alerts(
    smtp_server: SmtpServer, senders: Callable[..., Sender]
) -> None:
    sender = senders(email_channel(smtp_server), SMTP_PASSWORD="s3cret-pass")
    items = (
        DigestItem(Kind.TRIGGER, alert(alert_id="a1", dedupe_key="k:one", bucket="b1")),
        DigestItem(Kind.RESOLVE, alert(alert_id="a2", dedupe_key="k:two", bucket="b2")),
    )
    digest = Digest(T0, T0 + timedelta(minutes=5), items, total=3)

    assert sender.send(Notification(Kind.DIGEST, "ops-email", digest=digest)).ok

    message = smtp_server.wait_for_messages(1)[0].message
    assert message["Subject"] == (
        "[rbr] 3 alert notifications held back by the throttle between 09:00:00 and 09:05:00 UTC"
    )
    text = str(message.get_body(("plain",)).get_content())
    assert "FIRING [high]" in text
    assert "k:one" in text
    assert "RESOLVED" in text
    assert "k:two" in text
    assert "and 1 more" in text


@pytest.mark.parametrize(
    "name",
    ["", "a", "3f6c2b1a-9d8e-5f7a-b6c5-d4e3f2a1b0c9|siem|trigger", "é✓|x|resolve"]
    + [f"{uuid.UUID(int=i * 7919)}|bench|trigger" for i in range(64)],
)
def test_delivery_ids_are_uuid5_of_the_namespace(name: str) -> None:
    assert name_uuid(name) == str(uuid.uuid5(DELIVERY_NAMESPACE, name))

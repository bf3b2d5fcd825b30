"""Email over SMTP: STARTTLS (587), implicit TLS (465) or plain (25), with optional AUTH.

One connection per message, a plain-text and an HTML part, a stable Message-ID per (alert,
channel, kind) so a resolve threads under its trigger. 4xx replies and network errors are
retried; 5xx, failed authentication and certificate failures are permanent.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from rbr_notifier.channels import EmailChannel
from rbr_notifier.model import Kind, Notification, message_id
from rbr_notifier.render import headline, html_body, one_line, text_body
from rbr_notifier.senders.base import AttemptResult, Outcome, Sender, trust_context


def build_message(notification: Notification, config: EmailChannel) -> EmailMessage:
    """Returns the email for a notification."""
    domain = config.from_address.rpartition("@")[2] or "rbr.invalid"
    message = EmailMessage()
    message["Subject"] = one_line(f"{config.subject_prefix} {headline(notification, 200)}", 250)
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(usegmt=True)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Rbr-Kind"] = notification.kind.value
    if notification.alert is not None and notification.kind is not Kind.TEST:
        alert = notification.alert
        message["Message-ID"] = message_id(alert.alert_id, config.name, notification.kind, domain)
        message["X-Rbr-Alert-Id"] = one_line(alert.alert_id, 100)
        message["X-Rbr-Dedupe-Key"] = one_line(alert.dedupe_key, 255)
        if notification.kind is Kind.RESOLVE:
            trigger = message_id(alert.alert_id, config.name, Kind.TRIGGER, domain)
            message["In-Reply-To"] = trigger
            message["References"] = trigger
    else:
        message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text_body(notification))
    message.add_alternative(html_body(notification), subtype="html")
    return message


class EmailSender(Sender):
    """Sends mail through one SMTP relay."""

    channel_type = "email"

    def __init__(self, config: EmailChannel, timeout: float) -> None:
        super().__init__(config.name, config.secrets())
        self._config = config
        self._timeout = timeout
        self._tls = trust_context(config.ca_file)
        if not config.tls_verify:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    def send(self, notification: Notification) -> AttemptResult:
        """Sends the notification as one message to every recipient."""
        message = build_message(notification, self._config)
        try:
            refused = self._deliver(message)
        except smtplib.SMTPRecipientsRefused as error:
            return self._refused(error.recipients)
        except smtplib.SMTPResponseException as error:
            return self._smtp_error(error)
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as error:
            return AttemptResult(Outcome.PERMANENT, error=self._describe(error))
        except (smtplib.SMTPException, OSError) as error:
            return AttemptResult(Outcome.RETRY, error=self._describe(error))
        if refused:
            note = f"{len(refused)} of {len(self._config.to)} recipient(s) refused"
            return AttemptResult(Outcome.OK, error=note)
        return AttemptResult(Outcome.OK)

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        config = self._config
        with self._connect() as smtp:
            if config.username is not None:
                password = config.password.get_secret_value() if config.password else ""
                smtp.login(config.username, password)
            return smtp.send_message(message, from_addr=config.from_address, to_addrs=config.to)

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        port = config.effective_port
        if config.security == "ssl":
            return smtplib.SMTP_SSL(config.host, port, timeout=self._timeout, context=self._tls)
        smtp = smtplib.SMTP(config.host, port, timeout=self._timeout)
        if config.security == "starttls":
            try:
                smtp.starttls(context=self._tls)
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _smtp_error(self, error: smtplib.SMTPResponseException) -> AttemptResult:
        outcome = Outcome.RETRY if 400 <= error.smtp_code < 500 else Outcome.PERMANENT
        raw = error.smtp_error or b""
        reply = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return AttemptResult(outcome, error=self.scrub(f"SMTP {error.smtp_code} {reply}"))

    def _refused(self, recipients: dict[str, tuple[int, bytes]]) -> AttemptResult:
        codes = sorted({code for code, _ in recipients.values()})
        transient = all(400 <= code < 500 for code in codes)
        return AttemptResult(
            Outcome.RETRY if transient else Outcome.PERMANENT,
            error=f"all recipients refused (SMTP {', '.join(map(str, codes))})",
        )

    def _describe(self, error: BaseException) -> str:
        return self.scrub(f"{type(error).__name__}: {error}")

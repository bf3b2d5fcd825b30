"""A real SMTP server on loopback (aiosmtpd) that records what it receives.

Three variants, as mail relays offer them: `starttls` (plain connection upgraded with STARTTLS,
which the server requires before AUTH and MAIL), `ssl` (implicit TLS from the first byte, as
on port 465) and `none` (plain, for local relays). The certificate is issued for 127.0.0.1 and
localhost by a throwaway CA (trustme) whose PEM file is `server.ca_file`, so clients verify
it for real. With `username`/`password` set, the server checks logins and requires one
(except over implicit TLS, where aiosmtpd would refuse AUTH as unencrypted).
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from rbr_testing.broker import free_port

Security = Literal["starttls", "ssl", "none"]


@dataclass(frozen=True)
class ReceivedMail:
    """One message accepted by the server."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None
    encrypted: bool


class _Recorder:
    """The aiosmtpd handler: records accepted messages, or answers a scripted failure."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        failure = self._server._next_failure()
        if failure is not None:
            return failure
        raw = envelope.original_content or envelope.content or b""
        login = session.auth_data.login.decode() if session.authenticated else None
        encrypted = self._server.security == "ssl" or session.ssl is not None
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self._server._record(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
                authenticated_as=login,
                encrypted=encrypted,
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """A running SMTP server on 127.0.0.1."""

    def __init__(
        self,
        security: Security,
        certificate_dir: Path,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.security = security
        self.host = "127.0.0.1"
        self.port = free_port()
        self.username = username
        self.password = password
        self.ca_file = certificate_dir / "smtp-ca.pem"
        self._messages: list[ReceivedMail] = []
        self._failures: deque[str] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._controller = Controller(
            _Recorder(self), hostname=self.host, port=self.port, **self._tls_options()
        )

    def _tls_options(self) -> dict[str, Any]:
        authenticate = self.username is not None
        options: dict[str, Any] = {
            # aiosmtpd knows TLS only through STARTTLS: with implicit TLS it would refuse AUTH
            # as unencrypted, so there AUTH is offered (and checked) but not required.
            "auth_required": authenticate and self.security != "ssl",
            "authenticator": self._authenticate if authenticate else None,
            "auth_require_tls": self.security == "starttls",
        }
        if self.security == "none":
            return options
        context = self._server_context()
        if self.security == "ssl":
            return {**options, "ssl_context": context}
        return {**options, "tls_context": context, "require_starttls": True}

    def _server_context(self) -> ssl.SSLContext:
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(self.ca_file))
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        return context

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        matches = (
            auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        if not matches:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)

    @property
    def messages(self) -> list[ReceivedMail]:
        """Returns the messages accepted so far."""
        with self._lock:
            return list(self._messages)

    def fail_next(self, reply: str, times: int = 1) -> None:
        """Answers the next `times` messages with an SMTP error, e.g. "451 4.3.0 Try later"."""
        with self._lock:
            self._failures.extend([reply] * times)

    def wait_for_messages(self, count: int, timeout: float = 20.0) -> list[ReceivedMail]:
        """Waits until at least `count` messages were accepted and returns them all.

        Raises:
            AssertionError: fewer arrived before the deadline.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self._messages)} message(s) after {timeout}s, wanted {count}"
                    )
                self._arrived.wait(remaining)
            return list(self._messages)

    def start(self) -> SmtpServer:
        """Starts the server; returns self."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stops the server."""
        self._controller.stop()

    def _record(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self._messages.append(mail)
            self._arrived.notify_all()

    def _next_failure(self) -> str | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None


@pytest.fixture
def smtp_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., SmtpServer]]:
    """Starts SMTP servers on demand: `factory("ssl", username="u", password="p")`."""
    started: list[SmtpServer] = []

    def start(
        security: Security = "starttls",
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> SmtpServer:
        server = SmtpServer(
            security,
            tmp_path_factory.mktemp("smtp"),
            username=username,
            password=password,
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """An SMTP server requiring STARTTLS and authentication as alerts / s3cret-pass."""
    return smtp_server_factory("starttls", username="alerts", password="s3cret-pass")

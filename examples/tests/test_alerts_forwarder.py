"""The external-subscriber example, run as a separate process against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, Alert, AlertState, Severity
from rbr_testing.broker import Broker

EXAMPLE = Path(__file__).resolve().parents[1] / "alerts_forwarder.py"


class Receiver:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses = list(statuses or [])
        self.answered: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                status = receiver.statuses.pop(0) if receiver.statuses else 202
                receiver.answered.append(status)
                if status < 300:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ingest"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


def alert(severity: Severity, n: int) -> Alert:
    return Alert(
        alert_id=f"a-{n}",
        dedupe_key=f"bucket_unresponsive:rustbucket-{n}",
        type="bucket_unresponsive",
        severity=severity,
        state=AlertState.FIRING,
        bucket=f"rustbucket-{n}",
        title=f"rustbucket-{n} is not answering",
        source="/rbr/poller",
        occurred_at=datetime(2026, 11, 21, 9, n, tzinfo=UTC),
    )


def test_forwarder_delivers_validated_alerts_above_the_threshold(
    broker: Broker, receiver: Receiver
) -> None:
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/poller")
    sent = [
        producer.send(ALERTS, a.dedupe_key, a)
        for a in (alert(Severity.LOW, 1), alert(Severity.HIGH, 2), alert(Severity.CRITICAL, 3))
    ]
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap",
            broker.bootstrap,
            "--group",
            "soc",
            "--forward-to",
            receiver.url,
            "--min-severity",
            "high",
            "--max-messages",
            "3",
            "-X",
            "session.timeout.ms=2000",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(body["id"] for body in receiver.bodies) == sorted(e.id for e in sent[1:])
    assert {h["Idempotency-Key"] for h in receiver.headers} == {e.id for e in sent[1:]}
    assert {body["data"]["severity"] for body in receiver.bodies} == {"high", "critical"}


def test_forwarder_retries_while_the_endpoint_is_busy_and_skips_what_it_refuses(
    broker: Broker,
) -> None:
    receiver = Receiver(statuses=[429, 503, 202, 400])
    try:
        producer = EventProducer(
            CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/poller"
        )
        first = producer.send(ALERTS, "k-1", alert(Severity.HIGH, 1))
        producer.send(ALERTS, "k-1", alert(Severity.HIGH, 2))
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "--bootstrap",
                broker.bootstrap,
                "--group",
                "soc",
                "--forward-to",
                receiver.url,
                "--max-messages",
                "2",
                "-X",
                "session.timeout.ms=2000",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    finally:
        receiver.server.shutdown()
    assert result.returncode == 0, result.stderr
    assert receiver.answered == [429, 503, 202, 400]
    assert [body["id"] for body in receiver.bodies] == [first.id]
    assert "refused alert" in result.stderr
    assert "HTTP 400; skipped" in result.stderr

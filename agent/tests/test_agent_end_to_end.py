"""The agent beside a rotating log directory, against the real registry.

Real parts: `rbr-agent` processes (started, stopped, killed), the registrar (HTTP API,
MariaDB, outbox to the broker), the log-extractor's extraction code writing into moto S3 and
announcing on the broker, and the poller service. The agent registers with an enrollment key
and pins its own certificate; the poller and the extractor call it over that pinned TLS with
no CA configured at all.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from sqlalchemy import Engine, func, select

from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.main import make_extractor
from rbr_log_extractor.outcome import ExtractionError, Interrupted
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.store import ExtractState
from rbr_poller.tasks import pull_updates
from rbr_runtime.db.tables import buckets
from rbr_schemas import (
    BUCKET_REGISTERED,
    BUCKET_STATUS,
    LOGS_EXTRACTED,
    BucketRegistered,
    PollErrorClass,
)
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import (
    SIMULATED_BUCKET_PORTS,
    TEST_SECRET_KEY,
    PollerFactory,
    RegistrarFactory,
    RunningRegistrar,
    poller_settings,
)
from rbr_testing.s3 import MotoS3
from rbr_testing.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AgentRunner = Any  # conftest.AgentRunner (a conftest is not importable by name)

pytestmark = [pytest.mark.broker, pytest.mark.mariadb, pytest.mark.s3]

KEY = "agent-enrollment-key"
NAME = "agent-honeypot-1"
MISSING_CA = "/nonexistent/bucket-ca.pem"


@dataclass
class Honeypot:
    """Writes the honeypot's log files the way tracing-appender does; remembers every line."""

    directory: Path
    written: list[bytes] = field(default_factory=list)
    counter: int = 0

    def write(self, file_name: str, count: int, width: int = 60) -> None:
        lines = []
        for _ in range(count):
            self.counter += 1
            text = f"2024-05-01T00:00:00.{self.counter:06d}Z  INFO rustbucket: line {self.counter} "
            lines.append((text + "x" * max(0, width - len(text))).encode() + b"\n")
        with (self.directory / file_name).open("ab") as handle:
            handle.write(b"".join(lines))
        self.written.extend(lines)


@dataclass
class Registry:
    """The registry's side: extractions through the log-extractor's own code, and what arrived."""

    broker: Broker
    extractor: Extractor
    s3: S3Client
    raw_bucket: str

    def record(self, name: str = NAME) -> BucketRegistered:
        events = [e.data for e in read_events(self.broker.bootstrap, BUCKET_REGISTERED)]
        mine = [e for e in events if e.name == name]
        assert mine, f"no bucket.registered for {name}"
        return max(mine, key=lambda record: record.version)

    def extract(self, stopping: Callable[[], bool] = lambda: False) -> None:
        self.extractor.extract(self.record(), stopping)

    def lines(self) -> list[bytes]:
        events = [e.data for e in read_events(self.broker.bootstrap, LOGS_EXTRACTED)]
        got: list[bytes] = []
        for event in sorted(events, key=lambda e: e.extracted_at):
            body = self.s3.get_object(Bucket=event.s3_bucket, Key=event.s3_key)["Body"].read()
            got.extend(body.splitlines(keepends=True))
        return got


@pytest.fixture
def registry(
    broker: Broker, mysql_database_url: str, mysql_engine: Engine, moto_s3: MotoS3
) -> Iterator[Registry]:
    raw_bucket = moto_s3.create_bucket("raw")
    settings = ExtractorSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        database_url=mysql_database_url,
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_bucket=raw_bucket,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        allowed_bucket_networks="127.0.0.0/8",  # type: ignore[arg-type]
        allowed_bucket_ports=SIMULATED_BUCKET_PORTS,  # type: ignore[arg-type]
        http_port=0,
        extract_part_bytes=5 * 1024 * 1024,
        bucket_timeout=10.0,
        bucket_ca_file=MISSING_CA,  # pinned buckets need none
    )
    extractor, s3 = make_extractor(settings, ExtractState(mysql_engine, "test-worker"))
    yield Registry(broker, extractor, s3, raw_bucket)
    extractor.close()


def agent_options(registrar: RunningRegistrar) -> list[str]:
    return [
        "--registrar-url",
        registrar.url,
        "--enrollment-key",
        KEY,
        "--name",
        NAME,
        "--advertise-address",
        "127.0.0.1",
    ]


def wait_registered(registrar: RunningRegistrar, registry: Registry, pin: str | None) -> None:
    def active_with_pin() -> bool:
        with registrar.operator() as operator:
            view = operator.get(f"/api/v1/buckets/{NAME}")
        if view.status_code != 200:
            return False
        body = view.json()
        # The agent says it is one (delivery_mode: agent): the registry records the mode.
        return (body["state"], body["tls_cert_sha256"], body["delivery_mode"]) == (
            "active",
            pin,
            "agent",
        )

    wait_for(active_with_pin, message=f"the agent's bucket active (agent) with pin {pin}")
    wait_for(
        lambda: registry.record().tls_cert_sha256 == pin, message="the pin on bucket.registered"
    )


def pin_of(state_dir: Path) -> str:
    from rbr_agent.tls import fingerprint  # noqa: PLC0415

    return fingerprint(state_dir / "cert.pem")


def test_three_restarts_one_bucket_every_line_once_status_over_pinned_tls(
    tmp_path: Path,
    agent_runner: AgentRunner,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    registry: Registry,
    broker: Broker,
    mysql_engine: Engine,
    agent_port: int,
) -> None:
    registrar = registrar_factory(enrollment_keys=KEY)
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    honeypot = Honeypot(logs)
    port = agent_port
    honeypot.write("rustbucket.log.2024-04-29", 40)
    honeypot.write("rustbucket.log.2024-04-30", 30)

    def start() -> Any:
        return agent_runner.start(
            *agent_options(registrar), port=port, state_dir=state, log_dir=logs
        )

    agent = start()
    pin = pin_of(state)
    wait_registered(registrar, registry, pin)
    assert stat.S_IMODE((state / "state.json").stat().st_mode) == 0o600
    token = json.loads((state / "state.json").read_text())["token"]

    # The poller polls the agent over the pinned TLS; its CA bundle does not even exist.
    poller_factory(poll_interval=1.0, bucket_ca_file=MISSING_CA)
    status = wait_for(
        lambda: next(
            (
                e.data
                for e in read_events(broker.bootstrap, BUCKET_STATUS)
                if e.data.name == NAME and e.data.reachable
            ),
            None,
        ),
        timeout=30,
        message="a reachable status of the agent",
    )
    assert status.updates is not None
    assert status.updates.name == NAME
    assert status.updates.disk_space
    assert status.status == "ok"
    one_shot = pull_updates(poller_settings(broker, mysql_engine, bucket_ca_file=MISSING_CA))
    assert one_shot.startswith("polled 1 active bucket(s): 1 reachable"), one_shot

    registry.extract()
    assert registry.lines() == honeypot.written

    # Rotation while it runs: the day goes on, hourly files begin, the oldest day is
    # compressed (and its plain file removed), a transfer is interrupted by the registry.
    honeypot.write("rustbucket.log.2024-04-30", 5)
    honeypot.write("rustbucket.log.2024-05-01-00", 20)
    _compress(logs / "rustbucket.log.2024-04-29")
    calls = iter(range(1_000_000))
    with pytest.raises(Interrupted):
        registry.extract(stopping=lambda: next(calls) >= 1)
    registry.extract()
    assert Counter(registry.lines()) == Counter(honeypot.written)

    # Restart 1: stopped (SIGTERM) while the honeypot keeps writing.
    honeypot.write("rustbucket.log.2024-05-01-00", 3)
    agent.terminate()
    honeypot.write("rustbucket.log.2024-05-01-00", 4)
    honeypot.write("rustbucket.log.2024-05-01-01", 25)
    agent = start()
    registry.extract()

    # Restart 2: killed right after a pull the registry stored, before it confirmed it
    # (the confirmation reaches the next process, from the ledger on disk). A truncation:
    # the never-rotating rustbucket.log copied aside and emptied (copytruncate).
    honeypot.write("rustbucket.log", 10)
    registry.extract()
    honeypot.write("rustbucket.log", 6)
    (logs / "rustbucket.log.1").write_bytes((logs / "rustbucket.log").read_bytes())
    (logs / "rustbucket.log").write_bytes(b"")
    honeypot.write("rustbucket.log", 7)
    agent.kill()
    agent = start()
    registry.extract()
    assert Counter(registry.lines()) == Counter(honeypot.written)

    # Restart 3: killed in the middle of a transfer (a large hourly file).
    honeypot.write("rustbucket.log.2024-05-01-02", 200_000, width=100)
    killed = agent

    def kill_at_first_chunk() -> bool:
        if killed.process.poll() is None:
            os.kill(killed.process.pid, signal.SIGKILL)
            killed.process.wait(10)
        return False

    with pytest.raises(ExtractionError):
        registry.extract(stopping=kill_at_first_chunk)
    honeypot.write("rustbucket.log.2024-05-01-02", 3)
    agent = start()
    registry.extract()
    registry.extract()

    lines = registry.lines()
    assert len(lines) == len(honeypot.written)
    assert Counter(lines) == Counter(honeypot.written)  # every line, exactly once
    with mysql_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(buckets)).scalar() == 1
    registrations = [e.data for e in read_events(broker.bootstrap, BUCKET_REGISTERED)]
    assert [(r.name, r.version) for r in registrations] == [(NAME, 1)]  # restarts change nothing
    assert pin_of(state) == pin  # the same certificate across restarts
    for started in agent_runner.started:
        assert token not in started.log()  # never logged


def test_a_certificate_that_does_not_match_the_pin_is_refused_and_gets_no_token(
    tmp_path: Path,
    agent_runner: AgentRunner,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    registry: Registry,
    broker: Broker,
    mysql_engine: Engine,
    agent_port: int,
) -> None:
    registrar = registrar_factory(enrollment_keys=KEY)
    logs = tmp_path / "logs"
    logs.mkdir()
    Honeypot(logs).write("rustbucket.log.2024-05-01", 5)
    port = agent_port
    genuine = agent_runner.start(
        *agent_options(registrar), port=port, state_dir=tmp_path / "genuine", log_dir=logs
    )
    wait_registered(registrar, registry, pin_of(tmp_path / "genuine"))
    genuine.terminate()
    # Something else answers at the bucket's address: same software, its own certificate,
    # not registered.
    impostor = agent_runner.start(port=port, state_dir=tmp_path / "impostor", log_dir=logs)

    with pytest.raises(ExtractionError, match="is not the one pinned"):
        registry.extract()
    poller_factory(poll_interval=1.0)
    status = wait_for(
        lambda: next(
            (e.data for e in read_events(broker.bootstrap, BUCKET_STATUS) if e.data.name == NAME),
            None,
        ),
        timeout=30,
        message="a status of the bucket",
    )
    assert not status.reachable
    assert status.error_class is PollErrorClass.TLS
    assert status.error is not None
    assert "not the one pinned" in status.error
    assert registry.lines() == []
    one_shot = pull_updates(poller_settings(broker, mysql_engine))
    assert "0 reachable, 1 not (tls: 1)" in one_shot, one_shot
    # The impostor completed TLS handshakes but never received a request: no token.
    impostor_log = impostor.log()
    assert "/update_bucket" not in impostor_log
    assert "/extract_logs" not in impostor_log
    assert "/healthz" in impostor_log  # (its log does record the requests it gets)


def test_with_the_operators_ca_the_agent_registers_no_pin_and_is_verified_by_the_ca(
    tmp_path: Path,
    agent_runner: AgentRunner,
    registrar_factory: RegistrarFactory,
    registry: Registry,
    broker: Broker,
    mysql_engine: Engine,
    agent_port: int,
) -> None:
    registrar = registrar_factory(enrollment_keys=KEY)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "agent-key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "agent-cert.pem"))
    (tmp_path / "logs").mkdir()
    agent_runner.start(
        *agent_options(registrar),
        "--tls-mode",
        "ca",
        "--tls-cert",
        str(tmp_path / "agent-cert.pem"),
        "--tls-key",
        str(tmp_path / "agent-key.pem"),
        port=agent_port,
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "logs",
    )
    wait_registered(registrar, registry, None)
    assert not (tmp_path / "state" / "cert.pem").exists()  # no certificate of its own
    verified = pull_updates(
        poller_settings(broker, mysql_engine, bucket_ca_file=str(tmp_path / "ca.pem"))
    )
    assert verified.startswith("polled 1 active bucket(s): 1 reachable"), verified
    unverified = pull_updates(poller_settings(broker, mysql_engine))  # the system's CAs
    assert "(tls: 1)" in unverified, unverified


def _compress(path: Path) -> None:
    with path.open("rb") as source, gzip.open(path.with_name(path.name + ".gz"), "wb") as gz:
        gz.write(source.read())
    path.unlink()

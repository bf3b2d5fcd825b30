"""`rbr stack` (what `make run` runs): brings everything up, keeps it up, Ctrl-C stops it all."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from mypy_boto3_s3 import S3Client

from rbr_cli.plugins import SERVICES_GROUP, discovered
from rbr_cli.stack import BROKER_PORT, S3_PORT, SERVICE_PORTS
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import current_revision, head_revision
from rbr_schemas import all_topic_names
from rbr_testing.simulator import FleetFactory
from rbr_testing.stack import RunningStack, free_offset
from rbr_testing.stack import port_free as _free
from rbr_testing.waiting import wait_for

ENROLLMENT_KEY = "stack-test-key"
# A fleet that flows within seconds: buckets enrol active, are polled every second and
# pulled every two.
FAST_FLEET = {
    "RBR_ENROLLMENT_KEYS": ENROLLMENT_KEY,
    "RBR_POLL_INTERVAL": "1",
    "RBR_EXTRACT_INTERVAL": "2",
    "RBR_EXTRACT_TICK": "0.5",
}
ROWS = "SELECT COUNT(*) FROM logs"


class Output:
    """Collects a process's output on a thread, so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def test_stack_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    offset = free_offset()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RBR_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rbr_cli",
            "stack",
            "--port-offset",
            str(offset),
            "--var-dir",
            str(tmp_path / "var"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    services = sorted(discovered(SERVICES_GROUP))
    try:
        wait_for(
            lambda: "Ctrl-C" in output.text() or process.poll() is not None,
            timeout=90,
            message="stack up",
        )
        assert process.poll() is None, output.text()

        metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{BROKER_PORT + offset}"})
        assert set(all_topic_names()) <= set(metadata.list_topics(timeout=10).topics)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{S3_PORT + offset}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        s3.head_bucket(Bucket="rbr-raw-logs")
        engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'rbr.db'}")
        assert current_revision(engine) == head_revision()
        engine.dispose()
        assert (tmp_path / "var" / "local.env").stat().st_mode & 0o077 == 0
        shell_env = (tmp_path / "var" / "rbr.env").read_text()
        assert (tmp_path / "var" / "rbr.env").stat().st_mode & 0o077 == 0
        assert f"RBR_KAFKA_BOOTSTRAP=127.0.0.1:{BROKER_PORT + offset}" in shell_env
        assert "RBR_OPERATOR_KEY=" in shell_env
        # The simulated fleet listens on loopback, on 443 or ephemeral ports: both allowed.
        assert "RBR_ALLOWED_BUCKET_NETWORKS=127.0.0.0/8" in shell_env
        assert "RBR_ALLOWED_BUCKET_PORTS=1024-65535" in shell_env

        for service in services:
            url = f"http://127.0.0.1:{SERVICE_PORTS[service] + offset}/healthz"
            wait_for(lambda url=url: _healthy(url), timeout=60, message=f"{service} healthy")
            assert (
                f"{service:<14} http://127.0.0.1:{SERVICE_PORTS[service] + offset}" in output.text()
            )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(90)
    assert code == 0, output.text()[-3000:]
    assert "rbr stack: stopped" in output.text()
    for service in services:
        assert f"{service} stopped (rc=0)" in output.text(), f"{service} did not drain cleanly"
    assert _free(BROKER_PORT + offset)
    assert _free(S3_PORT + offset)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_stack_refuses_a_busy_port(tmp_path: Path) -> None:
    port = BROKER_PORT
    offset = free_offset()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port + offset))
        busy.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rbr_cli",
                "stack",
                "--port-offset",
                str(offset),
                "--var-dir",
                str(tmp_path / "var"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"the broker ({port + offset})" in result.stderr
    assert "already in use" in result.stderr


def test_a_service_killed_under_the_stack_comes_back_and_the_fleet_keeps_flowing(
    tmp_path: Path, fleet_factory: FleetFactory
) -> None:
    stack = RunningStack(tmp_path / "var", env=FAST_FLEET)
    stack.start()
    try:
        stack.wait_ready()
        fleet = fleet_factory(count=3, bind="ports", ca_file=stack.var_dir / "simulator-ca.pem")
        assert all(result.ok for result in fleet.register(stack.url("registrar"), ENROLLMENT_KEY))
        fleet.emit_all(10)
        wait_for(lambda: stack.count(ROWS) == 30, timeout=60, message="the first 30 rows")
        others = {name: stack.pid(name) for name in stack.services if name != "parser"}
        # The broker too: its topics and offsets are kept in the S3 endpoint, so it comes back
        # with them.

        for victim in ("parser", "poller", "broker"):
            pid = stack.pid(victim)
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda victim=victim: f"{victim} restarted" in stack.output(),
                timeout=30,
                message=f"{victim} restarted",
            )
            assert f"{victim} exited unexpectedly (killed by SIGKILL)" in stack.output()
            assert stack.pid(victim) != pid
        polls = fleet.request_counts("/update_bucket")
        fleet.emit_all(10)

        wait_for(lambda: stack.count(ROWS) == 60, timeout=90, message="rows after the restart")
        wait_for(
            lambda: all(fleet.request_counts("/update_bucket")[n] > polls[n] for n in fleet.names),
            timeout=60,
            message="every bucket polled after the poller came back",
        )
        wait_for(lambda: stack.ready("parser") and stack.ready("poller"), message="ready again")
        # The rest of the stack ran on untouched: one crash stops nothing else.
        others.pop("poller")
        assert {name: stack.pid(name) for name in others} == others
        assert stack.process.poll() is None
    finally:
        code = stack.stop()
    assert code == 0, stack.output()[-3000:]
    assert "parser stopped (rc=0) after 1 restart(s)" in stack.output()
    assert "poller stopped (rc=0) after 1 restart(s)" in stack.output()
    assert "broker stopped (rc=0) after 1 restart(s)" in stack.output()
    assert "rbr stack: stopped" in stack.output()


def test_a_second_stack_on_the_same_var_dir_is_refused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    with (var / "stack.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running stack holds it
        held.write("4242")
        held.flush()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rbr_cli",
                "stack",
                "--port-offset",
                str(free_offset()),
                "--var-dir",
                str(var),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"another rbr stack (pid 4242) is running on {var}" in result.stderr
    assert not (var / "s3").exists()  # nothing started


def test_a_stack_stopped_with_ctrl_c_starts_again_with_its_topics_objects_and_offsets(
    tmp_path: Path,
) -> None:
    stack = RunningStack(tmp_path / "var")
    stack.start()
    try:
        stack.wait_ready()
        bootstrap = f"127.0.0.1:{stack.broker_port}"
        s3 = _s3_client(stack.s3_port)
        s3.put_object(Bucket="rbr-raw-logs", Key="raw/kept.log", Body=b"kept across a stop")
        producer = Producer({"bootstrap.servers": bootstrap})
        for number in range(3):
            producer.produce("bucket.status", key=b"k", value=f"m{number}".encode(), partition=0)
        assert producer.flush(30) == 0
        committer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kept-offsets"})
        committer.commit(offsets=[TopicPartition("bucket.status", 0, 2)], asynchronous=False)
        committer.close()
    finally:
        assert stack.stop() == 0, stack.output()[-3000:]
    assert f"topics ready ({len(all_topic_names())} created)" in stack.output()

    stack.start()
    try:
        stack.wait_ready()
        assert "topics ready (0 created)" in stack.output()
        s3 = _s3_client(stack.s3_port)
        kept = s3.get_object(Bucket="rbr-raw-logs", Key="raw/kept.log")["Body"].read()
        assert kept == b"kept across a stop"
        bootstrap = f"127.0.0.1:{stack.broker_port}"
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "kept-offsets"})
        [committed] = reader.committed([TopicPartition("bucket.status", 0)], timeout=30)
        assert committed.offset == 2
        reader.assign([TopicPartition("bucket.status", 0, 0)])
        values: list[bytes | None] = []

        def read_all() -> bool:
            message = reader.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
            return len(values) >= 3

        wait_for(read_all, timeout=30, message="the three messages read again")
        reader.close()
        assert values == [b"m0", b"m1", b"m2"]
    finally:
        assert stack.stop() == 0, stack.output()[-3000:]


def _s3_client(port: int) -> S3Client:
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    return client

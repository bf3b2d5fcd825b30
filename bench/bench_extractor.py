"""Log-extractor figures: extract -> rows latency under steady load; peak RSS of a 500 MB pull.

* latency: a simulated fleet writes logs continuously; the log-extractor and the parser run
  whole (their services, on the real broker, MariaDB and moto S3). For every object: from
  the start of its pull (`extracted_at`) to its rows being committed (`parsed_at`).
* memory: the log-extractor, in a process of its own (`rbr run-task extract_logs`), pulls
  one 500 MB log from a simulated bucket into S3; its peak RSS (ru_maxrss) is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from moto.server import ThreadedMotoServer

from bench.bench_parser import fake_aws_environment
from bench.figures import Figure
from rbr_log_extractor.main import build_service as build_extractor
from rbr_log_extractor.settings import ExtractorSettings
from rbr_parser.main import build_service as build_parser
from rbr_parser.settings import ParserSettings
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.kafka import EventProducer
from rbr_runtime.s3 import ensure_bucket, make_s3_client
from rbr_schemas import BUCKET_REGISTERED, LOGS_EXTRACTED, LOGS_PARSED
from rbr_simulator.fleet import Fleet
from rbr_testing.broker import Broker
from rbr_testing.buckets import TEST_SECRET_KEY, publish_registrations, registration
from rbr_testing.kafka import read_events
from rbr_testing.mariadb import create_database, drop_database, mysql_url
from rbr_testing.services import running

GOAL_P95_SECONDS = 5.0
GOAL_RSS_MB = 150.0
RAW_BUCKET = "bench-raw"

# VmHWM is the peak RSS of this process's own address space: ru_maxrss would also count the
# parent's RSS at fork time, which Linux carries over an exec.
_CHILD = """
import json, time
from rbr_log_extractor.tasks import extract_logs
started = time.monotonic()
summary = extract_logs()
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"summary": summary, "seconds": time.monotonic() - started,
                  "max_rss_kb": int(peak.split()[1])}))
"""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(quick: bool) -> list[Figure]:
    fake_aws_environment()
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    broker = Broker()
    broker.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        raw_store = ParserSettings(s3_endpoint_url=endpoint, s3_bucket=RAW_BUCKET)
        ensure_bucket(make_s3_client(raw_store), RAW_BUCKET)
        with tempfile.TemporaryDirectory() as scratch:
            latency = _latency(broker, url, endpoint, Path(scratch), quick)
            memory = _memory(broker, url, endpoint, Path(scratch), quick)
    finally:
        broker.stop()
        moto.stop()
        drop_database(database)
    return latency + memory


def _settings(broker: Broker, url: str, endpoint: str, ca_file: Path) -> dict[str, object]:
    return {
        "kafka_bootstrap": broker.bootstrap,
        "kafka_session_timeout_ms": 2000,
        "database_url": url,
        "s3_endpoint_url": endpoint,
        "s3_bucket": RAW_BUCKET,
        "http_port": 0,
        "secret_key": TEST_SECRET_KEY,
        "bucket_ca_file": str(ca_file),
        "allowed_bucket_networks": "127.0.0.0/8",
        "allowed_bucket_ports": "1024-65535",
    }


def _latency(broker: Broker, url: str, endpoint: str, scratch: Path, quick: bool) -> list[Figure]:
    buckets, rate, interval = (10, 20.0, 5.0) if quick else (40, 20.0, 10.0)
    duration = 25.0 if quick else 90.0
    with ExitStack() as stack:
        fleet = Fleet(buckets, bind="ports", rate=rate, seed=3, ca_file=scratch / "ca.pem")
        fleet.start()
        stack.callback(fleet.stop)
        publish_registrations(broker.bootstrap, [registration(b) for b in fleet.buckets])
        common = _settings(broker, url, endpoint, fleet.ca_file)
        extractor = ExtractorSettings(**common, extract_interval=interval, extract_tick=0.2)  # type: ignore[arg-type]
        parser = ParserSettings(**common, consumer_batch_wait=0.1)  # type: ignore[arg-type]
        stack.enter_context(running(build_parser(parser)))
        stack.enter_context(running(build_extractor(extractor)))
        time.sleep(duration)
        # Remove the buckets, so the memory run's extract_logs task sees only its own.
        producer = EventProducer(extractor, source="/rbr/bench")
        for name in fleet.names:
            producer.send_tombstone(BUCKET_REGISTERED, name)
        producer.flush()
    extracted = {e.data.object_id: e.data for e in read_events(broker.bootstrap, LOGS_EXTRACTED)}
    parsed = [e.data for e in read_events(broker.bootstrap, LOGS_PARSED)]
    latencies = [
        (p.parsed_at - extracted[p.object_id].extracted_at).total_seconds()
        for p in parsed
        if p.object_id in extracted
    ]
    records = sum(p.records for p in parsed)
    note = (
        f"{buckets} buckets x {rate:.0f} records/s, pulled every {interval:.0f}s, "
        f"{len(latencies)} objects, {records:,} records in {duration:.0f}s"
    )
    p95 = _percentile(latencies, 0.95)
    return [
        Figure("extract -> rows latency p50", statistics.median(latencies), "s", note=note),
        Figure(
            "extract -> rows latency p95",
            p95,
            "s",
            goal=f"<= {GOAL_P95_SECONDS:.0f} s",
            met=p95 <= GOAL_P95_SECONDS,
        ),
    ]


def _memory(broker: Broker, url: str, endpoint: str, scratch: Path, quick: bool) -> list[Figure]:
    size = (100 if quick else 500) * 1_000_000
    with Fleet(1, bind="ports", seed=4, ca_file=scratch / "ca-rss.pem") as fleet:
        name = fleet.names[0]
        fleet.add_bulk_log(name, size)
        publish_registrations(broker.bootstrap, [registration(fleet.buckets[0])])
        env = {**os.environ}
        for key, value in _settings(broker, url, endpoint, fleet.ca_file).items():
            env[f"RBR_{key.upper()}"] = str(value)
        env["RBR_LOG_LEVEL"] = "WARNING"
        output = subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
        ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    rss_mb = result["max_rss_kb"] / 1024
    seconds = result["seconds"]
    return [
        Figure(
            f"extractor peak RSS streaming a {size // 1_000_000} MB log",
            rss_mb,
            "MB",
            goal=f"<= {GOAL_RSS_MB:.0f} MB",
            met=rss_mb <= GOAL_RSS_MB,
            note=f"own process; {result['summary']}; {size / 1e6 / seconds:.0f} MB/s",
        )
    ]

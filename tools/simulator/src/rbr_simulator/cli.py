"""`rbr simulate` / `python -m rbr_simulator`: run a simulated fleet until Ctrl-C or SIGTERM.

Starts the buckets, writes the CA file the registry must trust (RBR_BUCKET_CA_FILE), prints
the buckets (tokens masked), registers them (retrying the ones the registry could not take
yet, e.g. while it is still starting), then serves until interrupted and stops cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError

from rbr_simulator.bucket import BucketInfo
from rbr_simulator.fleet import Fleet
from rbr_simulator.net import BindMode
from rbr_simulator.records import LogMix
from rbr_simulator.registration import RegistrationResult, registration_url
from rbr_simulator.s3 import DEFAULT_PREFIX, S3Settings

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_RETRY_SECONDS = 60.0


def simulate(  # noqa: PLR0917 - one parameter per command-line option
    count: Annotated[int, typer.Option(min=1, help="Number of buckets.")] = 10,
    registrar_url: Annotated[
        str,
        typer.Option(
            envvar="RBR_REGISTRAR_URL",
            help="Registry base URL, or its full registration endpoint URL.",
        ),
    ] = "http://127.0.0.1:8000",
    registration_key: Annotated[
        str | None,
        typer.Option(
            envvar="RBR_SIM_REGISTRATION_KEY",
            show_default=False,
            help="Enrolment key sent with each registration.",
        ),
    ] = None,
    ca_file: Annotated[
        Path,
        typer.Option(
            envvar="RBR_SIM_CA_FILE",
            help="Where to write the fleet's CA certificate (the file the registry trusts).",
        ),
    ] = Path("var/simulator-ca.pem"),
    bind: Annotated[
        BindMode, typer.Option(help="auto: port 443 on 127.0.0.x if possible; ports: 127.0.0.1.")
    ] = BindMode.AUTO,
    rate: Annotated[float, typer.Option(min=0, help="Log records per second per bucket.")] = 0.2,
    hostile_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of attacker fields with hostile content.")
    ] = 0.01,
    s3_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of buckets writing their logs to S3.")
    ] = 0.0,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(envvar="RBR_S3_ENDPOINT_URL", help="S3 endpoint (e.g. moto).")
    ] = None,
    s3_bucket: Annotated[
        str | None, typer.Option(help="One S3 bucket for all; default one per bucket.")
    ] = None,
    s3_region: Annotated[str, typer.Option(help="Region of the S3 buckets.")] = "us-east-1",
    s3_prefix: Annotated[str, typer.Option(help="Key prefix of the log objects.")] = (
        DEFAULT_PREFIX
    ),
    s3_flush_interval: Annotated[
        float, typer.Option(min=1, help="Seconds between S3 uploads.")
    ] = 60.0,
    seed: Annotated[int | None, typer.Option(help="Seed of the log content.")] = None,
    control_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve the control API on 127.0.0.1 (0: any port)."),
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the buckets with the registry.")] = True,
    register_retry: Annotated[
        float, typer.Option(min=0, help="Seconds between registration retries (0: never).")
    ] = 5.0,
) -> None:
    """Run a fleet of simulated rustbuckets until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    fleet = Fleet(
        count,
        bind=bind,
        ca_file=ca_file,
        seed=seed,
        mix=LogMix(hostile_fraction=hostile_fraction),
        rate=rate,
        s3_fraction=s3_fraction,
        s3_settings=S3Settings(
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            bucket=s3_bucket,
            prefix=s3_prefix,
            flush_interval=s3_flush_interval,
        ),
    )
    with _stop_requested_on_signals() as stop:
        _start(fleet)
        try:
            _print_fleet(fleet)
            if control_port is not None:
                port = fleet.serve_control(control_port)
                typer.echo(f"Control API: http://127.0.0.1:{port}/buckets")
            if register:
                _register(fleet, registrar_url, registration_key, register_retry, stop)
            if not stop.is_set():
                typer.echo("Running; press Ctrl-C to stop.")
            stop.wait()
        finally:
            fleet.stop()
    typer.echo("Stopped.")


@contextmanager
def _stop_requested_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be installed from the main thread; the caller stops us.
        yield stop
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del frame
        typer.echo(f"Received {signal.Signals(signum).name}; stopping.")
        stop.set()

    previous = {number: signal.signal(number, request_stop) for number in _STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _start(fleet: Fleet) -> None:
    try:
        fleet.start()
    except (OSError, BotoCoreError, ClientError) as exc:
        typer.echo(f"error: could not start the fleet: {exc}", err=True)
        raise typer.Exit(1) from exc


def _print_fleet(fleet: Fleet) -> None:
    where = "port 443 of their own loopback address" if fleet.uses_port_443 else "127.0.0.1"
    typer.echo(
        f"Started {fleet.count} simulated rustbuckets on {where} in {fleet.startup_seconds:.2f}s."
    )
    typer.echo(f"CA certificate: {fleet.ca_file.resolve()} (the registry's RBR_BUCKET_CA_FILE)")
    width = max(len(url) for url in (info.base_url for info in fleet.buckets))
    for info in fleet.buckets:
        typer.echo(
            f"  {info.name}  {info.base_url:<{width}}  token {info.masked_token}  {_logs(info)}"
        )


def _logs(info: BucketInfo) -> str:
    if info.s3 is None:
        return "logs: GET /extract_logs"
    return f"logs: s3://{info.s3.bucket_name}/{info.s3.prefix}{info.name}/"


def _register(
    fleet: Fleet,
    registrar_url: str,
    registration_key: str | None,
    retry_seconds: float,
    stop: threading.Event,
) -> None:
    typer.echo(f"Registering with {registration_url(registrar_url)}")
    results = fleet.register(registrar_url, registration_key)
    _report_failures(results)
    pending = _retryable(results)
    delay = retry_seconds
    while pending and retry_seconds > 0 and not stop.wait(delay):
        typer.echo(f"Retrying {len(pending)} registrations.")
        results = fleet.register(registrar_url, registration_key, names=pending)
        pending = _retryable(results)
        typer.echo(f"Registered {len(results) - len(pending)}/{len(results)} of the retried.")
        # Back off while the registry stays unreachable, without going quiet for long.
        delay = min(delay * 2, MAX_RETRY_SECONDS)


def _report_failures(results: Sequence[RegistrationResult]) -> None:
    failed = [result for result in results if not result.ok]
    typer.echo(f"Registered {len(results) - len(failed)}/{len(results)}.")
    for result in failed[:5]:
        reason = result.error or f"HTTP {result.status_code}: {result.text[:200]}"
        typer.echo(f"  {result.name}: {reason}")
    if len(failed) > 5:
        typer.echo(f"  ... and {len(failed) - 5} more")


def _retryable(results: Sequence[RegistrationResult]) -> list[str]:
    # Connection problems and server errors may clear up; a 4xx answer will not.
    return [
        result.name
        for result in results
        if not result.ok and (result.status_code is None or result.status_code >= 500)
    ]

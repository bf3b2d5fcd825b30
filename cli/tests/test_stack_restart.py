"""A local stack SIGKILLed mid-flow and started again on its var dir loses and repeats nothing.

The fleet keeps logging and one bucket's unresponsive alert is firing when the whole stack's
process group is SIGKILLed; a fresh `rbr stack` on the same var dir must go on polling every
bucket (no re-approval), end with exactly one `logs` row per line the buckets served, and
deliver the firing and then the resolving of that alert exactly once each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rbr_testing.http_receiver import HttpReceiver
from rbr_testing.simulator import FleetFactory
from rbr_testing.stack import RunningStack
from rbr_testing.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.s3]  # the stack's own broker and S3 endpoint

ENROLLMENT_KEY = "restart-test-key"
LINES = 20
CHANNELS = """\
channels:
  - name: restart-webhook
    type: webhook
    url: {url}/alerts
    secret: restart-webhook-secret
    throttle: false
"""


def _settings(channels: Path) -> dict[str, str]:
    return {
        "RBR_ENROLLMENT_KEYS": ENROLLMENT_KEY,
        "RBR_POLL_INTERVAL": "1",
        "RBR_UNRESPONSIVE_AFTER": "4",
        "RBR_HEALTH_CHECK_INTERVAL": "1",
        "RBR_EXTRACT_INTERVAL": "2",
        "RBR_EXTRACT_TICK": "0.5",
        "RBR_NOTIFIER_CHANNELS": str(channels),
    }


def _deliveries(receiver: HttpReceiver) -> Counter[tuple[str, str, str]]:
    """Counts the webhook deliveries by (alert type, alert id, trigger or resolve)."""
    seen: Counter[tuple[str, str, str]] = Counter()
    for request in receiver.requests:
        delivery = request.json()
        alert = delivery["alert"]
        seen[(alert["type"], alert["alert_id"], delivery["kind"])] += 1
    return seen


def _unresponsive(receiver: HttpReceiver, kind: str) -> int:
    """Counts the deliveries of unresponsive alerts of one kind."""
    found = _deliveries(receiver).items()
    return sum(
        n for (type_, _, kind_), n in found if (type_, kind_) == ("bucket_unresponsive", kind)
    )


@pytest.mark.timeout(420)
def test_a_sigkilled_stack_started_again_loses_and_repeats_nothing(
    tmp_path: Path, fleet_factory: FleetFactory, http_receiver: HttpReceiver
) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(CHANNELS.format(url=http_receiver.url))
    stack = RunningStack(tmp_path / "var", env=_settings(channels))
    stack.start()
    try:
        stack.wait_ready()
        fleet = fleet_factory(count=4, bind="ports", ca_file=stack.var_dir / "simulator-ca.pem")
        assert all(result.ok for result in fleet.register(stack.url("registrar"), ENROLLMENT_KEY))
        silenced, *talking = fleet.names
        fleet.emit_all(LINES)
        wait_for(
            lambda: stack.count("SELECT COUNT(*) FROM logs") == 4 * LINES,
            timeout=90,
            message="the first lines as rows",
        )
        fleet.set_mode(silenced, "silent")
        wait_for(
            lambda: _unresponsive(http_receiver, "trigger") == 1,
            timeout=60,
            message="the unresponsive alert delivered",
        )
        fleet.emit_all(LINES)  # in flight when the stack dies
        stack.kill()

        polled_before = fleet.request_counts("/update_bucket")
        stack.start()
        stack.wait_ready()
        wait_for(
            lambda: all(
                fleet.request_counts("/update_bucket")[name] > polled_before[name]
                for name in talking
            ),
            timeout=60,
            message="every bucket polled again after the restart",
        )
        fleet.emit_all(LINES)
        fleet.set_mode(silenced, "normal")
        wait_for(
            lambda: _unresponsive(http_receiver, "resolve") == 1,
            timeout=90,
            message="the unresponsive alert resolved",
        )
        for name in talking:
            wait_for(
                lambda name=name: fleet.stats(name).records_served == 3 * LINES,
                timeout=90,
                message=f"{name} pulled to the end",
            )
        served = sum(stats.records_served for stats in fleet.all_stats())
        wait_for(
            lambda: stack.count("SELECT COUNT(*) FROM logs") >= served,
            timeout=90,
            message=f"{served} rows, one per line served",
        )
        assert stack.count("SELECT COUNT(*) FROM logs") == served
        assert _unresponsive(http_receiver, "trigger") == 1
        assert set(_deliveries(http_receiver).values()) == {1}  # every alert delivered once
        assert "exited unexpectedly" not in stack.all_output()
    finally:
        code = stack.stop()
    assert code == 0, stack.output()[-3000:]

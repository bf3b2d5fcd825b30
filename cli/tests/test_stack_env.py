"""`rbr` commands take the local stack's settings from var/rbr.env, with no `source`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from rbr_cli import stack_env
from rbr_testing.http_receiver import HttpReceiver
from rbr_testing.waiting import wait_for


def test_settings_round_trip_and_what_is_set_wins(tmp_path: Path) -> None:
    path = tmp_path / "rbr.env"
    stack_env.write(path, {"RBR_A": 'it\'s "quoted" $HOME', "RBR_B": "plain"})
    assert path.stat().st_mode & 0o077 == 0
    environ = {stack_env.PATH_VARIABLE: str(path), "RBR_B": "mine"}
    assert stack_env.load(environ) == path
    assert environ["RBR_A"] == 'it\'s "quoted" $HOME'
    assert environ["RBR_B"] == "mine"
    assert stack_env.load({stack_env.PATH_VARIABLE: ""}) is None
    assert stack_env.load({stack_env.PATH_VARIABLE: str(tmp_path / "none.env")}) is None


def test_simulate_registers_with_the_stack_named_in_var_rbr_env(
    tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    (tmp_path / "var").mkdir()
    ca_file = tmp_path / "var" / "stack-ca.pem"
    stack_env.write(
        tmp_path / "var" / "rbr.env",
        {"RBR_REGISTRAR_URL": http_receiver.url, "RBR_SIM_CA_FILE": str(ca_file)},
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("RBR_")}
    command = [sys.executable, "-m", "rbr_cli", "simulate", "--count", "1", "--bind", "ports"]
    process = subprocess.Popen(
        [*command, "--register-retry", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        arrived = http_receiver.wait_for_requests(1, timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert arrived[0].method == "POST"
    assert "register_bucket" in arrived[0].path
    wait_for(ca_file.exists, message="the CA written where the stack trusts it")

"""rbr-agent installs alone: its wheel into a fresh virtualenv, nothing of the registry with it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from rbr_testing.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ALLOWED = {"rbr-agent", "cryptography", "cffi", "pycparser"}


def uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed (make install puts it in .tools/bin)"
    return found


def run(*argv: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_alone_and_runs(tmp_path: Path) -> None:
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    run(uv(), "build", "--package", "rbr-agent", "--wheel", "--out-dir", dist)
    [wheel] = dist.glob("rbr_agent-*.whl")
    run(uv(), "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(uv(), "pip", "install", "--quiet", "--python", python, wheel)

    installed = json.loads(run(uv(), "pip", "list", "--format", "json", "--python", python))
    assert {package["name"] for package in installed} <= ALLOWED
    assert "usage: rbr-agent" in run(venv / "bin" / "rbr-agent", "--help")
    modules = run(
        python,
        "-c",
        "import sys, rbr_agent.agent, rbr_agent.cli; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
    ).split()
    assert [m for m in modules if m.startswith("rbr_")] == ["rbr_agent"]

    # The installed agent starts and serves.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "logs").mkdir()
    process = subprocess.Popen(
        [
            venv / "bin" / "rbr-agent",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            tmp_path / "state",
            "--log-dir",
            tmp_path / "logs",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: _healthy(port) or process.poll() is not None, message="the installed agent"
        )
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(20)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False).status_code == 200
    except httpx.HTTPError:
        return False

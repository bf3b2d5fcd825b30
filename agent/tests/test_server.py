"""The agent's HTTPS endpoints as the registry sees them: answers it takes, clear refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rbr_agent.agent import Agent
from rbr_agent.config import load
from rbr_agent.status import StatusReporter, WatchSettings
from rbr_poller.answers import parse_answer
from rbr_runtime.buckets import pinned_tls_context, token_header

NAME = "agent-under-test"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    (tmp_path / "logs").mkdir()
    config = load(
        [
            "--listen", "127.0.0.1", "--port", "0", "--name", NAME,
            "--state-dir", str(tmp_path / "state"), "--log-dir", str(tmp_path / "logs"),
            "--process-names", "", "--honeypot-ports", "",
        ],
        {},
    )  # fmt: skip
    running = Agent(config)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def client(agent: Agent) -> Iterator[httpx.Client]:
    assert agent.pin is not None
    with httpx.Client(
        base_url=f"https://127.0.0.1:{agent.port}", verify=pinned_tls_context(agent.pin)
    ) as pinned:
        yield pinned


def auth(agent: Agent) -> dict[str, str]:
    return token_header(agent.identity.token)


def test_the_status_answer_is_what_the_poller_accepts(agent: Agent, client: httpx.Client) -> None:
    answer = client.get("/update_bucket", headers=auth(agent))
    assert answer.status_code == 200
    parsed = parse_answer(answer.content, NAME)  # the poller's own validation
    assert parsed.status == "ok"
    assert parsed.updates.name == NAME
    assert parsed.updates.disk_space is not None
    extra = answer.json()["updates"][0]
    assert extra["agent_version"]
    assert extra["log_files"] == "0"


def test_a_dead_honeypot_is_reported_degraded(tmp_path: Path) -> None:
    reporter = StatusReporter(
        WatchSettings(
            name=NAME,
            ip_address="127.0.0.1",
            log_dir=tmp_path / "missing",
            patterns=("*.log",),
            process_names=("no-such-honeypot-process",),
            ports=(1,),
        )
    )
    answer = reporter.answer()
    parse_answer(json.dumps(answer).encode(), NAME)
    assert answer["status"].startswith("degraded: ")
    assert "log directory unreadable" in answer["status"]
    assert "honeypot process not running" in answer["status"]
    assert "not listening on 1" in answer["status"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "words"),
    [
        ("GET", "/update_bucket", {}, 401, "Authorization: Token"),
        ("GET", "/extract_logs", {"Authorization": "Token wrong-token-0123456789"}, 401, "Token"),
        ("GET", "/extract_logs", {"Authorization": "Bearer x"}, 401, "Token"),
        ("GET", "/nothing-here", None, 404, "no such endpoint"),
        ("POST", "/extract_logs", None, 405, "only GET"),
        ("GET", "/extract_logs?since=../../etc", None, 400, "cursor this agent issued"),
    ],
)
def test_refusals_say_why(
    agent: Agent,
    client: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    status: int,
    words: str,
) -> None:
    answer = client.request(method, path, headers=auth(agent) if headers is None else headers)
    assert answer.status_code == status
    assert words in answer.json()["error"]
    assert agent.identity.token not in answer.text


def test_health_needs_no_token_and_tells_nothing(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert answer.json() == {"status": "ok"}
    assert answer.headers["server"] == "rbr-agent"


def test_a_transfer_cut_short_is_an_incomplete_answer_not_a_short_one(
    agent: Agent, client: httpx.Client
) -> None:
    log_file = agent.config.log_dir / "rustbucket.log.2024-05-01"
    log_file.write_bytes((b"x" * 99 + b"\n") * 300_000)  # 30 MB: more than socket buffers
    with client.stream("GET", "/extract_logs", headers=auth(agent)) as answer:
        chunks = answer.iter_raw()
        next(chunks)
        with log_file.open("r+b") as handle:  # truncated under the transfer
            handle.truncate(1000)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass


def test_logs_stream_in_bounded_chunks(agent: Agent) -> None:
    log_file = agent.config.log_dir / "rustbucket.log.2024-05-01"
    line = b"x" * 99 + b"\n"
    with log_file.open("wb") as handle:
        for _ in range(50):
            handle.write(line * 1000)
    pull = agent.logs.begin(None)
    sizes = [len(chunk) for chunk in agent.logs.body(pull)]
    assert sum(sizes) == 5_000_000
    assert max(sizes) <= agent.logs.settings.chunk_bytes  # never the whole file at once

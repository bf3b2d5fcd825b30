"""The persistent identity: made once, private, the same on every later start."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from rbr_agent.config import ConfigError, load
from rbr_agent.files import StateError, ensure_private_dir
from rbr_agent.identity import STATE_FILE, load_or_create


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_identity_is_made_once_private_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ensure_private_dir(state)
    first = load_or_create(state, wanted_name="honeypot-7", preset="rustbucket")
    assert first.name == "honeypot-7"
    assert len(first.token) >= 32
    assert mode(state / STATE_FILE) == 0o600
    assert mode(state) == 0o700
    again = load_or_create(state, wanted_name="another-name", preset="rustbucket")
    assert again == first  # restarts register the same bucket
    assert first.token not in repr(first)


def test_a_default_name_follows_the_registry_rules(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path, wanted_name=None, preset="cowrie")
    assert identity.name.startswith("cowrie-")
    with pytest.raises(ValueError, match="not a valid bucket name"):
        load_or_create(tmp_path / "other", wanted_name="../bad", preset="cowrie")


def test_a_state_file_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, wanted_name="honeypot-8", preset="rustbucket")
    (tmp_path / STATE_FILE).chmod(0o644)
    tmp_path.chmod(0o755)
    ensure_private_dir(tmp_path)
    assert load_or_create(tmp_path, wanted_name=None, preset="rustbucket") == first
    assert mode(tmp_path / STATE_FILE) == 0o600
    assert mode(tmp_path) == 0o700


def test_an_unreadable_state_file_stops_the_agent_instead_of_a_new_identity(
    tmp_path: Path,
) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(StateError, match="cannot be read"):
        load_or_create(tmp_path, wanted_name=None, preset="rustbucket")
    (tmp_path / STATE_FILE).write_text(json.dumps({"name": "ok-name", "token": "short"}))
    with pytest.raises(StateError, match="no valid token"):
        load_or_create(tmp_path, wanted_name=None, preset="rustbucket")
    assert json.loads((tmp_path / STATE_FILE).read_text())["token"] == "short"  # untouched


def test_settings_come_from_the_environment_and_presets(tmp_path: Path) -> None:
    config = load(
        [],
        {
            "RBR_AGENT_PRESET": "openssh",
            "RBR_AGENT_STATE_DIR": str(tmp_path),
            "RBR_AGENT_HONEYPOT_PORTS": "22,2222",
            "RBR_AGENT_PROCESS_NAMES": "",
        },
    )
    assert config.log_dir == Path("/var/log")
    assert config.patterns == ("auth.log", "auth.log.*")
    assert config.honeypot_ports == (22, 2222)
    assert config.process_names == ()  # empty: not checked
    assert load(["--preset", "cowrie"], {}).patterns == ("cowrie.json", "cowrie.json.*")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--preset", "kippo"], "--preset must be one of"),
        (["--port", "70000"], "--port must be a whole number"),
        (["--honeypot-ports", "22,ssh"], "--honeypot-ports must be a whole number"),
        (["--tls-mode", "ca"], "needs --tls-cert and --tls-key"),
        (["--tls-cert", "x.pem"], "go together"),
        (["--partial-line-after", "soon"], "must be seconds"),
        (["--enrollment-key-file", "/nonexistent/key"], "cannot be read"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(argv: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load(argv, {})

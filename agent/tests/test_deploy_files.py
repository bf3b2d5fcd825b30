"""The agent's deployment files, checked offline: no Docker engine or systemd runs here."""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import yaml

from rbr_agent.config import parser

AGENT = Path(__file__).resolve().parents[1]
ROOT = AGENT.parent
VARIABLE = re.compile(r"\bRBR_AGENT_[A-Z_]+\b")


def known_variables() -> set[str]:
    help_text = parser({}).format_help()
    return set(VARIABLE.findall(help_text))


def test_every_setting_the_files_name_exists() -> None:
    known = known_variables()
    assert "RBR_AGENT_REGISTRAR_URL" in known
    files = [
        AGENT / "README.md",
        AGENT / "Dockerfile",
        AGENT / "deploy" / "rbr-agent.service",
        AGENT / "deploy" / "agent.env.example",
        AGENT / "deploy" / "docker-compose.sidecar.yml",
    ]
    for path in files:
        unknown = set(VARIABLE.findall(path.read_text())) - known
        assert not unknown, f"{path.name} names settings that do not exist: {unknown}"
    documented = set(VARIABLE.findall((AGENT / "README.md").read_text()))
    assert known <= documented, f"not in the README: {known - documented}"


def test_the_image_is_slim_non_root_keeps_its_state_and_checks_health() -> None:
    dockerfile = (AGENT / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user
    assert user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.MULTILINE)
    assert re.search(r"^VOLUME \[\"/var/lib/rbr-agent\"\]$", dockerfile, re.MULTILINE)
    port = re.search(r"RBR_AGENT_PORT=(\d+)", dockerfile)
    assert port
    assert re.search(rf"^EXPOSE {port[1]}$", dockerfile, re.MULTILINE)
    assert "--package rbr-agent" in dockerfile
    project = tomllib.loads((AGENT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["rbr-agent"] == "rbr_agent.cli:main"
    assert [d.split(">")[0] for d in project["dependencies"]] == ["cryptography"]


def test_the_systemd_unit_runs_the_agent_unprivileged_with_private_state() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((AGENT / "deploy" / "rbr-agent.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("rbr-agent run")
    assert service["User"] != "root"
    assert service["StateDirectory"] == "rbr-agent"
    assert service["StateDirectoryMode"] == "0700"
    assert service["Environment"] == "RBR_AGENT_STATE_DIR=/var/lib/rbr-agent"
    assert service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_sidecar_example_is_a_valid_compose_file_sharing_the_honeypots_namespaces() -> None:
    document = yaml.safe_load((AGENT / "deploy" / "docker-compose.sidecar.yml").read_text())
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    agent = document["services"]["rbr-agent"]
    assert agent["network_mode"] == "service:rustbucket"
    assert agent["pid"] == "service:rustbucket"
    assert "agent-state:/var/lib/rbr-agent" in agent["volumes"]
    assert any(volume.endswith(":/logs:ro") for volume in agent["volumes"])
    assert agent["build"]["dockerfile"] == "agent/Dockerfile"
    assert (AGENT / "deploy" / agent["build"]["context"] / "agent" / "Dockerfile").exists()
    honeypot = document["services"]["rustbucket"]
    assert honeypot["environment"]["RUSTBUCKET_REGISTRY_URL"] == ""
    assert "8443:8443" in honeypot["ports"]

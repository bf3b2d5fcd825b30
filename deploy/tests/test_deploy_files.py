"""The deployment files, checked offline: no Docker engine or cluster runs here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "registrar": 8000,
    "poller": 9101,
    "log-extractor": 9102,
    "parser": 9103,
    "analyst": 9104,
    "notifier": 9105,
}
SCALED = ["poller", "log-extractor", "parser", "analyst", "notifier"]
DRAIN_SECONDS = 20
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|_KEYS$|ROUTING_KEY|WEBHOOK_URL")
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
K8S_VERSION = "1.33.0"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


# --- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_slim_non_root_image_with_a_healthcheck(service: str) -> None:
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line[:1].isupper()]
    assert "python:3.11-slim" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user, "no USER"
    assert user[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in instructions
    assert re.search(rf"^EXPOSE {SERVICES[service]}$", dockerfile, re.MULTILINE)
    assert instructions.count("ENTRYPOINT") == 1
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.MULTILINE)
    assert entrypoint
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    assert f"--package {project['project']['name']}" in dockerfile
    assert entrypoint[1] in project["project"].get("scripts", {}), "entrypoint not a script"


# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_every_service_has_an_image_or_build_and_its_environment() -> None:
    for name, service in compose()["services"].items():
        assert "image" in service or "build" in service, name
        if name in SERVICES:
            env = service["environment"]
            assert env["RBR_HTTP_PORT"] == str(SERVICES[name])
            assert env["RBR_KAFKA_BOOTSTRAP"] == "kafka:9092"
            assert "RBR_DATABASE_URL" in env


def test_long_running_services_have_healthchecks_and_jobs_run_once() -> None:
    for name, service in compose()["services"].items():
        if service.get("restart") == "no":
            assert "healthcheck" not in service, f"{name} is a job"
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_dependencies_exist_and_wait_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully"
                if services[dependency].get("restart") == "no"
                else "service_healthy"
            )
            assert condition["condition"] == expected, f"{name} -> {dependency}"
    for name in SERVICES:
        assert {"kafka", "topic-init", "migrate"} <= set(services[name]["depends_on"])


def test_scaled_services_publish_no_fixed_host_port() -> None:
    services = compose()["services"]
    for name in SCALED:
        assert "ports" not in services[name], f"{name} cannot scale with a fixed host port"


def test_stop_grace_period_outlasts_the_drain() -> None:
    for name in SERVICES:
        grace = compose()["services"][name]["stop_grace_period"]
        assert seconds(grace) > DRAIN_SECONDS, name


def test_no_secret_value_is_written_in_the_compose_file() -> None:
    for name, service in compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            text = str(value)
            if SECRET_NAME.search(variable):
                assert REFERENCE.match(text), f"{name}.{variable} holds a literal value"
            if "://" in text and "@" in text:
                credentials = text.split("://", 1)[1].split("@", 1)[0]
                password = credentials.split(":", 1)[1] if ":" in credentials else ""
                assert REFERENCE.match(password), f"{name}.{variable} embeds a password"


# --- Kubernetes ----------------------------------------------------------------------------


def rendered(overlay: str) -> list[dict[str, Any]]:
    """Renders with kustomize when kubectl is installed, else reads the base files as is."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        output = subprocess.run(
            [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [d for d in yaml.safe_load_all(output) if d]
    base = ROOT / "deploy" / "k8s" / "base"
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    return [d for name in listed for d in yaml.safe_load_all((base / name).read_text()) if d]


def test_kustomization_lists_every_manifest() -> None:
    base = ROOT / "deploy" / "k8s" / "base"
    listed = set(yaml.safe_load((base / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_manifests_are_valid_kubernetes(overlay: str) -> None:
    for document in rendered(overlay):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_every_service_has_a_deployment_with_resources_probes_and_replicas() -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered("base") if d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert deployment["spec"]["replicas"] >= 1
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["ports"][0]["containerPort"] == SERVICES[name]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS


def test_parser_and_notifier_autoscale_within_their_partitions() -> None:
    hpas = {
        d["spec"]["scaleTargetRef"]["name"]: d
        for d in rendered("base")
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(hpas) == {"parser", "notifier"}
    assert hpas["parser"]["spec"]["maxReplicas"] <= 12
    assert hpas["notifier"]["spec"]["maxReplicas"] <= 6


def test_migration_and_topic_jobs_exist() -> None:
    jobs = {d["metadata"]["name"]: d for d in rendered("base") if d["kind"] == "Job"}
    commands = {
        name: job["spec"]["template"]["spec"]["containers"][0]["command"]
        for name, job in jobs.items()
    }
    assert ["rbr", "db", "upgrade"] in commands.values()
    assert ["rbr", "topics", "create"] in commands.values()


def test_secrets_are_referenced_never_inlined() -> None:
    documents = rendered("overlays/example")
    assert not [d for d in documents if d["kind"] == "Secret"]
    for document in documents:
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]) or variable["name"] == "RBR_DATABASE_URL":
                    assert "value" not in variable, variable["name"]
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == "rbr-secrets"


def test_the_notifier_channels_file_mounted_by_compose_loads() -> None:
    from rbr_notifier.channels import load_channels  # noqa: PLC0415 - only this test needs it

    notifier = compose()["services"]["notifier"]
    mount = next(v for v in notifier["volumes"] if v.endswith("/etc/rbr/channels.yaml:ro"))
    host_path = ROOT / mount.split(":")[0]
    assert notifier["environment"]["RBR_NOTIFIER_CHANNELS"] == "/etc/rbr/channels.yaml"
    assert load_channels(host_path, environ={}).channels == []


CHANNEL_FILES = ["services/notifier/channels.example.yaml", "deploy/notifier/channels.yaml"]
CHANNEL_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def channel_file_references(relative: str) -> set[str]:
    """Returns the ${VAR} names the values of a channels file refer to."""

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [text for value in node.values() for text in strings(value)]
        if isinstance(node, list):
            return [text for item in node for text in strings(item)]
        return [node] if isinstance(node, str) else []

    document = yaml.safe_load((ROOT / relative).read_text())
    return {name for text in strings(document) for name in CHANNEL_REFERENCE.findall(text)}


def k8s_notifier_variables() -> set[str]:
    deployment = next(
        d
        for d in rendered("base")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "notifier"
    )
    return {v["name"] for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def compose_env_example_variables() -> set[str]:
    text = (ROOT / "deploy/compose.env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


@pytest.mark.parametrize("relative", CHANNEL_FILES)
def test_channel_files_refer_only_to_variables_the_deployments_provide(relative: str) -> None:
    from rbr_notifier.channels import load_channels  # noqa: PLC0415 - only these tests need it

    referenced = channel_file_references(relative)
    provided = set(compose()["services"]["notifier"]["environment"])
    assert referenced <= provided, "not passed by docker-compose.yml"
    assert referenced <= compose_env_example_variables(), "not in deploy/compose.env.example"
    assert referenced <= k8s_notifier_variables(), "not in deploy/k8s/base/notifier.yaml"
    # Dummy values that pass validation (URLs where a URL is expected).
    environ = {name: f"https://dummy.example/{name.lower()}" for name in provided}
    load_channels(ROOT / relative, environ=environ)


def test_channel_secrets_are_provided_alike_by_compose_env_file_and_kubernetes() -> None:
    document = compose()
    common = set(document["x-service-defaults"]["environment"])
    environment = document["services"]["notifier"]["environment"]
    channel_secrets = {n for n in environment if n not in common and not n.startswith("RBR_")}
    assert channel_secrets  # the channel secrets the notifier gets, e.g. SLACK_WEBHOOK_URL
    assert channel_secrets <= compose_env_example_variables()
    assert channel_secrets <= k8s_notifier_variables()
    # The deployed file's comment tells which variables the notifier gets; it must not lie.
    comment = (ROOT / "deploy/notifier/channels.yaml").read_text()
    assert channel_secrets <= set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", comment))


INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


def interpolated(value: object) -> str:
    """Resolves ${VAR:-default} to the default and ${VAR:?message} / ${VAR} to a dummy."""

    def replace(match: re.Match[str]) -> str:
        return match[3] if match[2] == "-" else f"dummy-{match[1].lower()}"

    return INTERPOLATION.sub(replace, str(value))


def load_with(environment: dict[str, str], service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rbr_cli.config_commands import service_settings  # noqa: PLC0415
    from rbr_runtime.settings import load_settings  # noqa: PLC0415

    for variable in [v for v in os.environ if v.startswith("RBR_") or v == "ANTHROPIC_API_KEY"]:
        monkeypatch.delenv(variable)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(service_settings()[service])
    assert settings.http_port == SERVICES[service]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_starts_with_the_environment_compose_gives_it(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose()["services"][service]["environment"]
    load_with({k: interpolated(v) for k, v in environment.items()}, service, monkeypatch)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_starts_with_the_environment_kubernetes_gives_it(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = rendered("base")
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    if shutil.which("kubectl") is None:  # unrendered base: read the generator's literals
        base = yaml.safe_load((ROOT / "deploy/k8s/base/kustomization.yaml").read_text())
        config = dict(item.split("=", 1) for item in base["configMapGenerator"][0]["literals"])
    deployment = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == service
    )
    environment = dict(config)
    for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        secret = variable.get("valueFrom", {}).get("secretKeyRef")
        if secret is not None and secret.get("optional"):
            continue
        environment[variable["name"]] = variable.get("value", f"dummy-{variable['name'].lower()}")
    environment["RBR_DATABASE_URL"] = "mysql+pymysql://rbr:dummy@mysql/rbr"
    load_with(environment, service, monkeypatch)

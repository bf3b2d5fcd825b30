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


# --- The Dockerfile ------------------------------------------------------------------------

DOCKERFILE = ROOT / "Dockerfile"
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# The instructions whose arguments Docker substitutes; a RUN's shell expands build args itself.
SUBSTITUTING = {"ADD", "COPY", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
Stage = list[tuple[str, str]]


def substituted(text: str, values: dict[str, str]) -> str:
    """Replaces $NAME and ${NAME} by the value of a known variable; leaves the others."""

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        return values.get(name, match[0])

    return VARIABLE.sub(replace, text)


def dockerfile_stages(build_args: dict[str, str]) -> list[Stage]:
    """Returns each stage's instructions (KEYWORD, arguments) as a build with these args sees them.

    Reads as much of the Dockerfile syntax as ours uses: comments, line continuations, ARG with or
    without a default (global before the first FROM, redeclared inside a stage), ENV and ${NAME}.
    """
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    values: dict[str, str] = {}
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            scope = values if stages else global_args
            inherited = default if has_default else global_args.get(name, "")
            scope[name] = build_args.get(name, inherited)
            continue
        if keyword == "FROM":
            stages.append([])
            values = {}
            rest = substituted(rest, global_args)
        elif keyword in SUBSTITUTING:
            rest = substituted(rest, values)
        if keyword == "ENV":
            values.update(re.findall(r"(\w+)=(\S+)", rest))
        stages[-1].append((keyword, rest))
    return stages


def arguments(stage: Stage, keyword: str) -> list[str]:
    return [rest for word, rest in stage if word == keyword]


def compose_build(service: str) -> dict[str, Any]:
    build: dict[str, Any] = compose()["services"][service]["build"]
    return build


def test_the_image_is_slim_non_root_with_a_healthcheck_and_one_process() -> None:
    stages = dockerfile_stages({"SERVICE": "registrar", "PORT": "8000"})
    final = stages[-1]
    assert all("python:3.11-slim" in arguments(stage, "FROM")[0] for stage in stages)
    user = arguments(final, "USER")
    assert user, "no USER"
    assert user[-1].split(":")[0] not in ("root", "0")
    assert arguments(final, "HEALTHCHECK")
    assert arguments(final, "STOPSIGNAL") == ["SIGTERM"]
    assert len(arguments(final, "ENTRYPOINT")) == 1, "one process"
    assert not any(arguments(stage, "ENTRYPOINT") for stage in stages[:-1])
    installs = " ".join(arguments(stages[0], "RUN"))
    assert "uv export --frozen" in installs, "not the locked dependency versions"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_builds_each_service_from_the_one_dockerfile_with_its_args(service: str) -> None:
    from rbr_cli.config_commands import service_settings  # noqa: PLC0415 - only this test needs it

    build = compose_build(service)
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["args"] == {"SERVICE": service, "PORT": str(SERVICES[service])}
    assert service_settings()[service].model_fields["http_port"].default == SERVICES[service]
    final = dockerfile_stages(build["args"])[-1]
    assert arguments(final, "EXPOSE") == [str(SERVICES[service])]
    assert f"RBR_HTTP_PORT={SERVICES[service]}" in arguments(final, "ENV")[-1].split()


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_its_locked_service_and_starts_its_command(service: str) -> None:
    args = compose_build(service)["args"]
    build_stage, final = dockerfile_stages(args)
    installs = substituted(" ".join(arguments(build_stage, "RUN")), args)  # as the shell does
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    assert f'--package "{project["name"]}"' in installs
    assert f'"./services/{service}"' in installs
    locked = tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    assert project["name"] in {package["name"] for package in locked}, "uv export would fail"
    link = re.search(r'ln -s "?([\w-]+)"? /opt/venv/bin/([\w-]+)', installs)
    assert link, "no command linked for the ENTRYPOINT"
    assert link[1] in project["scripts"], "the link does not name the service's command"
    assert json.loads(arguments(final, "ENTRYPOINT")[0]) == [link[2]]


def test_building_without_service_or_port_stops_with_a_message() -> None:
    guard = next(r for r in arguments(dockerfile_stages({})[0], "RUN") if "missing" in r)
    args = {"SERVICE": "poller", "PORT": "9101"}
    for missing in args:
        environment = {**os.environ, **args, missing: ""}
        result = subprocess.run(
            ["/bin/sh", "-c", guard], env=environment, capture_output=True, text=True, check=False
        )
        assert result.returncode != 0
        assert f"--build-arg {missing}=" in result.stderr
    ok = subprocess.run(["/bin/sh", "-c", guard], env={**os.environ, **args}, check=False)
    assert ok.returncode == 0


def test_every_image_compose_builds_is_named_for_its_service() -> None:
    services = compose()["services"]
    built = {s["image"]: s["build"]["args"]["SERVICE"] for s in services.values() if "build" in s}
    for image, service in built.items():
        assert image == f"rustbucket-registry/{service}:latest"
    ours = [s["image"] for s in services.values() if s["image"].startswith("rustbucket-registry/")]
    assert set(ours) == set(built), "an image compose uses but never builds"


def test_the_build_context_leaves_out_local_state_and_environments() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    # var/ holds the local stack's generated secrets (var/local.env) and databases.
    assert {".git", ".venv", ".tools", "var"} <= ignored


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


def test_compose_publishes_the_console_on_the_host_loopback_only() -> None:
    registrar = compose()["services"]["registrar"]
    environment = registrar["environment"]
    console_port = environment["RBR_CONSOLE_PORT"]
    published = [str(port) for port in registrar["ports"]]
    public = [p for p in published if p.endswith(f":{environment['RBR_HTTP_PORT']}")]
    internal = [p for p in published if p.endswith(f":{console_port}")]
    assert len(public) == 1
    assert not public[0].startswith("127.0.0.1:")
    assert len(internal) == 1
    assert internal[0].startswith("127.0.0.1:"), "the console must not face the network"


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
        # The image docker-compose.yml builds with SERVICE=<name> (overlays retag it).
        assert container["image"] == f"rustbucket-registry/{name}:latest"
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


def test_kubernetes_keeps_the_console_on_an_internal_service() -> None:
    documents = rendered("base")
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    assert services["registrar"]["spec"]["ports"][0]["targetPort"] == "http"
    console = services["registrar-console"]["spec"]
    assert console.get("type", "ClusterIP") == "ClusterIP"
    assert console["ports"][0]["targetPort"] == "console"
    registrar = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "registrar"
    )
    container = registrar["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["RBR_CONSOLE_PORT"] == str(ports["console"])
    ingresses = [d for d in documents if d["kind"] == "Ingress"]
    assert ingresses, "registration needs a public entry"
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend == {"name": "registrar", "port": {"name": "http"}}, path

"""`rbr config`: every setting of every installed service, from the settings classes.

docs/configuration.md holds this command's `--markdown` output (`make docs` rewrites it; a
test keeps them equal), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rbr_cli.output import fail, table
from rbr_cli.plugins import SERVICES_GROUP, discovered
from rbr_runtime.settings import CommonSettings, env_var_name

CONFIGURATION_DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
"""The configuration reference: its generated part lies between the two markers."""
START_MARKER = "<!-- config-reference:start -->"
END_MARKER = "<!-- config-reference:end -->"
# KAFKA_CLIENT_CONFIG may carry a SASL password.
SECRET_NAME = re.compile(
    r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL|KAFKA_CLIENT_CONFIG", re.IGNORECASE
)


@dataclass(frozen=True)
class Setting:
    """One environment variable of a service."""

    variable: str
    default: str
    description: str
    secret: bool


def service_settings() -> dict[str, type[CommonSettings]]:
    """Returns each installed service's settings class, by service name."""
    classes: dict[str, type[CommonSettings]] = {}
    for name, entry in sorted(discovered(SERVICES_GROUP).items()):
        package = entry.value.split(":")[0].split(".")[0]
        module = importlib.import_module(f"{package}.settings")
        found = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, CommonSettings) and cls.__module__ == module.__name__
        ]
        if found:
            # The most derived class defined in the module is the service's own.
            classes[name] = max(found, key=lambda cls: len(cls.__mro__))
    return classes


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(set)" if value.get_secret_value() else ""
    if isinstance(value, list | dict):
        return json.dumps(value) if value else ""
    return "" if value is None else str(value)


def settings_of(settings_cls: type[CommonSettings], skip: set[str]) -> list[Setting]:
    """Returns the settings of a class, leaving out the fields named in skip."""
    settings = []
    for name, field in settings_cls.model_fields.items():
        if name in skip:
            continue
        variable = env_var_name(settings_cls, name)
        secret = field.annotation is SecretStr or bool(SECRET_NAME.search(variable))
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        settings.append(Setting(variable, _default(field), description, secret))
    return settings


def _inherited_unchanged(settings_cls: type[CommonSettings]) -> set[str]:
    """Returns the shared fields a service keeps as they are in CommonSettings.

    A service that overrides a shared default (the parser's batch of one object, each
    service's port) lists that variable in its own section.
    """
    common = CommonSettings.model_fields
    return {
        name
        for name, field in settings_cls.model_fields.items()
        if name in common and _default(field) == _default(common[name])
    } - {"http_port"}


def _sections() -> list[tuple[str, list[Setting]]]:
    sections = [("every service", settings_of(CommonSettings, {"service_name", "http_port"}))]
    for service, settings_cls in service_settings().items():
        own = settings_of(settings_cls, _inherited_unchanged(settings_cls) | {"service_name"})
        sections.append((service, own))
    return sections


def markdown() -> str:
    """Returns the configuration reference as Markdown tables, one per service."""
    parts = []
    for title, settings in _sections():
        parts.append(f"**{title}**\n")
        parts.append("| variable | default | description |")
        parts.append("|---|---|---|")
        parts.extend(
            f"| `{s.variable}` | {f'`{s.default}`' if s.default else ''} | {s.description} |"
            for s in settings
        )
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def with_reference(document: str) -> str:
    """Returns the document's text with its reference section replaced by the current one."""
    if START_MARKER not in document or END_MARKER not in document:
        raise ValueError(f"the document has no {START_MARKER} ... {END_MARKER} section")
    head, rest = document.split(START_MARKER, 1)
    _, tail = rest.split(END_MARKER, 1)
    return f"{head}{START_MARKER}\n{markdown()}{END_MARKER}{tail}"


def _write_reference(path: Path) -> None:
    try:
        text = with_reference(path.read_text())
    except ValueError as error:
        fail(f"{path}: {error}")
    path.write_text(text)
    typer.echo(f"updated {path}")


def _masked(setting: Setting) -> str:
    value = os.environ.get(setting.variable)
    if value is None:
        return setting.default
    return "(set, hidden)" if setting.secret and value else value


def config(
    service: Annotated[str | None, typer.Option(help="Only this service's settings.")] = None,
    values: Annotated[
        bool, typer.Option(help="Show the values from this environment (secrets hidden).")
    ] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown.")] = False,
    write_docs: Annotated[
        bool, typer.Option(help="Rewrite the reference in docs/configuration.md (make docs).")
    ] = False,
) -> None:
    """List every RBR_* setting of every installed service, with defaults and descriptions."""
    if write_docs:
        _write_reference(CONFIGURATION_DOC)
        return
    if as_markdown:
        typer.echo(markdown(), nl=False)
        return
    sections = _sections()
    if service is not None:
        sections = [s for s in sections if s[0] in (service, "every service")]
        if len(sections) == 1:
            fail(f"unknown service {service!r}; installed: {', '.join(service_settings())}")
    for title, settings in sections:
        typer.secho(f"\n{title}", bold=True)
        rows: list[tuple[Any, ...]] = [
            (s.variable, _masked(s) if values else s.default, s.description[:70]) for s in settings
        ]
        table(["variable", "value" if values else "default", "description"], rows)

"""The structure of an analysis, whoever wrote it (Claude or the rules), with hard bounds.

A model's answer is data, never instructions: it is parsed as JSON and validated against these
models. Every string and list is bounded (long values are clipped, not rejected, so a verbose
but well-formed answer is kept), every string is cleaned like log text (the model may echo
attacker-controlled text), and severities and IOC types are closed vocabularies.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rbr_analyst.redact import clean
from rbr_runtime.intel.attack import MAX_TECHNIQUES, clean_technique_ids
from rbr_schemas import Severity

MAX_FINDINGS = 20
MAX_EVIDENCE = 8
MAX_IOCS = 50
MAX_ACTIONS = 10
FINDING_KEY_CHARS = 64


def _cleaner(limit: int) -> BeforeValidator:
    def apply(value: Any) -> Any:
        return clean(value, limit) if isinstance(value, str) else value

    return BeforeValidator(apply)


def _capped(limit: int) -> BeforeValidator:
    def apply(value: Any) -> Any:
        return value[:limit] if isinstance(value, list) else value

    return BeforeValidator(apply)


def finding_key(text: str) -> str:
    """Turns a (possibly model-written) finding key into a short stable slug: [a-z0-9_]."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug[:FINDING_KEY_CHARS].strip("_") or "finding"


def _slug(value: Any) -> Any:
    return finding_key(value) if isinstance(value, str) else value


def _techniques(value: Any) -> Any:
    # Technique ids are validated against the shipped ATT&CK list: an id that does not exist,
    # a revoked one, or hostile text in its place is dropped, never an error.
    return clean_technique_ids(value) if isinstance(value, list) else []


def _severity(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Summary = Annotated[str, _cleaner(2000), Field(min_length=1)]
Title = Annotated[str, _cleaner(200), Field(min_length=1)]
Text = Annotated[str, _cleaner(1000)]
Evidence = Annotated[str, _cleaner(300)]
Action = Annotated[str, _cleaner(300), Field(min_length=1)]
SeverityField = Annotated[Severity, BeforeValidator(_severity)]


class IocType(StrEnum):
    """Kinds of indicator of compromise."""

    IP = "ip"
    URL = "url"
    DOMAIN = "domain"
    SHA256 = "sha256"
    USERNAME = "username"
    PASSWORD = "password"  # noqa: S105 - an IOC kind, not a secret
    COMMAND = "command"
    OTHER = "other"


def _ioc_type(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return lowered if lowered in IocType._value2member_map_ else IocType.OTHER
    return value


class Finding(BaseModel):
    """One thing the analysis found, with the evidence for it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: Annotated[str, BeforeValidator(_slug)] = Field(
        description="Short stable identifier, e.g. successful_login; names the alert."
    )
    title: Title
    severity: SeverityField
    description: Text = ""
    evidence: Annotated[list[Evidence], _capped(MAX_EVIDENCE)] = Field(default_factory=list)
    techniques: Annotated[list[str], BeforeValidator(_techniques)] = Field(
        default_factory=list,
        description="MITRE ATT&CK technique ids the finding evidences (e.g. T1110, T1059.004).",
    )


class Ioc(BaseModel):
    """An indicator of compromise seen in the window."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Annotated[IocType, BeforeValidator(_ioc_type)]
    value: Annotated[str, _cleaner(300), Field(min_length=1)]


class AnalysisResult(BaseModel):
    """An analysis of one window of one bucket's logs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: Summary
    severity: SeverityField
    findings: Annotated[list[Finding], _capped(MAX_FINDINGS)] = Field(default_factory=list)
    iocs: Annotated[list[Ioc], _capped(MAX_IOCS)] = Field(default_factory=list)
    recommended_actions: Annotated[list[Action], _capped(MAX_ACTIONS)] = Field(default_factory=list)


def answer_json_schema() -> dict[str, Any]:
    """Returns the JSON schema the model is asked to follow (structured outputs subset)."""
    severity = {"type": "string", "enum": [s.value for s in Severity]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["summary", "severity", "findings", "iocs", "recommended_actions"],
        "properties": {
            "summary": {"type": "string"},
            "severity": severity,
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "key",
                        "title",
                        "severity",
                        "description",
                        "evidence",
                        "techniques",
                    ],
                    "properties": {
                        "key": {"type": "string"},
                        "title": {"type": "string"},
                        "severity": severity,
                        "description": {"type": "string"},
                        "evidence": {"type": "array", "items": {"type": "string"}},
                        "techniques": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "iocs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "value"],
                    "properties": {
                        "type": {"type": "string", "enum": [t.value for t in IocType]},
                        "value": {"type": "string"},
                    },
                },
            },
            "recommended_actions": {"type": "array", "items": {"type": "string"}},
        },
    }


def highest(severities: list[Severity], default: Severity = Severity.INFO) -> Severity:
    """Returns the highest severity of the list (default when empty)."""
    return max(severities, key=lambda s: s.rank, default=default)


def merge_with_rules(model: AnalysisResult, rules: AnalysisResult) -> AnalysisResult:
    """Combines a model's analysis with the rules' one; the rules set a floor.

    Rule findings are always kept, at no less than their rule severity, whatever the model
    said (an attacker who writes "this is benign" into a log cannot lower a successful login);
    the overall severity is at least the highest rule finding.
    """
    by_key: dict[str, Finding] = {}
    for finding in rules.findings:
        by_key[finding.key] = finding
    extra: list[Finding] = []
    for finding in model.findings:
        rule = by_key.get(finding.key)
        if rule is None:
            extra.append(finding)
            continue
        techniques = clean_technique_ids([*rule.techniques, *finding.techniques], MAX_TECHNIQUES)
        by_key[finding.key] = rule.model_copy(
            update={
                "severity": highest([rule.severity, finding.severity]),
                "techniques": techniques,
            }
        )
    findings = (list(by_key.values()) + extra)[:MAX_FINDINGS]
    iocs = _unique_iocs([*rules.iocs, *model.iocs])
    actions = list(dict.fromkeys([*model.recommended_actions, *rules.recommended_actions]))
    severity = highest([model.severity, rules.severity, *(f.severity for f in rules.findings)])
    return AnalysisResult(
        summary=model.summary,
        severity=severity,
        findings=findings,
        iocs=iocs[:MAX_IOCS],
        recommended_actions=actions[:MAX_ACTIONS],
    )


def _unique_iocs(iocs: list[Ioc]) -> list[Ioc]:
    seen: dict[tuple[str, str], Ioc] = {}
    for ioc in iocs:
        seen.setdefault((ioc.type.value, ioc.value), ioc)
    return list(seen.values())

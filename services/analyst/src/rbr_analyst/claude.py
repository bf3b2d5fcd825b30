"""Claude as the analyst: token-counted, budgeted, staged requests whose answers are data.

One window's digest normally fits one request. When it does not fit `RBR_ANALYST_REQUEST_TOKENS`,
it is split into parts (map: each part analysed alone) and the part analyses are combined
(reduce); every request is counted with the API's token counter before it is sent, and all of a
window's requests together stay within `RBR_ANALYST_TOKEN_BUDGET` (the digest is trimmed, least
important lists first, when even that would not fit). An answer that is not valid JSON of the
expected shape gets one corrective retry; after that the caller falls back to the rules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import orjson
from prometheus_client import Counter
from pydantic import ValidationError

from rbr_analyst.analysis import AnalysisResult, answer_json_schema
from rbr_analyst.prompt import CORRECTION, Prompt, build_prompt
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.window_digest import CHARS_PER_TOKEN, Digest

log = logging.getLogger(__name__)

CLAUDE_REQUESTS = Counter(
    "rbr_analyst_claude_requests_total",
    "Requests to the Claude Messages API, by stage and outcome.",
    ["stage", "outcome"],
)
CLAUDE_TOKENS = Counter(
    "rbr_analyst_claude_tokens_total", "Tokens used by Claude requests.", ["direction"]
)

MAX_PACKING_ROUNDS = 12
REDUCE_PART_CHARS = 4_000
"""Rendered size of one part analysis in the reduce request (before trimming)."""


class MalformedAnswer(Exception):
    """The model's answer is not one valid JSON analysis. The text names no answer content."""


class BudgetExceeded(Exception):
    """The window's token budget does not allow the next request."""


class ClaudeUnavailable(Exception):
    """The API did not answer usably after the SDK's retries (429, 5xx, 529, network)."""


class ClaudeRejected(Exception):
    """The API refused the request (4xx other than 429): configuration, not an outage."""


@dataclass
class Usage:
    """What one window's requests cost."""

    budget: int
    counted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def reserve(self, tokens: int) -> None:
        """Takes counted input tokens from the budget before a request is sent.

        Raises:
            BudgetExceeded: the request would exceed the window's budget.
        """
        if self.counted + tokens > self.budget:
            raise BudgetExceeded(
                f"a {tokens}-token request would exceed the window's budget "
                f"({self.counted} of {self.budget} used)"
            )
        self.counted += tokens

    @property
    def remaining(self) -> int:
        """Returns the tokens the budget still allows."""
        return self.budget - self.counted


@dataclass
class ClaudeOutcome:
    """The model's analysis of a window and what it cost."""

    result: AnalysisResult
    model: str
    usage: Usage
    stages: int
    trimmed_items: int = 0
    notes: list[str] = field(default_factory=list)


def make_client(settings: AnalystSettings) -> anthropic.Anthropic:
    """Returns an SDK client; retries of 429/5xx/529 with backoff are the SDK's."""
    assert settings.anthropic_api_key is not None
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=settings.analyst_max_retries,
        timeout=settings.analyst_timeout,
    )


def parse_answer(text: str) -> AnalysisResult:
    """Parses and validates a model answer.

    Raises:
        MalformedAnswer: not one JSON object of the expected shape; the reason lists field
            locations and error types only (never the answer's text, which may echo attackers).
    """
    document = _json_object(text)
    try:
        return AnalysisResult.model_validate(document)
    except ValidationError as error:
        problems = ", ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or 'answer'}: {detail['type']}"
            for detail in error.errors()[:5]
        )
        raise MalformedAnswer(f"answer does not match the schema ({problems})") from None


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _json_object(text: str) -> Any:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if not stripped:
        raise MalformedAnswer("empty answer")
    try:
        document = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        raise MalformedAnswer("answer is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedAnswer("answer is not a JSON object")
    return document


Item = tuple[str, Any]
"""One entry of a digest section: (section name, JSON value)."""


class ClaudeAnalyser:
    """Analyses digests with Claude within a token budget."""

    def __init__(
        self, settings: AnalystSettings, client: anthropic.Anthropic | None = None
    ) -> None:
        self._settings = settings
        self._client = client or make_client(settings)
        self.model = settings.analyst_model

    def analyse(self, digest: Digest) -> ClaudeOutcome:
        """Returns Claude's analysis of the digest.

        Raises:
            MalformedAnswer: an answer stayed malformed after the corrective retry.
            BudgetExceeded: the budget ran out before the analysis was complete.
            ClaudeUnavailable: the API is down, overloaded or rate-limiting us (retry later).
            ClaudeRejected: the API refused the request (key, model name, request shape).
        """
        usage = Usage(budget=self._settings.analyst_token_budget)
        single = build_prompt("single", digest.as_json())
        tokens = self._count(single)
        if tokens <= min(self._settings.analyst_request_tokens, usage.budget):
            result = self._ask(single, tokens, usage)
            return ClaudeOutcome(result, self.model, usage, stages=1)
        return self._staged(digest, usage)

    # -- staged analysis -------------------------------------------------------------------------

    def _staged(self, digest: Digest, usage: Usage) -> ClaudeOutcome:
        sections = digest.sections()
        # Every part carries the window's header, with how many distinct values each list had
        # (the parts hold the entries; the "and N more" must not get lost in the split).
        distinct = {
            name: value["distinct"]
            for name, value in sections[1:]
            if isinstance(value, dict) and "distinct" in value
        }
        header = {**sections[0][1], "distinct_values": distinct}
        items = _items(sections[1:])
        prompts, trimmed = self._plan(header, items, usage.budget)
        log.info(
            "digest too large for one request: analysing it in %d parts",
            len(prompts),
            extra={"parts": len(prompts), "trimmed_items": trimmed},
        )
        parts = [self._ask(prompt, tokens, usage) for prompt, tokens in prompts]
        combined = self._reduce(header, parts, usage)
        notes = [f"analysed in {len(parts)} parts"]
        if trimmed:
            notes.append(f"{trimmed} digest entries left out to stay within the token budget")
        return ClaudeOutcome(combined, self.model, usage, len(parts) + 1, trimmed, notes)

    def _plan(
        self, header: Any, items: list[Item], budget: int
    ) -> tuple[list[tuple[Prompt, int]], int]:
        """Packs the items into parts whose requests fit, trimming the least important."""
        request_cap = self._settings.analyst_request_tokens
        overhead = self._count(build_prompt("map", {"window": header, "part": "1/1"}))
        capacity = max(200, int((request_cap - overhead) * CHARS_PER_TOKEN * 0.9))
        kept = list(items)
        for _ in range(MAX_PACKING_ROUNDS):
            chunks = _pack(kept, capacity)
            if len(chunks) > self._settings.analyst_max_stages:
                kept = _trim(kept)
                continue
            prompts = [
                build_prompt("map", _chunk_data(header, chunk, i + 1, len(chunks)))
                for i, chunk in enumerate(chunks)
            ]
            counts = [self._count(prompt) for prompt in prompts]
            if max(counts) > request_cap:
                capacity = int(capacity * 0.75)
                continue
            if sum(counts) + self._reduce_reserve(header, len(chunks)) > budget:
                kept = _trim(kept)
                continue
            return list(zip(prompts, counts, strict=True)), len(items) - len(kept)
        raise BudgetExceeded("no split of the digest fits the token budget")

    def _reduce_reserve(self, header: Any, parts: int) -> int:
        overhead = self._count(build_prompt("reduce", {"window": header, "parts": []}))
        return overhead + int(parts * REDUCE_PART_CHARS / CHARS_PER_TOKEN)

    def _reduce(self, header: Any, parts: list[AnalysisResult], usage: Usage) -> AnalysisResult:
        limit = REDUCE_PART_CHARS
        for _ in range(4):
            data = {"window": header, "parts": [_compact(part, limit) for part in parts]}
            prompt = build_prompt("reduce", data)
            tokens = self._count(prompt)
            if tokens <= min(usage.remaining, self._settings.analyst_request_tokens):
                return self._ask(prompt, tokens, usage)
            limit //= 2
        raise BudgetExceeded("the combining request does not fit the remaining budget")

    # -- one request -----------------------------------------------------------------------------

    def _ask(self, prompt: Prompt, tokens: int, usage: Usage) -> AnalysisResult:
        """Sends one request; one corrective retry when the answer is malformed."""
        usage.reserve(tokens)
        text = self._create(prompt, None, usage)
        try:
            return parse_answer(text)
        except MalformedAnswer as error:
            reason = str(error)
            log.warning("malformed answer (%s), asking once more", reason)
        correction = CORRECTION.format(reason=reason)
        usage.reserve(self._count(prompt, correction))
        return parse_answer(self._create(prompt, correction, usage))

    def _create(self, prompt: Prompt, correction: str | None, usage: Usage) -> str:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self._settings.analyst_max_output_tokens,
            "system": prompt.system,
            "messages": prompt.messages(correction),
        }
        if self._settings.analyst_structured_output:
            request["output_config"] = {
                "format": {"type": "json_schema", "schema": answer_json_schema()}
            }
        message = self._call(prompt.stage, lambda: self._client.messages.create(**request))
        usage.requests += 1
        usage.input_tokens += message.usage.input_tokens
        usage.output_tokens += message.usage.output_tokens
        CLAUDE_TOKENS.labels("input").inc(message.usage.input_tokens)
        CLAUDE_TOKENS.labels("output").inc(message.usage.output_tokens)
        if message.stop_reason == "refusal":
            raise MalformedAnswer("the model refused")
        if message.stop_reason == "max_tokens":
            log.warning("answer cut at max_tokens=%d", self._settings.analyst_max_output_tokens)
        return "".join(block.text for block in message.content if block.type == "text")

    def _count(self, prompt: Prompt, correction: str | None = None) -> int:
        counted = self._call(
            "count_tokens",
            lambda: self._client.messages.count_tokens(
                model=self.model, system=prompt.system, messages=prompt.messages(correction)
            ),
        )
        return int(counted.input_tokens)

    def _call(self, stage: str, send: Callable[[], Any]) -> Any:
        try:
            response = send()
        except anthropic.APIStatusError as error:
            CLAUDE_REQUESTS.labels(stage, str(error.status_code)).inc()
            if error.status_code == 429 or error.status_code >= 500:
                raise ClaudeUnavailable(_describe(error)) from None
            raise ClaudeRejected(_describe(error)) from None
        except anthropic.APIConnectionError as error:
            CLAUDE_REQUESTS.labels(stage, "connection").inc()
            raise ClaudeUnavailable(
                f"cannot reach the Claude API: {type(error).__name__}"
            ) from None
        CLAUDE_REQUESTS.labels(stage, "ok").inc()
        return response


def _describe(error: anthropic.APIStatusError) -> str:
    """Describes an API error by status and error type (the API's own words, no secrets)."""
    body: dict[str, Any] = error.body if isinstance(error.body, dict) else {}
    found = body.get("error")
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = str(detail.get("type") or type(error).__name__)[:64]
    message = str(detail.get("message") or "")[:200]
    return f"Claude API answered {error.status_code} {kind}: {message}".strip().rstrip(":")


def _items(sections: list[tuple[str, Any]]) -> list[Item]:
    """Flattens digest sections into entries, in order of importance."""
    items: list[Item] = []
    for name, value in sections:
        entries = value.get("top", []) if isinstance(value, dict) else value
        items.extend((name, entry) for entry in entries)
    return items


def _pack(items: list[Item], capacity: int) -> list[list[Item]]:
    chunks: list[list[Item]] = [[]]
    size = 0
    for item in items:
        cost = len(orjson.dumps(item[1])) + 2
        if chunks[-1] and size + cost > capacity:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += cost
    return chunks


def _trim(items: list[Item]) -> list[Item]:
    """Drops the least important fifth of the entries (they come last)."""
    return items[: max(1, int(len(items) * 0.8))] if len(items) > 1 else items


def _chunk_data(header: Any, chunk: list[Item], number: int, total: int) -> dict[str, Any]:
    data: dict[str, Any] = {"window": header, "part": f"{number}/{total}"}
    for section, entry in chunk:
        data.setdefault(section, []).append(entry)
    return data


def _compact(result: AnalysisResult, limit: int) -> dict[str, Any]:
    """A part analysis, shrunk to about `limit` characters for the combining request."""
    findings = [
        {
            "key": f.key,
            "severity": f.severity.value,
            "title": f.title,
            "evidence": f.evidence[:3],
        }
        for f in result.findings
    ]
    compact: dict[str, Any] = {
        "summary": result.summary[: limit // 4],
        "severity": result.severity.value,
        "findings": findings,
        "iocs": [{"type": i.type.value, "value": i.value} for i in result.iocs[:20]],
    }
    while len(orjson.dumps(compact)) > limit and (compact["iocs"] or compact["findings"]):
        if compact["iocs"]:
            compact["iocs"] = compact["iocs"][: len(compact["iocs"]) // 2]
        else:
            compact["findings"] = compact["findings"][: len(compact["findings"]) // 2]
    return compact

"""The documentation's links lead somewhere, and the `rbr` commands it shows exist as written."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import typer

from rbr_cli.main import app
from rbr_cli.plugins import task_names

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".venv", ".tools", ".git", "node_modules", "var"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`([^`]+)`")
RBR_COMMAND = re.compile(r"^(?:\.venv/bin/|uv run )?rbr\s+(.*)$")


def documents() -> list[Path]:
    """Returns every Markdown file of the repository (READMEs and docs/)."""
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts)
    )


def prose_lines(text: str) -> Iterator[str]:
    """Yields the lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def code_lines(text: str) -> Iterator[str]:
    """Yields the lines inside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            yield line


def slug(heading: str) -> str:
    """Returns the anchor GitHub gives a heading: lower case, punctuation dropped, - for space."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(
        char
        for char in text
        if char in " -_" or unicodedata.category(char)[0] in "LN"  # letters and numbers
    )
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Returns the anchors of a Markdown file's headings (repeats numbered as GitHub does)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def broken_links(document: Path) -> list[str]:
    """Returns the relative links of a document whose file or heading does not exist."""
    broken = []
    for line in prose_lines(document.read_text()):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            path = (document.parent / file_part).resolve() if file_part else document
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: no heading #{anchor} in {path.name}")
    return broken


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files_and_headings(document: Path) -> None:
    assert broken_links(document) == []


def test_the_readme_stays_short_and_leads_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    for page in (
        "design",
        "local-stack",
        "real-honeypots",
        "operations",
        "configuration",
        "benchmarks",
    ):
        assert f"(docs/{page}.md)" in readme
    # The contract lives in the repository, not beside it.
    assert "../shared" not in readme


def documented_commands() -> list[tuple[str, str]]:
    """Returns (document, command line) for every `rbr ...` the documentation shows."""
    found = []
    for document in documents():
        text = document.read_text()
        spans = [span for line in prose_lines(text) for span in CODE_SPAN.findall(line)]
        for candidate in [*spans, *code_lines(text)]:
            match = RBR_COMMAND.match(candidate.strip().replace("\\|", "|"))
            if match:
                found.append((str(document.relative_to(ROOT)), match.group(1)))
    return found


def _alternatives(token: str) -> list[str]:
    return [part.strip("()[]") for part in token.split("|") if part.strip("()[]")]


def unknown_parts(line: str) -> list[str]:
    """Returns the subcommands, options and task names of an rbr command line that rbr lacks."""
    command = typer.main.get_command(app)
    context = typer.Context(command)
    tokens = line.split("#", 1)[0].split()
    unknown = []
    while tokens and hasattr(command, "list_commands"):  # a group (typer bundles its own click)
        names = _alternatives(tokens[0])
        subcommands = [command.get_command(context, name) for name in names]
        if not names or names[0].startswith("-") or subcommands[0] is None:
            break
        tokens.pop(0)
        unknown += [name for name, sub in zip(names, subcommands, strict=True) if sub is None]
        command = next(sub for sub in subcommands if sub is not None)
    options = {"--help"} | {
        opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
    }
    for token in tokens:
        for option in _alternatives(token):
            if option.startswith("--") and option.split("=")[0] not in options:
                unknown.append(option)
    if command.name == "run-task" and tokens and re.fullmatch(r"[a-z_|]+", tokens[0]):
        unknown += [name for name in _alternatives(tokens[0]) if name not in task_names()]
    return unknown


def test_documented_rbr_commands_exist() -> None:
    commands = documented_commands()
    assert len(commands) > 50  # the pages above show many; a broken pattern would find none
    wrong = [
        f"{document}: rbr {line} -> {parts}"
        for document, line in commands
        if (parts := unknown_parts(line))
    ]
    assert wrong == []


def test_unknown_parts_names_what_rbr_lacks() -> None:
    assert unknown_parts("buckets list --state pending") == []
    assert unknown_parts("buckets approve|frobnicate NAME") == ["frobnicate"]
    assert unknown_parts("sources list --unclaimed --everything") == ["--everything"]
    assert unknown_parts("run-task pull_updates|no_such_task") == ["no_such_task"]

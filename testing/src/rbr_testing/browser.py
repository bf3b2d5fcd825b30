"""A real browser for console tests: Debian's Chromium driven by Playwright.

Playwright's own browser download does not work here; it drives `/usr/bin/chromium`
(`make browser` or `.ci/run` installs it). Without it the browser tests are skipped, unless
RBR_REQUIRE_INTEGRATION=1 (`make test`), where they fail. Screenshots go to
RBR_TEST_ARTIFACTS (default: the pytest temporary directory's `artifacts/`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("RBR_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1366, "height": 768}


def _missing(reason: str) -> None:
    if os.environ.get("RBR_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason}: install it with `make browser`")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Yields a headless Chromium (one per test module).

    Never wider: Playwright's sync API runs an event loop on the main thread while it is
    started, so every later test calling `asyncio.run` would fail with "cannot be called from
    a running event loop".
    """
    if shutil.which(CHROMIUM) is None:
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only browser tests
    except ImportError:
        _missing("Playwright for Python is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns the directory screenshots are saved in (kept after the run)."""
    configured = os.environ.get("RBR_TEST_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path_factory.getbasetemp() / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory

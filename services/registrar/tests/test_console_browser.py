"""The console in a real browser (Chromium at 1366x768): an operator's day, page by page.

Log in, approve a pending bucket from the fleet table, open a bucket, search its logs, read
an analysis, acknowledge an alert, read the fleet's threat intelligence, and find both changes
in the audit log; hostile log text
must never run. A screenshot of every page is saved (see `rbr_testing.browser`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import Engine

from rbr_testing.console import PASSWORD, add_user, seed_bucket
from rbr_testing.registry import RegistrarFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

expect = pytest.importorskip("playwright.sync_api").expect

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
NAMES = [f"rustbucket-web{number:05d}" for number in range(1, 7)]
FIRST, PENDING = NAMES[0], NAMES[1]
ALERT = f"alert-{FIRST}"


def shot(page: Page, artifacts: Path, name: str, *, full: bool = False) -> None:
    page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=full)


def register(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for number, name in enumerate(NAMES):
            body = {
                "name": name,
                "ip_address": f"127.0.0.{number + 2}",
                "port": 8443 + number,
                "operating_system": "Ubuntu 24.04 LTS",
                "token": TOKEN[:-2] + f"{number:02d}",
            }
            assert client.post("/register_bucket", json=body).is_success


def test_an_operator_works_through_the_console_in_a_browser(
    registrar_factory: RegistrarFactory,
    mysql_engine: Engine,
    chromium: Browser,
    artifacts: Path,
) -> None:
    registrar = registrar_factory(console_port=0)
    register(registrar.url)
    seed_bucket(mysql_engine, FIRST)
    add_user(mysql_engine, "ada", "admin")
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    console = registrar.console_url

    page.goto(f"{console}/")
    assert page.url.startswith(f"{console}/console/login")
    shot(page, artifacts, "login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console}/console/")
    assert page.locator(".who").inner_text().startswith("ada")
    shot(page, artifacts, "fleet-before")

    # The filter updates the table in place (htmx) and the address bar (a shareable URL).
    page.select_option("select[name=state]", "pending")
    page.wait_for_url("**/console/?state=pending**")
    expect(page.locator("#fleet tbody tr")).to_have_count(len(NAMES))
    page.fill("input[name=prefix]", FIRST)
    page.wait_for_url(f"**prefix={FIRST}**")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    page.fill("input[name=prefix]", "")
    expect(page.locator("#fleet tbody tr")).to_have_count(len(NAMES))

    page.check(f"input[name=names][value={PENDING}]")
    page.click("button[name=action][value=approve]")
    page.wait_for_selector("text=approve: 1 updated")
    assert page.locator(f"a:text-is('{PENDING}')").count() == 0  # no longer pending
    page.goto(f"{console}/console/")
    row = page.locator("tr", has=page.locator(f"a:text-is('{PENDING}')"))
    assert row.locator(".badge").inner_text() == "active"
    shot(page, artifacts, "fleet")

    page.click(f"a:text-is('{FIRST}')")
    page.wait_for_url(f"**/console/buckets/{FIRST}")
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart .chart-bar").count() == 48
    shot(page, artifacts, "bucket", full=True)

    page.click("text=search them →")
    page.wait_for_url("**/console/logs?bucket=*")
    page.fill("input[name=username]", "admin")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**username=admin**")
    cells = page.locator("table tbody tr td:nth-child(5)").all_inner_texts()
    assert cells
    assert set(cells) == {"admin"}
    shot(page, artifacts, "logs")
    page.goto(f"{console}/console/logs?bucket={FIRST}")
    hostile = page.locator("pre.text", has_text="onerror").first
    assert "<script>" in hostile.inner_text()  # shown as text, never run
    box = page.locator("pre.text", has_text="AAAA").first.bounding_box()
    assert box is not None
    assert box["width"] < 1366  # the 100 kB line wraps inside its cell
    shot(page, artifacts, "logs-hostile")
    page.goto(f"{console}/console/logs?command=bot.sh")
    expect(page.locator("#search-notice")).to_contain_text("Showing the last 24 hours")
    shot(page, artifacts, "logs-notice")
    page.click("#search-notice >> text=the last 7 days")
    page.wait_for_url("**since=**")
    expect(page.locator("#search-notice")).to_have_count(0)
    shot(page, artifacts, "logs-widened")

    page.click("nav >> text=Analyses")
    page.click("table a[href^='/console/analyses/']")
    page.wait_for_selector("text=Downloader fetched and ran a script")
    assert page.is_visible("text=Block 203.0.113.9 at the edge")
    shot(page, artifacts, "analysis", full=True)

    page.click("nav >> text=Alerts")
    page.wait_for_url("**/console/alerts")
    page.click(f"#alert-{ALERT} button:text-is('Acknowledge')")
    page.wait_for_selector(f"text=alert {ALERT}: acknowledged")
    assert page.locator(f"#alert-{ALERT}").count() == 0  # no longer firing
    page.click(".tabs >> text=acknowledged")
    page.wait_for_selector(f"#alert-{ALERT}")
    assert "by ada" in page.locator(f"#alert-{ALERT}").inner_text()
    shot(page, artifacts, "alerts")

    page.click("nav >> text=Intel")
    page.wait_for_url("**/console/intel")
    expect(page.locator("table.techniques tbody tr")).to_have_count(2)
    assert page.locator("table.techniques tbody tr").first.inner_text().startswith("T1110")
    assert "hxxp[://]203[.]0[.]113[.]9" in page.locator("#new-indicators").inner_text()
    assert "<img src=x" in page.locator("#main").inner_text()  # the hostile AS name, as text
    page.click(".tabs >> text=last 7 days")
    page.wait_for_url("**/console/intel?period=7d")
    expect(page.locator("table.techniques tbody tr")).to_have_count(3)
    shot(page, artifacts, "intel", full=True)

    page.click("nav >> text=Audit")
    page.wait_for_url("**/console/audit")
    table = page.locator("table").inner_text()
    assert "bucket.approve" in table
    assert PENDING in table
    assert "alert.acknowledge" in table
    shot(page, artifacts, "audit")

    page.click("nav >> text=Topics")
    page.wait_for_selector("#topics table")  # asked of the broker once the page is shown
    assert "bucket.registered" in page.locator("#topics table").inner_text()
    shot(page, artifacts, "topics")
    page.click("nav >> text=Channels")
    page.wait_for_url("**/console/channels")
    shot(page, artifacts, "channels")

    dark = chromium.new_context(viewport={"width": 1366, "height": 768}, color_scheme="dark")
    dark.add_cookies(context.cookies())
    dark_page = dark.new_page()
    dark_page.goto(f"{console}/console/buckets/{FIRST}")
    shot(dark_page, artifacts, "bucket-dark")
    dark.close()

    external: list[str] = []
    page.on("request", lambda r: r.url.startswith(console) or external.append(r.url))
    page.goto(f"{console}/docs")
    page.wait_for_selector(".swagger-ui .opblock-tag")  # the operations, from /openapi.json
    assert "threat intelligence" in page.locator(".swagger-ui").inner_text().lower()
    assert external == [], "/docs loaded something from another site"
    shot(page, artifacts, "api-docs")
    page.goto(f"{console}/console/")

    page.click("text=Log out")
    page.wait_for_url("**/console/login")
    page.goto(f"{console}/console/")
    assert "/console/login" in page.url
    context.close()
    assert dialogs == [], "a hostile string ran as script"
    assert [e for e in errors if "401" not in e] == [], "script errors or CSP violations"

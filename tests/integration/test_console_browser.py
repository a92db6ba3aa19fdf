"""The operations console in a real browser: Debian's Chromium driven by Playwright (the system
browser, never a downloaded one), against a real worker, broker, store and the BC emulator.

The screenshots these tests take are the ones in the README (``docs/console/*.png``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.support.amqp import depth
from tests.support.console import OPS_TOKEN, READ_TOKEN, ConsoleWorker, invoice_on_account
from tests.support.wait import wait_for

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
GROUP = "BC-ACCOUNT-MISSING"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium); .ci/run installs it with "
    "apt-get install chromium",
)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, width: int = 1280) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    # A CSP violation or a script error shows up here: the pages must have none.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return context, page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/console/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def make_dead_letter(worker: ConsoleWorker, number: str) -> str:
    event_id = await worker.publish("moment.invoice.created", invoice_on_account(number, "9999"))

    async def indexed() -> object:
        return await worker.console.index.get(event_id)

    await wait_for(indexed, 20, 0.1)
    return event_id


async def test_fix_the_cause_then_replay_the_group_from_the_page(
    worker: ConsoleWorker, chromium: Browser
) -> None:
    await worker.save_config()
    event_id = await make_dead_letter(worker, "1866")
    context, page = await new_page(chromium)
    base = worker.url

    await page.goto(base + "/console/")
    await expect(page.get_by_label("API token")).to_be_visible()
    await shot(page, "sign-in")
    await sign_in(page, base, OPS_TOKEN)
    await expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    await expect(page.get_by_role("link", name="org-console")).to_be_visible()
    await shot(page, "organizations")

    await page.get_by_role("link", name="org-console").click()
    await expect(page.get_by_role("heading", name="org-console", exact=True)).to_be_visible()
    await expect(page.get_by_text("never shown")).to_be_visible()
    await shot(page, "organization")

    await (
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
    )
    await expect(page.get_by_role("link", name=GROUP)).to_be_visible()
    await expect(page.get_by_text("Add the account in Business Central").first).to_be_visible()
    await shot(page, "dead-letters")

    await page.get_by_role("link", name=GROUP).click()
    await expect(page.get_by_role("link", name="invoice 1866")).to_be_visible()
    await shot(page, "group")
    await page.get_by_role("link", name="invoice 1866").click()
    await expect(page.get_by_role("heading", name="Envelope")).to_be_visible()
    await expect(page.get_by_text("x-bc-error-code").first).to_be_visible()
    await shot(page, "message")
    await page.go_back()

    # Fix the cause in BC (the emulator): the account now exists.
    await worker.add_account("9999")
    await page.get_by_role("link", name="Replay", exact=True).click()
    await expect(page.locator("#count")).to_contain_text("1 dead letter will")
    await shot(page, "replay-confirm")
    await page.get_by_role("button", name="Replay", exact=True).click()

    # The progress bar updates by itself (htmx polling) until the run is finished.
    await expect(page.get_by_text(re.compile(r"Finished: 1 of 1 replayed"))).to_be_visible(
        timeout=20_000
    )
    await expect(page.locator("progress")).to_have_attribute("value", "1")
    await shot(page, "replay-finished")

    assert await wait_for(lambda: worker.posted_invoice("1866"), 20, 0.1)
    await page.get_by_role("link", name="Back to the dead letters").click()
    await expect(page.get_by_text("No active dead letters.")).to_be_visible()
    assert await depth(worker.settings, worker.settings.queue("dead")) == 0
    assert await worker.console.index.get(event_id) is None

    # The integration log: find the invoice by its Moment number, see its state and steps.
    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Integration log")
        .click()
    )
    await page.get_by_label("Organization").fill("org-console")
    await page.get_by_label("Moment number or id").fill("1866")
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", name="invoice 1866: synced")).to_be_visible()
    await shot(page, "integration-log")
    # The reconciliation of November: the invoice matches what BC posted.
    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Reconciliation")
        .click()
    )
    await page.get_by_label("Organization").fill("org-console")
    await page.get_by_label("From").fill("2026-11-01")
    await page.get_by_label("To").fill("2026-11-30")
    await page.get_by_role("button", name="Reconcile").click()
    await expect(page.get_by_role("row", name=re.compile(r"^Matched 1"))).to_be_visible()
    await shot(page, "reconciliation")

    # Narrow screen: the same page, rows as cards.
    narrow, small = await new_page(chromium, width=390)
    await sign_in(small, base, OPS_TOKEN)
    await expect(small.get_by_role("link", name="org-console")).to_be_visible()
    await shot(small, "organizations-narrow")
    assert small.errors == []  # type: ignore[attr-defined]
    assert page.errors == []  # type: ignore[attr-defined]
    await narrow.close()
    await context.close()


async def test_read_only_sees_no_action_and_forged_posts_are_refused(
    worker: ConsoleWorker, chromium: Browser
) -> None:
    await worker.save_config()
    await make_dead_letter(worker, "1867")
    context, page = await new_page(chromium)
    base = worker.url
    await sign_in(page, base, READ_TOKEN)
    await expect(page.get_by_text("read-only")).to_be_visible()
    await page.goto(f"{base}/console/dead-letters/group?by=code&key={GROUP}")
    await expect(page.get_by_role("link", name="invoice 1867")).to_be_visible()
    assert await page.get_by_role("link", name="Replay", exact=True).count() == 0
    assert await page.get_by_role("button", name="Replay").count() == 0
    assert await page.get_by_role("link", name="Archive").count() == 0
    assert await page.get_by_role("button", name="Save note").count() == 0
    await shot(page, "group-read-only")

    # A forged POST with the session's own CSRF token (taken from the sign-out form).
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    answer = await page.request.post(
        f"{base}/console/dead-letters/replay", form={"by": "code", "key": GROUP, "csrf": csrf}
    )
    assert answer.status == 403
    assert "may only read" in await answer.text()
    assert await worker.console.operations.recent() == []
    assert await depth(worker.settings, worker.settings.queue("dead")) == 1
    await context.close()

    # A form without the CSRF token is refused, even for a token that may act.
    context, page = await new_page(chromium)
    await sign_in(page, base, OPS_TOKEN)
    await expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    answer = await page.request.post(
        f"{base}/console/dead-letters/note", form={"by": "code", "key": GROUP, "note": "forged"}
    )
    assert answer.status == 403
    assert await worker.console.index.note("code", GROUP) is None
    await context.close()


async def test_a_wrong_token_never_gets_a_session(worker: ConsoleWorker, chromium: Browser) -> None:
    context, page = await new_page(chromium)
    await sign_in(page, worker.url, "definitely-not-a-token")
    await expect(page.get_by_role("alert")).to_have_text("That API token is not valid.")
    await shot(page, "sign-in-refused")
    cookies = {c["name"] for c in await context.cookies()}
    assert "bcsync_session" not in cookies
    await page.goto(worker.url + "/console/dead-letters")
    await expect(page.get_by_label("API token")).to_be_visible()  # back at the sign-in
    await context.close()

"""The dashboard in a real headless browser (Playwright driving Debian's chromium): it renders
without console errors, a live call appears and ends, the transcript dialog shows the turns with
tool calls and barge-ins marked, the tool chart and stats update, and sign-in works with a token.
Screenshots are kept in artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.stack import run_stack

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is required for the browser tests: apt-get install chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


def watch_console(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_live_call_appears_ends_and_shows_transcript(conn: str, browser: Browser) -> None:
    async with run_stack(conn, time_scale=4) as stack:
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = watch_console(page)
        await page.goto(f"{stack.host_url}/dashboard")
        await expect(page.locator("#conn-text")).to_have_text("live")
        await expect(page.locator("#active-empty")).to_be_visible()

        warm = await stack.place("barge_in", caller="+14255550111")
        await stack.wait_call(warm, timeout=60)
        call_id = await stack.place("standard", caller="+14255550142")
        card = page.locator(f'#active li[data-call="{call_id}"]')
        await expect(card).to_be_visible(timeout=10_000)
        await expect(card.locator(".who")).to_have_text("•••••••0142")
        await expect(page.locator("#s-active")).to_have_text("1")
        await expect(page.locator("#pulse")).to_have_class("pulse on")
        await expect(page.locator(f'#active li[data-call="{call_id}"] .sub')).to_contain_text(
            "lookup_order", timeout=20_000
        )
        await expect(page.locator("#s-tools")).to_have_text("1")  # live calls' tools count at once
        await shot(page, "dashboard-live-call")

        row = page.locator(f'#recent tr[data-call="{call_id}"]')
        await expect(row.locator(".badge")).to_have_text("completed", timeout=60_000)
        await expect(card).to_have_count(0)
        await expect(page.locator("#s-total")).to_have_text("2")
        await expect(page.locator("#s-completed")).to_have_text("2")
        await expect(page.locator("#s-tools")).to_have_text("2")
        await expect(page.locator('#tools li[data-tool="lookup_order"] .pct')).to_have_text("1 · 50%")
        await expect(page.locator("#latency circle")).to_have_count(2)

        # Keyboard: focus the button, open with Enter, the turn list takes focus, Escape closes.
        await row.locator("button").focus()
        await page.keyboard.press("Enter")
        dialog = page.locator("#transcript")
        await expect(dialog).to_be_visible()
        await expect(page.locator("#t-turns")).to_be_focused()
        turns = page.locator("#t-turns li")
        await expect(turns.filter(has_text="lookup_order")).to_have_count(1)
        await expect(page.locator("#t-turns li.user")).to_have_count(3)
        await expect(page.locator("#t-turns li.assistant").first).to_contain_text("Alex from Contoso")
        await shot(page, "dashboard-transcript")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(row.locator("button")).to_be_focused()

        # The barge-in call's transcript marks the interrupted turn.
        await page.locator(f'#recent tr[data-call="{warm}"] button').click()
        await expect(page.locator("#t-turns .cut")).to_have_count(1)
        await page.keyboard.press("Escape")
        await shot(page, "dashboard-after-calls")
        assert errors == []


async def test_sign_in_with_admin_token(conn: str, browser: Browser) -> None:
    async with run_stack(conn, ADMIN_TOKEN="tok-123") as stack:
        page = await browser.new_page()
        errors = watch_console(page)
        await page.goto(f"{stack.host_url}/dashboard")
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#conn-text")).to_have_text("signed out")
        await shot(page, "dashboard-signin")
        await page.fill("#token", "wrong")
        await page.click("#signin-form button")
        await expect(page.locator("#signin-error")).to_have_text("That token was not accepted.")
        await page.fill("#token", "tok-123")
        await page.click("#signin-form button")
        await expect(page.locator("#main")).to_be_visible()
        await expect(page.locator("#conn-text")).to_have_text("live")
        cookies = await page.context.cookies()
        session = next(c for c in cookies if c["name"] == "va_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["value"] != "tok-123"
        # The 401s of the signed-out probe and the wrong token are expected network errors.
        assert all("401" in e for e in errors), errors

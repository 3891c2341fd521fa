"""The dashboard in a real headless browser (Playwright driving Debian's chromium): it renders
without console errors, a live call appears and ends, the transcript dialog shows the turns with
tool calls and barge-ins marked, the tool chart and stats update, and sign-in works with a token.
Screenshots are kept in artifacts/."""

from __future__ import annotations

import re
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
        # The live call's row in "All calls" shows it as it is now, not as it was when the list
        # was loaded: its tools and its running duration follow the feed.
        listed = page.locator(f'#all-calls tr[data-call="{call_id}"]')
        await expect(listed.locator("td.num").first).to_have_text("1", timeout=10_000)
        was = await listed.locator("td").nth(4).text_content()
        await expect(listed.locator("td").nth(4)).not_to_have_text(was or "", timeout=8_000)
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
        await row.locator("button[data-transcript]").focus()
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
        await expect(row.locator("button[data-transcript]")).to_be_focused()

        # The barge-in call's transcript marks the interrupted turn.
        await page.locator(f'#recent tr[data-call="{warm}"] button[data-transcript]').click()
        await expect(page.locator("#t-turns .cut")).to_have_count(1)
        await page.keyboard.press("Escape")
        # The newest page of "All calls" follows the calls as they start and end (it used to
        # keep saying "No calls match." from when the page loaded).
        await expect(page.locator("#all-calls tr")).to_have_count(2, timeout=10_000)
        await expect(page.locator("#all-empty")).to_be_hidden()
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


# WCAG 2.1 contrast, computed in the page for every visible text node against the background it
# is drawn on (alpha backgrounds composited up the tree): 4.5:1, or 3:1 for large text.
CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1); };
  const background = (el) => { const stack = []; for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor); if (c && c[3] > 0) { stack.push(c); if (c[3] === 1) break; } }
    let bg = [255, 255, 255, 1]; for (const c of stack.reverse()) bg = over(c, bg); return bg; };
  const failures = []; let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement; if (!t.textContent.trim() || !el || el.closest("[hidden]") || !el.getClientRects().length) continue;
    const style = getComputedStyle(el); if (style.visibility === "hidden" || Number(style.opacity) === 0) continue;
    const fg = parse(style.color); if (!fg) continue;
    const bg = background(el); const col = over(fg, bg);
    const [l1, l2] = [lum(col), lum(bg)].sort((a, b) => b - a); const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5; checked++;
    if (ratio < need) failures.push(`${el.tagName}.${el.className} "${t.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)} < ${need}`);
  }
  return { checked, failures };
}
"""


async def test_an_operator_can_trust_what_the_dashboard_says(conn: str, browser: Browser) -> None:
    async with run_stack(conn, time_scale=20, CALLER_DENY="+1900*") as stack:
        page = await browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = watch_console(page)
        # Before the first snapshot: "connecting…" and no zeros beside a green dot.
        await page.route("**/api/events", lambda route: None)  # held: never answered
        await page.goto(f"{stack.host_url}/dashboard?page=2")
        await expect(page.locator("#conn-text")).to_have_text("connecting…")
        await expect(page.locator("#s-total")).to_have_text("…")
        await expect(page.locator("#recent-empty")).to_be_hidden()  # no "No calls yet." before knowing
        assert "on" not in (await page.locator("#conn-dot").get_attribute("class") or "")
        await shot(page, "dashboard-connecting")
        await page.unroute("**/api/events")

        ids = [
            await stack.place("barge_in", caller="+14255550101"),
            await stack.place("standard", caller="+14255550102"),
            await stack.place("greeting_only", caller="+19005550103"),
        ]
        for call_id in ids:
            await stack.wait_call(call_id, timeout=60)
        await page.reload()
        await expect(page.locator("#conn-text")).to_have_text("live")
        await expect(page.locator("#s-total")).to_have_text("3")
        # Short, copyable call ids (the log tags' 12 characters) and dates with times.
        row = page.locator(f'#recent tr[data-call="{ids[1]}"]')
        await expect(row.locator(".callid")).to_have_text(ids[1][-12:])
        assert await row.locator(".callid").get_attribute("title") == f"{ids[1]} (click to copy)"
        started = await row.locator("td").nth(3).inner_text()
        assert (
            any(
                m in started
                for m in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
            )
            and ":" in started
        ), started
        # Cost: tiles and a column, from the usage of each response.
        await expect(page.locator("#s-cost-today")).to_have_text(re.compile(r"^(\$\d+\.\d\d|<\$0\.01)$"))
        await expect(page.locator("#s-cost-minute")).to_have_text(re.compile(r"^(\$\d+\.\d{3}|<\$0\.01)$"))
        await expect(row.locator("[data-cost]")).to_have_text(re.compile(r"^(\$\d+\.\d{3}|<\$0\.01)$"))
        # Percentiles say what they are; the chart has a zero, a top value and a time axis.
        await expect(page.locator("#s-p95")).to_have_text(re.compile(r"^≤ \d+ ms$"))
        await expect(page.locator("#latency circle")).to_have_count(2)
        labels = await page.locator("#latency text").evaluate_all("els => els.map((e) => e.textContent)")
        assert "0" in labels and any(t.endswith(" ms") for t in labels), labels
        assert len(await page.locator("#latency text.axis").all()) == 2
        # Every call, page by page (two a page here), filtered by status.
        all_rows = page.locator("#all-calls tr")
        await expect(all_rows).to_have_count(2)
        await expect(page.locator("#page-info")).to_have_text("page 1")
        await page.click("#page-next")
        await expect(all_rows).to_have_count(1)
        await expect(page.locator("#page-info")).to_have_text("page 2 (last)")
        await expect(page.locator("#page-next")).to_be_disabled()
        await page.select_option("#status-filter", "rejected")
        await expect(all_rows).to_have_count(1)
        await expect(all_rows.first).to_have_attribute("data-call", ids[2])
        await page.select_option("#status-filter", "")
        # "1 barge-in", the id and the cost in the dialog.
        await page.locator(f'#recent tr[data-call="{ids[0]}"] button[data-transcript]').click()
        await expect(page.locator("#t-meta")).to_contain_text("1 barge-in ·")
        await expect(page.locator("#t-title")).to_contain_text(ids[0][-12:])
        await expect(page.locator("#t-meta")).to_contain_text("tokens)")
        await shot(page, "dashboard-trust-dialog")
        await page.keyboard.press("Escape")
        await shot(page, "dashboard-trust")
        contrast = await page.evaluate(CONTRAST_JS)
        assert contrast["checked"] > 50 and contrast["failures"] == [], contrast
        assert errors == []


async def test_profiles_page_edits_with_validation_and_history(conn: str, browser: Browser) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        async with stack.http.put(
            f"{stack.host_url}/api/profiles/sales", json={"instructions": "Sam from sales.", "voice": "cedar"}
        ) as resp:
            assert resp.status == 201
        async with stack.http.put(f"{stack.host_url}/api/routes/%2B18005550100", json={"profile": "sales"}) as resp:
            assert resp.status == 201
        page = await browser.new_page(viewport={"width": 1400, "height": 1400})
        errors = watch_console(page)
        await page.goto(f"{stack.host_url}/dashboard")
        row = page.locator('#profile-list tr[data-profile="sales"]')
        await expect(row).to_contain_text("+18005550100")
        await expect(page.locator('#profile-list tr[data-profile="default"]')).to_contain_text("built in")
        await row.locator("button").click()
        await expect(page.locator("#editor-title")).to_have_text("Profile sales · version 1")
        text = await page.locator("#profile-json").input_value()
        await page.fill("#profile-json", text.replace('"cedar"', '"robot"'))
        await page.click("#profile-save")
        await expect(page.locator("#profile-error")).to_contain_text("voice: unknown voice 'robot'")
        await shot(page, "dashboard-profile-error")
        await page.fill("#profile-json", text.replace('"cedar"', '"sage"'))
        await page.click("#profile-save")
        await expect(page.locator("#profile-status")).to_have_text("saved as version 2")
        await expect(page.locator("#profile-history li")).to_have_count(2)
        await expect(row.locator("td").nth(1)).to_have_text("2")
        await expect(row.locator("td").nth(2)).to_have_text("sage")
        await shot(page, "dashboard-profiles")
        # A call to the routed number shows its profile and version in the dialog, once the
        # webhook app has the new version (it follows the store within seconds).
        await stack.webhook_has_profile("sales", 2, "+18005550100")
        call_id = await stack.place("greeting_only", called="+18005550100")
        await stack.wait_call(call_id)
        await page.locator(f'#recent tr[data-call="{call_id}"] button[data-transcript]').click()
        await expect(page.locator("#t-meta")).to_contain_text("profile sales v2")
        assert [e for e in errors if "400 (Bad Request)" not in e] == [], "only the refused save failed"

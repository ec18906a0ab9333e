"""An agent works calls in a real browser (Playwright driving the system Chromium by its
path; nothing downloaded): sign in, next call from the keyboard, verify the identity, a
refused log that keeps what was typed, a callback booked in the agent's zone with the member's
time shown, an escalation, a pause and resume seen on the wallboard, one whole call without
the mouse; then a supervisor's wallboard shows the calls. axe-core (tests/web/axe, injected
into the page) finds no serious or critical issue on /login, /agent with a claimed call and
/floor; at 1280x800 and on a tablet (820x1180) nothing the agent needs is off-screen.
Screenshots are saved in the test's tmp folder. Both databases.

Without chromium or Playwright the test skips with a loud reason, unless
CAMPAIGN_REQUIRE_BROWSER=1 makes that a failure."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from console_helpers import PASSWORD, add_console_user, log_entries, make_world, task_row
from sqlalchemy import select

from engine.app import App
from engine.db.models import AgentPause
from engine.webhooks.app import build_asgi_app

REQUIRE_BROWSER = os.environ.get("CAMPAIGN_REQUIRE_BROWSER") == "1"
AXE = Path(__file__).resolve().parent / "axe" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}
# What axe reports of each issue (the first nodes only).
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def _missing(message: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        _missing(
            "!!! chromium is not installed: the console was NOT tested in a browser "
            "(apt-get install -y chromium; CAMPAIGN_REQUIRE_BROWSER=1 makes this a failure)"
        )
    assert found is not None
    return found


@pytest.fixture
def served(app: App) -> Iterator[str]:
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_asgi_app(app), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def _world(app: App) -> list[int]:
    world = make_world(app)
    world.agent("ana", timezone="America/Chicago")
    names = [("Ada", "Lovelace"), ("Bo", "Chen"), ("Cy", "Young"), ("Di", "Prince"), ("Ed", "Wood")]
    tasks = [
        world.task(world.member(first_name=first, last_name=last, points_balance=1000 - 100 * i))
        for i, (first, last) in enumerate(names)
    ]
    add_console_user(app, "ana")
    add_console_user(app, "sam", role="supervisor")
    return tasks


def _playwright() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        _missing("!!! playwright is not installed: pip install playwright (no browser download)")
    return sync_api


def _serious_issues(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now. The pages' CSP
    allows only the console's own script, so the context that runs axe bypasses CSP."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def _off_screen(page: Any, selectors: list[str]) -> list[str]:
    """Selectors of elements not wholly inside the viewport's width, plus any sideways
    scrolling of the page (scrolling down is fine; sideways is not)."""
    width = page.viewport_size["width"]
    problems = []
    for selector in selectors:
        box = page.locator(selector).first.bounding_box()
        if box is None:
            problems.append(f"{selector}: not rendered")
        elif box["x"] < 0 or box["x"] + box["width"] > width:
            problems.append(f"{selector}: x {box['x']:.0f}..{box['x'] + box['width']:.0f}")
    scroll = page.evaluate("document.documentElement.scrollWidth")
    if scroll > width:
        problems.append(f"page scrolls sideways: {scroll}px wide in {width}px")
    return problems


@contextmanager
def _pages_asked(page: Any, served: str) -> Iterator[list[tuple[str, str]]]:
    """The pages (documents, not the script or stylesheet) the tab asks the console for
    meanwhile: (method, URL), in order; a redirect's GET is one more."""
    asked: list[tuple[str, str]] = []

    def seen(request: Any) -> None:
        if request.resource_type == "document" and request.url.startswith(served):
            asked.append((request.method, request.url))

    page.on("request", seen)
    try:
        yield asked
    finally:
        page.remove_listener("request", seen)


def test_an_agent_works_calls_in_the_browser(app: App, served: str, tmp_path: Path) -> None:
    chromium = _chromium()
    sync_api = _playwright()
    expect = sync_api.expect
    tasks = _world(app)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
            page = context.new_page()
            page.goto(f"{served}/agent")
            expect(page).to_have_url(f"{served}/login")
            assert _serious_issues(page) == [], "/login"
            page.get_by_label("Login").fill("ana")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{served}/agent")
            shot(page, "01-signed-in")

            # Call 1, from the keyboard: Enter on the focused "Next call"; "Verified" is next.
            expect(page.locator("#next")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Ada Lovelace")
            expect(page.locator("#verify")).to_be_focused()
            expect(page.locator("#gated")).to_be_visible()
            expect(page.locator("#countdown")).not_to_have_text("…")
            assert _serious_issues(page) == [], "/agent with a claimed call, not verified"
            shot(page, "02-call-sheet")
            # Next call answered with the sheet itself (#19): the address bar says /agent, and
            # a reload reads the page again instead of posting Next call a second time.
            expect(page).to_have_url(f"{served}/agent")
            with page.expect_request(lambda r: r.url.startswith(served)) as reloaded:
                page.reload()
            assert (reloaded.value.method, reloaded.value.url) == ("GET", f"{served}/agent")
            expect(page.locator("#member")).to_contain_text("Ada Lovelace")

            # A refused log: CONVERTED without a verified identity.
            page.select_option("#disposition", "CONVERTED")
            expect(page.locator('fieldset[data-code="CONVERTED"]')).to_be_visible()
            expect(page.locator('fieldset[data-code="CALLBACK"]')).to_be_hidden()
            page.locator("#f-CONVERTED-action").select_option("renewed")
            page.get_by_label("no", exact=True).check()
            page.get_by_label("Notes for the next person").fill("wants the gold card")
            page.locator("#log").click()
            expect(page.locator("#error")).to_contain_text("requires field verified=yes")
            expect(page.get_by_label("Notes for the next person")).to_have_value(
                "wants the gold card"
            )
            expect(page.locator("#disposition")).to_have_value("CONVERTED")
            shot(page, "03-refused")
            assert log_entries(app) == []

            # The member did not answer after all.
            page.select_option("#disposition", "NO_ANSWER")
            page.get_by_label("Notes for the next person").fill("")
            page.locator("#log").click()
            expect(page.locator("#logged")).to_contain_text("NO_ANSWER")
            # The log answered with the page itself (#19): the address bar says the page's
            # address, and a reload reads that page instead of posting the log again.
            seq = log_entries(app)[-1].seq
            expect(page).to_have_url(f"{served}/agent?logged={seq}")
            with page.expect_request(lambda r: r.url.startswith(served)) as reloaded:
                page.reload()
            assert (reloaded.value.method, reloaded.value.url) == (
                "GET",
                f"{served}/agent?logged={seq}",
            )
            expect(page.locator("#logged")).to_contain_text("NO_ANSWER")
            assert len(log_entries(app)) == 1

            # Call 2: verified, then a callback at 13:00 in the agent's zone (Chicago) =
            # 14:00 for the member.
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Bo Chen")
            page.locator("#verify").click()
            expect(page.locator("#verified")).to_contain_text("Identity verified")
            expect(page).to_have_url(f"{served}/agent")  # the answer is /agent's page (#19)
            expect(page.locator("#gated")).to_have_count(0)
            expect(page.locator("#contacts")).to_be_visible()
            expect(page.locator("#disposition")).to_be_focused()
            assert _serious_issues(page) == [], "/agent with a claimed call, verified"
            page.select_option("#disposition", "CALLBACK")
            expect(page.get_by_label("yes", exact=True)).to_be_checked()
            page.locator("#f-CALLBACK-callback_at").fill("2026-03-02T13:00")
            expect(page.locator("#f-CALLBACK-callback_at-member")).to_contain_text(
                "14:00 America/New_York"
            )
            page.locator("#f-CALLBACK-who").select_option("agent")
            shot(page, "04-callback")
            page.locator("#log").click()
            expect(page.locator("#logged")).to_contain_text("CALLBACK")
            expect(page.locator("#callbacks")).to_contain_text("13:00")

            # Call 3: escalated to another team.
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Cy Young")
            page.locator("#verify").click()
            page.select_option("#disposition", "ESCALATED")
            page.locator("#f-ESCALATED-team").fill("escalations")
            page.locator("#f-ESCALATED-reason").fill("billing dispute")
            page.locator("#f-ESCALATED-reason").press("Enter")  # Enter submits
            expect(page.locator("#logged")).to_contain_text("ESCALATED")
            expect(page.locator('#plan tr[data-period="day"]')).to_contain_text("3")

            # A break: no call is offered while paused; the wallboard says so.
            page.get_by_label("Pause for").select_option("break")
            with _pages_asked(page, served) as asked:
                page.locator("#pause").click()
                expect(page.locator("#paused")).to_contain_text("Paused: break since 09:00")
            # Pause answered with the page itself (#19): one request, no redirect's GET.
            assert asked == [("POST", f"{served}/agent/pause")]
            expect(page).to_have_url(f"{served}/agent")
            expect(page.locator("#next")).to_have_count(0)
            expect(page.locator("#resume")).to_be_focused()
            shot(page, "05-paused")
            # The supervisor in a browser of their own (own cookies).
            floor = browser.new_context(viewport=DESKTOP, bypass_csp=True).new_page()
            floor.goto(f"{served}/login")
            floor.get_by_label("Login").fill("sam")
            floor.get_by_label("Password").fill(PASSWORD)
            floor.keyboard.press("Enter")
            expect(floor).to_have_url(f"{served}/floor")
            row = floor.locator('tr[data-agent="ana"]')
            expect(row).to_contain_text("paused (break) since 15:00 UTC")
            assert _serious_issues(floor) == [], "/floor"
            # It refreshes itself on a timer the reader can stop (not a meta refresh).
            toggle = floor.locator("#refresh-toggle")
            expect(toggle).to_have_text("Stop refreshing (every 30 s)")
            toggle.click()
            expect(toggle).to_have_attribute("aria-pressed", "true")
            toggle.click()
            expect(toggle).to_have_attribute("aria-pressed", "false")
            with _pages_asked(page, served) as asked:
                page.locator("#resume").click()
                expect(page.locator("#next")).to_be_focused()
            assert asked == [("POST", f"{served}/agent/resume")]  # one request (#19)
            expect(page).to_have_url(f"{served}/agent")
            with page.expect_request(lambda r: r.url.startswith(served)) as reloaded:
                page.reload()  # reads the page; does not post Resume again
            assert (reloaded.value.method, reloaded.value.url) == ("GET", f"{served}/agent")
            expect(page.locator("#next")).to_be_focused()

            # Call 4 without the mouse: next, verified, disposition, reason, log.
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Di Prince")
            expect(page.locator("#verify")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("#verified")).to_be_visible()
            expect(page.locator("#disposition")).to_be_focused()
            page.keyboard.type("NOT_I")  # type-ahead in the focused list
            expect(page.locator("#disposition")).to_have_value("NOT_INTERESTED")
            reason = page.locator("#f-NOT_INTERESTED-reason")
            for _ in range(6):
                page.keyboard.press("Tab")
                if reason.evaluate("el => el === document.activeElement"):
                    break
            expect(reason).to_be_focused()
            page.keyboard.type("moving abroad")
            page.keyboard.press("Enter")
            expect(page.locator("#logged")).to_contain_text("NOT_INTERESTED")
            expect(page.locator("#next")).to_be_focused()

            # Call 5.
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Ed Wood")
            page.locator("#verify").click()
            page.select_option("#disposition", "NOT_INTERESTED")
            page.locator("#f-NOT_INTERESTED-reason").fill("moving abroad")
            page.locator("#f-NOT_INTERESTED-reason").press("Enter")
            expect(page.locator("#logged")).to_contain_text("NOT_INTERESTED")
            expect(page.locator('#plan tr[data-period="day"]')).to_contain_text("5")
            shot(page, "06-done")

            floor.reload()
            row = floor.locator('tr[data-agent="ana"]')
            expect(row).to_contain_text("5")  # calls today
            expect(row).to_contain_text("signed in, idle")
            shot(floor, "07-floor")
        finally:
            browser.close()

    assert [e.disposition for e in log_entries(app, "ana")] == [
        "NO_ANSWER",
        "CALLBACK",
        "ESCALATED",
        "NOT_INTERESTED",
        "NOT_INTERESTED",
    ]
    assert [e.verified for e in log_entries(app, "ana")][1:] == [True] * 4
    assert task_row(app, tasks[2]).team == "escalations"
    with app.sessions() as s:
        (pause,) = s.scalars(select(AgentPause))
    assert (pause.agent, pause.code, pause.end_reason) == ("ana", "break", "resumed")
    assert len(list(shots.glob("*.png"))) == 7


def test_nothing_needed_is_off_screen_on_a_laptop_or_a_tablet(
    app: App, served: str, tmp_path: Path
) -> None:
    chromium = _chromium()
    sync_api = _playwright()
    expect = sync_api.expect
    _world(app)
    needed = [
        "#member",
        "#verify",
        "#release",
        "#countdown",
        "#script",
        "#disposition",
        "#notes",
        "#log",
        "#plan",
        "#callbacks",
        "header button",
    ]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(f"{served}/login")
            page.get_by_label("Login").fill("ana")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")
            assert _off_screen(page, ["#next", "#pause", "#plan", "header button"]) == []
            page.locator("#next").click()
            expect(page.locator("#member")).to_be_visible()
            for size in (DESKTOP, TABLET):
                page.set_viewport_size(size)
                assert _off_screen(page, needed) == [], size
                page.screenshot(
                    path=str(tmp_path / f"sheet-{size['width']}x{size['height']}.png"),
                    full_page=True,
                )
            page.locator("#verify").click()
            page.select_option("#disposition", "CALLBACK")
            for size in (TABLET, DESKTOP):
                page.set_viewport_size(size)
                assert (
                    _off_screen(
                        page,
                        [*needed[2:], "#contacts", "#f-CALLBACK-callback_at", "#f-CALLBACK-who"],
                    )
                    == []
                ), size
        finally:
            browser.close()

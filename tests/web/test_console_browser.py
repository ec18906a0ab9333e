"""An agent works calls in a real browser (Playwright driving the system Chromium by its
path; nothing downloaded): sign in, next call from the keyboard, a refused log that keeps
what was typed, a callback booked in the agent's zone with the member's time shown, an
escalation, more calls; then a supervisor's wallboard shows the calls. Screenshots are saved
in the test's tmp folder. SQLite only: the HTTP tests run every rule on both databases, and
this one is about the page.

Without chromium or Playwright the test skips with a loud reason, unless
CAMPAIGN_REQUIRE_BROWSER=1 makes that a failure."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import PASSWORD, add_console_user, log_entries, make_world, task_row

from engine.app import App
from engine.webhooks.app import build_asgi_app

REQUIRE_BROWSER = os.environ.get("CAMPAIGN_REQUIRE_BROWSER") == "1"


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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_agent_works_calls_in_the_browser(app: App, served: str, tmp_path: Path) -> None:
    chromium = _chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("!!! playwright is not installed: pip install playwright (no browser download)")
    tasks = _world(app)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{served}/agent")
            expect(page).to_have_url(f"{served}/login")
            page.get_by_label("Login").fill("ana")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{served}/agent")
            shot(page, "01-signed-in")

            # Call 1, from the keyboard: Enter on the focused "Next call".
            expect(page.locator("#next")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Ada Lovelace")
            expect(page.locator("#disposition")).to_be_focused()
            expect(page.locator("#countdown")).not_to_have_text("…")
            shot(page, "02-call-sheet")

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

            # Call 2: a callback at 13:00 in the agent's zone (Chicago) = 14:00 for the member.
            page.keyboard.press("Enter")
            expect(page.locator("#member")).to_contain_text("Bo Chen")
            page.select_option("#disposition", "CALLBACK")
            page.get_by_label("yes", exact=True).check()
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
            page.select_option("#disposition", "ESCALATED")
            page.get_by_label("yes", exact=True).check()
            page.locator("#f-ESCALATED-team").fill("escalations")
            page.locator("#f-ESCALATED-reason").fill("billing dispute")
            page.locator("#f-ESCALATED-reason").press("Enter")  # Enter submits
            expect(page.locator("#logged")).to_contain_text("ESCALATED")

            # Calls 4 and 5.
            for name in ("Di Prince", "Ed Wood"):
                page.keyboard.press("Enter")
                expect(page.locator("#member")).to_contain_text(name)
                page.select_option("#disposition", "NOT_INTERESTED")
                page.get_by_label("yes", exact=True).check()
                page.locator("#f-NOT_INTERESTED-reason").fill("moving abroad")
                page.locator("#f-NOT_INTERESTED-reason").press("Enter")
                expect(page.locator("#logged")).to_contain_text("NOT_INTERESTED")
            shot(page, "05-done")

            floor = browser.new_page(viewport={"width": 1280, "height": 800})
            floor.goto(f"{served}/login")
            floor.get_by_label("Login").fill("sam")
            floor.get_by_label("Password").fill(PASSWORD)
            floor.keyboard.press("Enter")
            expect(floor).to_have_url(f"{served}/floor")
            row = floor.locator('tr[data-agent="ana"]')
            expect(row).to_contain_text("5")  # calls today
            expect(row).to_contain_text("signed in, idle")
            shot(floor, "06-floor")
        finally:
            browser.close()

    assert [e.disposition for e in log_entries(app, "ana")] == [
        "NO_ANSWER",
        "CALLBACK",
        "ESCALATED",
        "NOT_INTERESTED",
        "NOT_INTERESTED",
    ]
    assert task_row(app, tasks[2]).team == "escalations"
    assert len(list(shots.glob("*.png"))) == 6

"""A coordinator in a real browser (Playwright driving the system Chromium by its path, as
test_console_browser.py does): sign in, open a report with a filter, download its CSV, pause
a run and resume it. Both databases. Screenshots are saved in the test's tmp folder.

Without chromium or Playwright the test skips with a loud reason, unless
CAMPAIGN_REQUIRE_BROWSER=1 makes that a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console_helpers import PASSWORD, add_console_user, make_world
from sqlalchemy import select
from test_console_browser import _chromium, _missing, served

from engine.app import App
from engine.db.models import CampaignRun, ConsoleAuditEvent
from engine.reports.catalog import BY_NAME, build
from engine.reports.render import to_csv

__all__ = ["served"]  # the uvicorn fixture, shared with the agent's browser test


def _run_status(app: App, run_id: int) -> str:
    with app.sessions() as s:
        return str(s.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id)))


def _csv_of_campaign_report(app: App, run_id: int, *, period: str) -> str:
    """What `campaign report campaign RUN --period P --csv` prints, built in-process."""
    with app.sessions() as s:
        built = build(
            BY_NAME["campaign"],
            s,
            app.settings,
            at=app.clock.now(),
            period=period,
            program=None,
            own={"target": str(run_id)},
        )
        return to_csv(built.report.tables())


def test_a_coordinator_reads_a_report_and_pauses_a_run(
    app: App, served: str, tmp_path: Path
) -> None:
    chromium = _chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("!!! playwright is not installed: pip install playwright (no browser download)")
    world = make_world(app)
    world.agent("ana")
    world.task(world.member(first_name="Ada", last_name="Lovelace"))
    run_id = world.run_id
    add_console_user(app, "cody", role="coordinator")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, accept_downloads=True
            )
            page = context.new_page()
            page.goto(f"{served}/login")
            page.get_by_label("Login").fill("cody")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{served}/floor")

            # A report, filtered through its form (a GET: the URL carries the filters).
            page.get_by_role("link", name="Reports").click()
            expect(page).to_have_url(f"{served}/reports")
            page.locator(".report-list").get_by_role("link", name="Campaign").click()
            expect(page.locator("#prompt")).to_contain_text("NAME|RUN_ID")
            page.get_by_label("NAME|RUN_ID (required)").fill(str(run_id))
            page.get_by_label("period").fill("30d")
            page.locator("#show").click()
            # (an empty field is sent empty and means no filter)
            expect(page).to_have_url(
                f"{served}/reports/campaign?target={run_id}&period=30d&program="
            )
            expect(page.locator("#report h1")).to_have_text("Campaign report: renew-calls")
            expect(page.locator("#report")).to_contain_text(f"1 run (id {run_id})")
            shot(page, "01-report")

            with page.expect_download() as caught:
                page.locator("#csv").click()
            download = caught.value
            assert download.suggested_filename.startswith("campaign-")
            assert download.suggested_filename.endswith(".csv")
            text = Path(download.path()).read_text("utf-8")
            assert text == _csv_of_campaign_report(app, run_id, period="30d")

            # Pause the run with a reason, then resume it.
            page.get_by_role("link", name="Runs").click()
            expect(page).to_have_url(f"{served}/runs")
            row = page.locator(f'tr[data-run="{run_id}"]')
            expect(row.locator(".status")).to_have_text("active")
            row.get_by_label(f"Why pause run {run_id}").fill("offer under review")
            row.locator(f"#pause-{run_id}").click()
            expect(page.locator("#done")).to_contain_text("active -> paused (offer under review)")
            expect(row.locator(".status")).to_have_text("paused (offer under review)")
            shot(page, "02-paused")
            assert _run_status(app, run_id) == "paused"
            row.locator(f"#resume-{run_id}").click()
            expect(page.locator("#done")).to_contain_text("paused -> active")
            expect(row.locator(".status")).to_have_text("active")
            shot(page, "03-resumed")
        finally:
            browser.close()

    assert _run_status(app, run_id) == "active"
    with app.sessions() as s:
        events = list(
            s.scalars(
                select(ConsoleAuditEvent.event)
                .where(ConsoleAuditEvent.login == "cody", ConsoleAuditEvent.event.like("run_%"))
                .order_by(ConsoleAuditEvent.id)
            )
        )
    assert events == ["run_paused", "run_resumed"]
    assert len(list(shots.glob("*.png"))) == 3

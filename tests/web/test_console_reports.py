"""The reports served live (`/reports`): the same filters, the same report and the same
renderers as `campaign report` (its --csv and --html output compared with what the console
serves), wrong filter values told in the CLI's words, the standalone page's CSP, and who may
read them."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from console_helpers import Browser, add_console_user, error_text, make_world

from cli import CliState, cli
from engine.app import App
from engine.reports.catalog import REPORTS


def _world(app: App) -> int:
    world = make_world(app)
    world.agent("ana")
    world.task(world.member(points_balance=500))
    add_console_user(app, "mia", role="manager")
    add_console_user(app, "cody", role="coordinator")
    add_console_user(app, "sam", role="supervisor")
    add_console_user(app, "ana")
    return world.run_id


def _cli(app: App, *args: str) -> str:
    # The CLI on the app's clock, so both say the same "Generated ..." line.
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        obj=CliState(overrides={}, clock=app.clock),
    )
    return result.output


def _manager(app: App, login: str = "mia") -> Browser:
    browser = Browser(app)
    browser.sign_in(login)
    return browser


def test_every_report_is_served_with_its_filter_form(app: App) -> None:
    run_id = _world(app)
    browser = _manager(app)
    index = browser.get("/reports")
    assert index.status_code == 200
    for spec in REPORTS:
        assert f'href="/reports/{spec.name}"' in index.text
    # The campaign report needs NAME|RUN_ID: asked for, nothing built.
    asked = browser.get("/reports/campaign")
    assert (
        asked.status_code == 200 and 'id="prompt"' in asked.text and 'id="report"' not in asked.text
    )
    for name, query in [
        ("campaign", f"target={run_id}"),
        ("deliverability", "period=30d"),
        ("retention", "campaign=renew-calls"),
        ("agents", "agent=ana&period=7d"),
        ("complaints", "by=day&program=loyalty"),
    ]:
        page = browser.get(f"/reports/{name}?{query}")
        assert page.status_code == 200, (name, page.text)
        assert 'id="report"' in page.text and "Generated " in page.text
        assert f'href="/reports/{name}.csv?{query.replace("&", "&amp;")}"' in page.text
    # The form keeps what was asked (a shareable GET URL).
    page = browser.get("/reports/complaints?by=month&period=7d")
    assert '<option value="month" selected>' in page.text
    assert 'name="period" value="7d"' in page.text


def test_csv_download_is_what_the_cli_prints(app: App) -> None:
    run_id = _world(app)
    browser = _manager(app)
    response = browser.get(f"/reports/campaign.csv?target={run_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="campaign-\d{8}T\d{4}\.csv"', disposition)
    assert response.text == _cli(app, "report", "campaign", str(run_id), "--csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    # Blocks of title, header, rows: the funnel's header is there with its columns.
    assert any("created" in row and "sent" in row for row in rows)
    agents = browser.get("/reports/agents.csv?agent=ana&period=7d")
    assert agents.text == _cli(app, "report", "agents", "--agent", "ana", "--period", "7d", "--csv")


def test_standalone_page_is_the_html_file_with_its_own_csp(app: App, tmp_path: Path) -> None:
    _world(app)
    browser = _manager(app)
    page = browser.get("/reports/deliverability.html?period=30d")
    assert page.status_code == 200
    out = tmp_path / "report.html"
    _cli(app, "report", "deliverability", "--period", "30d", "--html", str(out))
    assert page.text == out.read_text("utf-8")  # same clock, same "Generated" line
    csp = page.headers["content-security-policy"]
    assert "style-src 'sha256-" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    # The embedded report keeps the console's policy: own origin only.
    embedded = browser.get("/reports/deliverability?period=30d")
    assert embedded.headers["content-security-policy"].startswith("default-src 'self'")
    assert "<style" not in embedded.text


@pytest.mark.parametrize(
    ("query", "cli_args"),
    [
        ("campaign?target=nope", ["campaign", "nope"]),
        ("campaign?target=99999", ["campaign", "99999"]),
        ("agents?period=yesterdayish", ["agents", "--period", "yesterdayish"]),
        ("retention?program=nope", ["retention", "--program", "nope"]),
        ("deliverability?campaign=nope", ["deliverability", "--campaign", "nope"]),
        ("complaints?by=year", ["complaints", "--by", "year"]),
    ],
)
def test_invalid_filters_get_the_cli_message(app: App, query: str, cli_args: list[str]) -> None:
    _world(app)
    browser = _manager(app)
    page = browser.get(f"/reports/{query}")
    assert page.status_code == 400
    message = error_text(page.text)
    assert message
    cli_output = _cli(app, "report", *cli_args)
    assert cli_output.startswith("Error: ") or "Error: " in cli_output
    assert message in cli_output, (message, cli_output)
    # The CSV download says the same, on a page, instead of a broken file.
    name, _, rest = query.partition("?")
    download = browser.get(f"/reports/{name}.csv?{rest}")
    assert download.status_code == 400 and error_text(download.text) == message


def test_who_may_read_reports(app: App) -> None:
    run_id = _world(app)
    for login in ("mia", "cody", "sam"):
        assert _manager(app, login).get("/reports/agents").status_code == 200
    agent = _manager(app, "ana")
    for path in ("/reports", "/reports/agents", f"/reports/campaign.csv?target={run_id}"):
        refused = agent.get(path)
        assert refused.status_code == 403, path
        assert "text/csv" not in refused.headers["content-type"]
    anonymous = Browser(app)
    assert anonymous.get("/reports/agents.csv").url.path == "/login"
    assert _manager(app).get("/reports/nope").status_code == 404

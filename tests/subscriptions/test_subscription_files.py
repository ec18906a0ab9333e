"""Subscription files: validated like campaigns (file:line field errors), periods in the
program's zone across DST, headings and numbers in the subscription's language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from engine.errors import DefinitionErrors
from engine.subscriptions.l10n import Localizer
from engine.subscriptions.loader import load_subscription
from engine.subscriptions.periods import report_period

BAD = """\
name: finance
program: demo
reports:
  - report: campaign
  - report: retention
    evnt: renewal
period: last fortnight
recipients: [finance@example.com, not-an-address]
language: fr
schedule:
  cron: "0 7 32 * *"
"""


def test_every_mistake_is_reported_with_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "finance.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(DefinitionErrors) as caught:
        load_subscription(path)
    found = {(e.line, e.field) for e in caught.value.errors}
    assert found == {
        (4, "reports[0]"),
        (6, "reports[1].evnt"),
        (7, "period"),
        (8, "recipients[1]"),
        (9, "language"),
        (11, "schedule.cron"),
    }
    text = str(caught.value)
    assert f"{path}:6 reports[1].evnt: unknown key 'evnt'; did you mean 'event'?" in text
    assert "needs campaign: NAME" in text


def test_validate_covers_the_reports_folder(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "finance.yaml").write_text(BAD, encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["validate"],
        env={
            "CAMPAIGN_CAMPAIGNS_DIR": str(tmp_path / "campaigns"),
            "CAMPAIGN_REPORTS_DIR": str(tmp_path / "reports"),
            "CAMPAIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        },
    )
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'reports' / 'finance.yaml'}:9 language:" in result.output


def test_a_good_file_loads_with_people_s_spelling_of_the_period(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: ok\nreports: [{report: retention}]\nperiod: Last Calendar Month\n"
        "recipients: Finance@Example.com\nschedule: {cron: '0 7 1 * *'}\n",
        encoding="utf-8",
    )
    sub = load_subscription(path).subscription
    assert sub.period == "last_calendar_month"
    assert sub.recipients == ["Finance@example.com"]  # the domain is normalised
    assert sub.format == ["html", "csv"]


def test_last_calendar_month_in_london_spans_the_october_clock_change() -> None:
    fire = datetime(2026, 11, 1, 7, tzinfo=UTC)  # 07:00 GMT
    period = report_period("last_calendar_month", fire=fire, timezone="Europe/London")
    assert period.start == datetime(2026, 9, 30, 23, tzinfo=UTC)  # 1 Oct 00:00 BST
    assert period.end == datetime(2026, 11, 1, 0, tzinfo=UTC)  # 1 Nov 00:00 GMT
    assert period.end - period.start == timedelta(days=31, hours=1)
    assert period.label == "2026-10-01..2026-10-31"


def test_last_calendar_month_in_new_york_spans_the_march_clock_change() -> None:
    fire = datetime(2027, 4, 1, 11, tzinfo=UTC)  # 07:00 EDT
    period = report_period("last_calendar_month", fire=fire, timezone="America/New_York")
    assert period.start == datetime(2027, 3, 1, 5, tzinfo=UTC)  # EST
    assert period.end == datetime(2027, 4, 1, 4, tzinfo=UTC)  # EDT
    assert period.end - period.start == timedelta(days=31) - timedelta(hours=1)


def test_last_week_and_month_to_date() -> None:
    fire = datetime(2026, 12, 9, 12, tzinfo=UTC)  # a Wednesday
    week = report_period("last_week", fire=fire, timezone="UTC")
    assert week.label == "2026-11-30..2026-12-06"
    mtd = report_period("month_to_date", fire=fire, timezone="UTC")
    assert (mtd.start, mtd.end) == (datetime(2026, 12, 1, tzinfo=UTC), fire)


def test_chinese_headings_numbers_and_dates() -> None:
    zh = Localizer("zh")
    assert zh.text("treatment conversion rate") == "干预组转化率"
    assert zh.text("Campaign renewal-due") == "活动 renewal-due"
    assert zh.text("a column nobody translated") == "a column nobody translated"
    assert zh.day(datetime(2026, 10, 31).date()) == "2026年10月31日"
    assert zh.number(1234567) == "1,234,567"
    assert Localizer("en").day(datetime(2026, 10, 31).date()) == "October 31, 2026"

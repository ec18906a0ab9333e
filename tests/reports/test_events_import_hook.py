"""`campaign events import` matches the conversions the new events make (both databases)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from report_helpers import enroll, make_run, members, message
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.db.models import Conversion, Enrollment, OutboxMessage
from engine.testing.fakes import make_program


def test_events_import_matches_conversions(app: App, tmp_path: Path) -> None:
    now = app.clock.now()
    launched = now - timedelta(days=5)
    with app.sessions() as s, s.begin():
        program = make_program(s, at=launched)
        run = make_run(s, program, at=launched)
        a, b = members(s, program, 2, at=launched)
        ea, eb = enroll(s, run, a), enroll(s, run, b, group="holdout")
        queued = message(s, ea, step="sms-1", channel="sms", status="queued", at=now)
        ids = (a.external_id, b.external_id, ea.id, eb.id, queued.id)
    events = tmp_path / "events.csv"
    when = (now - timedelta(days=1)).isoformat()
    events.write_text(
        "external_id,type,occurred_at,amount,reference\n"
        f"{ids[0]},renewal,{when},99.00,R1\n"
        f"{ids[1]},login,{when},,L1\n",
        encoding="utf-8",
    )
    args = ["--database-url", app.settings.database_url, "events", "import", str(events)]
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["conversions"] == 1
    with app.sessions() as s:
        conversion = s.scalars(select(Conversion)).one()
        assert conversion.enrollment_id == ids[2] and conversion.source == "import"
        assert s.get(Enrollment, ids[2]).state == "converted"  # type: ignore[union-attr]
        assert s.get(OutboxMessage, ids[4]).status == "skipped"  # type: ignore[union-attr]
    # Importing the same file again: no new event, no new conversion.
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "conversions matched: 0" in result.output

"""`report complaints` lists each complaint (member, agent, summary) under its category and
counts the complaint events a program's feed imports (both databases)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from test_call_reports import MON, _log, _world

from cli import cli
from engine.app import App
from engine.db.models import CallTask, Participant
from engine.reports.complaints import IMPORTED


def _cli(app: App, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _members(app: App, tasks: list[int]) -> list[str]:
    with app.sessions() as s:
        return [
            s.scalars(
                select(Participant.external_id)
                .join(CallTask, CallTask.participant_id == Participant.id)
                .where(CallTask.id == task)
            ).one()
            for task in tasks
        ]


def _world_with_complaints(app: App, tmp_path: Path) -> list[str]:
    t1, t2, t3, t4 = _world(app)
    m1, m2, m3, m4 = _members(app, [t1, t2, t3, t4])
    _log(app, t1, "ana", "COMPLAINT", MON + timedelta(minutes=5), category="billing",
         summary="charged twice for the renewal")  # fmt: skip
    _log(app, t2, "ben", "COMPLAINT", MON + timedelta(minutes=20), category="billing",
         summary="refund not received")  # fmt: skip
    _log(app, t3, "ben", "COMPLAINT", MON + timedelta(days=8), category="service",
         summary="nobody called back")  # fmt: skip
    _log(app, t4, "ana", "NO_ANSWER", MON + timedelta(minutes=40))
    # The CRM's feed: two complaints and a login (not a complaint), one outside the period.
    feed = tmp_path / "events.csv"
    feed.write_text(
        "external_id,type,occurred_at,reference\n"
        f"{m4},complaint,2026-03-03T09:00:00Z,CRM-1001\n"
        f"{m4},login,2026-03-03T10:00:00Z,CRM-1002\n"
        f"{m1},complaint,2026-04-03T09:00:00Z,CRM-1003\n",
        "utf-8",
    )
    _cli(app, "events", "import", str(feed), "--program", "loyalty")
    return [m1, m2, m3, m4]


def test_complaints_are_listed_under_their_category(app: App, tmp_path: Path) -> None:
    m1, m2, m3, m4 = _world_with_complaints(app, tmp_path)
    data = json.loads(
        _cli(app, "report", "complaints", "--period", "2026-03", "--by", "month", "--json")
    )
    # 2 billing + 1 service calls, 1 imported complaint in March (the April one is outside)
    assert {c["category"]: c["count"] for c in data["counts"]} == {
        "billing": 2,
        "service": 1,
        IMPORTED: 1,
    }
    listed = [
        (c["category"], c["member"], c["agent"], c["source"], c["summary"])
        for c in data["complaints"]
    ]
    assert listed == [
        ("billing", m1, "ana", "call", "charged twice for the renewal"),
        ("billing", m2, "ben", "call", "refund not received"),
        (IMPORTED, m4, None, "import:events.csv", "event CRM-1001"),
        ("service", m3, "ben", "call", "nobody called back"),
    ]

    out = _cli(app, "report", "complaints", "--period", "2026-03", "--by", "month", "--csv")
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    titles = [next(csv.reader([b[0]]))[0] for b in blocks]
    assert titles == [
        "Complaints by category and month, 2026-03",
        "Complaints: billing (2)",
        f"Complaints: {IMPORTED} (1)",
        "Complaints: service (1)",
        # Each complaint call opened a case (engine/cases), none resolved yet.
        "Cases by category and root cause, opened 2026-03",
        "Most recent cases with root cause (unresolved)",
    ]
    grid = list(csv.reader(io.StringIO("\n".join(blocks[0][1:]))))
    assert grid == [
        ["month", "billing", IMPORTED, "service", "all"],
        ["2026-03-01", "2", "1", "1", "4"],
        ["total", "2", "1", "1", "4"],
    ]
    billing = list(csv.reader(io.StringIO("\n".join(blocks[1][1:]))))
    assert billing[0] == ["when", "member", "agent", "campaign", "source", "summary"]
    assert [row[1:3] + row[5:] for row in billing[1:]] == [
        [m1, "ana", "charged twice for the renewal"],
        [m2, "ben", "refund not received"],
    ]

    text = _cli(app, "report", "complaints", "--period", "2026-03", "--by", "week")
    assert "Complaints: billing (2)" in text and "refund not received" in text


def test_imported_complaints_belong_to_no_campaign(app: App, tmp_path: Path) -> None:
    _world_with_complaints(app, tmp_path)
    data = json.loads(
        _cli(app, "report", "complaints", "--period", "2026-03", "--campaign", "renewal-test",
             "--json")
    )  # fmt: skip
    assert data["events_counted"] is False
    assert {c["category"]: c["count"] for c in data["counts"]} == {"billing": 2, "service": 1}
    text = _cli(app, "report", "complaints", "--period", "2026-03", "--campaign", "renewal-test")
    assert "Imported complaint events belong to no campaign: not counted here." in text

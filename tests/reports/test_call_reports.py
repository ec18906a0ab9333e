"""`report agents` and `report complaints` over calls logged through engine.calls (both DBs);
and a CONVERTED call becomes a conversion attributed to the agent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from report_helpers import call_task, enroll, make_run, members
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.calls.agents import add_agent
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.reporting import agent_performance
from engine.db.models import Conversion
from engine.reports.agents import agents_report
from engine.reports.common import parse_period
from engine.reports.complaints import complaints_report
from engine.testing.fakes import make_consent, make_program

MON = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York


def _world(app: App) -> list[int]:
    with app.sessions() as s, s.begin():
        program = make_program(s, at=MON - timedelta(days=30))
        run = make_run(s, program, at=MON - timedelta(days=10))
        people = members(s, program, 4, at=MON - timedelta(days=30))
        tasks = []
        for p in people:
            p.timezone = "America/New_York"
            make_consent(s, p, channel="call", status="opted_in", at=MON - timedelta(days=30))
            tasks.append(call_task(s, enroll(s, run, p), at=MON - timedelta(hours=1)).id)
        for login, target in (("ana", 10), ("ben", 5)):
            add_agent(
                s, login, name=login.title(), daily_target=target, at=MON - timedelta(days=30)
            )
    return tasks


def _log(app: App, task: int, agent: str, code: str, when: datetime, **fields: str) -> None:
    with app.sessions() as s, s.begin():
        log_call(
            s,
            CallInput(task, agent, code, fields, True if code != "NO_ANSWER" else None, None, 120),
            DispositionSet.standard(),
            at=when,
        )


def test_agents_and_complaints(app: App, tmp_path: Path) -> None:
    t1, t2, t3, t4 = _world(app)
    _log(app, t1, "ana", "CONVERTED", MON + timedelta(minutes=5), action="renewed")
    _log(app, t2, "ana", "COMPLAINT", MON + timedelta(minutes=20), category="billing",
         summary="charged twice")  # fmt: skip
    _log(app, t3, "ben", "COMPLAINT", MON + timedelta(minutes=30), category="service",
         summary="rude letter")  # fmt: skip
    _log(app, t4, "ana", "NO_ANSWER", MON + timedelta(minutes=40))
    at = MON + timedelta(hours=2)

    with app.sessions() as s:
        report = agents_report(
            s, at=at, settings=app.settings, period=parse_period("2026-03", at=at)
        )
        reference = agent_performance(s, start=report.start, end=report.end, at=at)
        complaints = complaints_report(
            s, at=at, settings=app.settings, period=parse_period("2026-03", at=at), by="day"
        )
        conversion = s.scalars(select(Conversion)).one()

    # The report shows CALLS's figures as they are.
    assert report.agents == reference
    ana, ben = report.agents
    assert (ana.agent, ana.calls, ana.contacts, ana.conversions) == ("ana", 3, 2, 1)
    assert (ben.agent, ben.calls, ben.contacts, ben.conversions) == ("ben", 1, 1, 0)
    table = report.tables()[0]
    assert [row[:5] for row in table.rows] == [
        ("ana", 3, 2, "66.7%", 1),
        ("ben", 1, 1, "100.0%", 0),
    ]
    plans = {p.agent: {f.period: (f.calls, f.target) for f in p.figures} for p in report.plans}
    assert plans["ana"]["day"] == (3, 10) and plans["ben"]["day"] == (1, 5)
    # March 2026 has 22 weekdays.
    assert plans["ana"]["month"] == (3, 220)

    table = complaints.tables()[0]
    assert list(table.columns) == ["day", "billing", "service", "all"]
    assert list(table.rows) == [("2026-03-02", 1, 1, 2), ("total", 1, 1, 2)]

    # The CONVERTED call made a conversion whose source is the call, attributed to ana.
    assert conversion.source == "call" and conversion.event_type == "renewal"
    assert conversion.last_touch is not None and conversion.last_touch["agent"] == "ana"
    assert conversion.last_touch["channel"] == "call"

    html = tmp_path / "agents.html"
    for command, extra in (("agents", ["--html", str(html)]), ("complaints", ["--by", "month"])):
        result = CliRunner().invoke(
            cli,
            ["--database-url", app.settings.database_url, "report", command, "--period",
             "2026-03", "--json", *extra],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        if command == "agents":
            assert [a["agent"] for a in data["agents"]] == ["ana", "ben"]
        else:
            assert {c["category"]: c["count"] for c in data["counts"]} == {
                "billing": 1,
                "service": 1,
            }
    page = html.read_text("utf-8")
    # comparison, rates, escalation rate against its ceiling line
    assert page.count("<svg") == 3 and 'data-series="conversions"' in page
    assert '<line class="marker" data-value="0.2"' in page

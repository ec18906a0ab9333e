"""The agent and complaint figures, checked against hand-computed expectations."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from calls_helpers import campaign_source, make_run, make_world, unit
from click.testing import CliRunner

from cli import cli
from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.reporting import (
    agent_performance,
    calling_plan,
    campaign_calling_plans,
    complaints_by_category,
)
from engine.reports.agents import agents_report
from engine.reports.common import parse_period

D = DispositionSet.standard()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def log(app: App, task: int, agent: str, code: str, when: datetime, seconds: int, **kw) -> int:  # type: ignore[no-untyped-def]
    with unit(app) as s:
        result = log_call(
            s,
            CallInput(task, agent, code, kw.get("fields", {}), kw.get("verified"), None, seconds),
            D,
            at=when,
        )
    return result.created_task_id or result.task_id


def test_agent_performance_by_hand(app: App) -> None:
    w = make_world(app)
    w.agent("ana", daily_target=10)
    w.agent("ben")
    t1, t2, t3, t4, t5 = (w.task(w.member()) for _ in range(5))
    # Monday 2 March 2026, New York is UTC-5.
    log(app, t1, "ana", "NO_ANSWER", at(2, 15), 30)
    log(app, t1, "ana", "NO_ANSWER", at(2, 17), 30)  # 2 business hours later: on time
    log(
        app, t2, "ana", "CONVERTED", at(2, 15, 30), 300, fields={"action": "renewed"}, verified=True
    )
    cb = log(
        app,
        t3,
        "ana",
        "CALLBACK",
        at(2, 16),
        120,
        fields={"callback_at": "2026-03-02T20:00:00+00:00"},
        verified=True,
    )
    log(
        app, cb, "ben", "NOT_INTERESTED", at(2, 20, 10), 90, fields={"reason": "no"}, verified=True
    )  # 10 minutes after the promised time: kept (15-minute grace)
    log(
        app,
        t4,
        "ana",
        "ESCALATED",
        at(2, 16, 30),
        200,
        fields={"team": "escalations", "reason": "dispute"},
        verified=False,
    )
    log(app, t5, "ana", "VERIFICATION_FAILED", at(2, 16, 45), 60)

    with app.sessions() as s:
        rows = {
            r.agent: r for r in agent_performance(s, start=at(2, 0), end=at(4, 0), at=at(3, 22))
        }
    ana = rows["ana"]
    assert (ana.calls, ana.contacts, ana.conversions) == (6, 4, 1)
    assert ana.contact_rate == pytest.approx(4 / 6, abs=1e-4)
    assert ana.conversions_per_contact == 0.25
    assert ana.average_handle_seconds == pytest.approx(740 / 6, abs=0.1)
    assert (ana.verified, ana.verification_asked, ana.verification_rate) == (2, 4, 0.5)
    assert (ana.callbacks_due, ana.callbacks_kept) == (1, 1)
    # Recycled attempts: t1 #1 (retried after 2 business hours: on time), t1 #2 and t5 (no
    # retry by Tuesday 17:00 New York, 13 business hours later: breaches).
    assert (ana.follow_ups_due, ana.follow_ups_on_time, ana.follow_ups_pending) == (3, 1, 0)
    assert ana.follow_up_compliance == pytest.approx(1 / 3, abs=1e-4)
    assert (ana.escalations, ana.escalation_rate, ana.over_escalation_ceiling) == (1, 0.25, True)
    assert ana.by_disposition["NO_ANSWER"] == 2
    ben = rows["ben"]
    assert (ben.calls, ben.contacts, ben.escalation_rate, ben.over_escalation_ceiling) == (
        1,
        1,
        0.0,
        False,
    )

    # As of Monday 17:30 New York, t1's second attempt and t5 are 5 business hours old, inside
    # their 8: pending, neither kept nor breached; only t1's first attempt counts.
    with app.sessions() as s:
        early = agent_performance(s, start=at(2, 0), end=at(4, 0), at=at(2, 22, 30), agent="ana")
    assert (early[0].follow_ups_due, early[0].follow_ups_pending) == (1, 2)
    assert early[0].follow_up_compliance == 1.0

    with app.sessions() as s:
        plan = calling_plan(s, "ana", day=date(2026, 3, 2))
    figures = {f.period: (f.calls, f.target) for f in plan.figures}
    # March 2026 has 22 weekdays; the week of 2 March has 5.
    assert figures == {"day": (6, 10), "week": (6, 50), "month": (6, 220)}
    assert plan.by_campaign == {"renew-calls": 6}


def test_complaints_by_category_over_time(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    for day, category in [(2, "billing"), (3, "points"), (4, "billing"), (10, "billing")]:
        task = w.task(w.member())
        log(
            app,
            task,
            "ana",
            "COMPLAINT",
            at(day, 15),
            60,
            fields={"category": category, "summary": "x"},
            verified=True,
        )
    other = w.task(w.member())
    log(app, other, "ana", "NOT_INTERESTED", at(3, 15), 60, fields={"reason": "no"}, verified=True)
    with app.sessions() as s:
        weekly = complaints_by_category(
            s, start=at(1, 0), end=at(31, 0), by="week", zone="America/New_York"
        )
        daily = complaints_by_category(s, start=at(1, 0), end=at(5, 0), by="day")
    assert [(c.period, c.category, c.count) for c in weekly] == [
        (date(2026, 3, 2), "billing", 2),
        (date(2026, 3, 2), "points", 1),
        (date(2026, 3, 9), "billing", 1),
    ]
    assert [(c.period.day, c.category) for c in daily] == [
        (2, "billing"),
        (3, "points"),
        (4, "billing"),
    ]


def test_a_campaigns_own_standard_decides_breaches_and_its_plan_is_tracked(app: App) -> None:
    w = make_world(
        app,
        follow_up={"within": "1h", "min_attempts": 2},
        calling_plan={"daily": 4, "weekly": 10},
    )
    w.agent("ana")
    t1, t2, t3 = (w.task(w.member()) for _ in range(3))
    log(app, t1, "ana", "NO_ANSWER", at(2, 15), 30)  # Monday 10:00 New York
    log(app, t1, "ana", "NO_ANSWER", at(2, 17), 30)  # 2 business hours later: over 1h
    log(app, t2, "ana", "NO_ANSWER", at(2, 15, 30), 30)
    log(app, t2, "ana", "BUSY", at(2, 16), 30)  # 30 minutes later: on time
    log(app, t3, "ana", "NOT_INTERESTED", at(3, 15), 30, fields={"reason": "no"}, verified=True)
    other_run = make_run(app, w.program_id, campaign_source("other-calls"))
    other = w.task(w.member(), run_id=other_run)
    log(app, other, "ana", "BUSY", at(2, 15, 45), 30)  # another campaign, the default 8h

    with app.sessions() as s:
        (ana,) = agent_performance(s, start=at(2, 0), end=at(3, 0), at=at(2, 18))
    # Monday 13:00 New York: t1 #1 breached (2h > 1h); t2 #1 on time; t2 #2 (BUSY at 11:00)
    # breached; t1 #2 is 1 business hour old: pending; the other campaign's BUSY is inside its 8h.
    assert (ana.follow_ups_due, ana.follow_ups_on_time, ana.follow_ups_breached) == (3, 1, 2)
    assert ana.follow_ups_pending == 2

    with app.sessions() as s:
        plans = campaign_calling_plans(s, day=date(2026, 3, 2))
    # Only the campaign with a calling_plan; Monday's 4 calls of renew-calls (not the other
    # campaign's), the week's 5; no monthly target, so no monthly figure.
    assert [(p.campaign, [(f.period, f.calls, f.target) for f in p.figures]) for p in plans] == [
        ("renew-calls", [("day", 4, 4), ("week", 5, 10)])
    ]
    assert plans[0].figures[0].attainment == 1.0

    # `campaign report agents` shows both: the breaches per agent, the campaign's plan.
    with app.sessions() as s:
        report = agents_report(
            s, at=at(2, 18), settings=app.settings, period=parse_period("2026-03-02", at=at(2, 18))
        )
    agents_table, _, campaign_table, *_ = report.tables()  # then at risk, languages, pauses, idle
    row = dict(zip(agents_table.columns, agents_table.rows[0], strict=True))
    assert (row["follow-ups on time"], row["follow-up breaches"]) == ("1/3 (+2 pending)", 2)
    assert [r[:5] for r in campaign_table.rows] == [
        ("renew-calls", "day", "2026-03-02..2026-03-02", 4, 4),
        ("renew-calls", "week", "2026-03-02..2026-03-08", 5, 10),
    ]


def test_explicit_weekly_and_monthly_targets_replace_the_derived_ones(app: App) -> None:
    """A part-time agent's own weekly / monthly quota is the plan; an agent without one keeps
    the daily target times the business days, and the report says which is which."""
    w = make_world(app)
    w.agent("ana", daily_target=10, weekly_target=30, monthly_target=100)
    w.agent("ben", daily_target=5)
    for who, count in (("ana", 3), ("ben", 1)):
        for i in range(count):
            log(app, w.task(w.member()), who, "NO_ANSWER", at(2, 15, i), 30)

    # The CLI reads the wall clock; the period (a past day) fixes the plan's day: 2 March.
    day = "2026-03-02"
    with app.sessions() as s:
        report = agents_report(
            s, at=at(3, 0), settings=app.settings, period=parse_period(day, at=at(3, 0))
        )
    expected = {
        "ana": [("day", 3, 10, "set"), ("week", 3, 30, "set"), ("month", 3, 100, "set")],
        "ben": [
            ("day", 1, 5, "set"),
            ("week", 1, 25, "daily × 5 business days"),
            ("month", 1, 110, "daily × 22 business days"),  # March 2026: 22 weekdays
        ],
    }
    assert {
        p.agent: [(f.period, f.calls, f.target, f.target_source) for f in p.figures]
        for p in report.plans
    } == expected
    ana = next(p for p in report.plans if p.agent == "ana")
    assert (ana.weekly_target, ana.monthly_target) == (30, 100)
    assert next(f for f in ana.figures if f.period == "week").attainment == 0.1

    def report_cli(*extra: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["--database-url", app.settings.database_url, "report", "agents",
             "--period", day, *extra],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.output

    data = json.loads(report_cli("--json"))
    assert {
        p["agent"]: [
            (f["period"], f["calls"], f["target"], f["target_source"]) for f in p["figures"]
        ]
        for p in data["plans"]
    } == expected
    assert [(p["weekly_target"], p["monthly_target"]) for p in data["plans"]] == [
        (30, 100),
        (None, None),
    ]

    lines = report_cli().splitlines()
    header = next(line for line in lines if line.startswith("agent") and "target from" in line)
    assert header.split() == ["agent", "plan", "dates", "calls", "target", "target", "from",
                              "attainment"]  # fmt: skip
    assert any(line.split()[:6] == ["ana", "week", "2026-03-02..2026-03-08", "3", "30", "set"]
               for line in lines)  # fmt: skip
    assert any(
        line.split()[:5] == ["ben", "month", "2026-03-01..2026-03-31", "1", "110"]
        and "daily × 22 business days" in line
        for line in lines
    )

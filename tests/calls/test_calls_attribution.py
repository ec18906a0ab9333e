"""Attribution of calls (#15): a callback or recycled attempt is a touch of the step it came
from, an escalated task converted by another agent is that agent's touch at that call, and
the last-touch table adds up to the conversions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import func, select, update

from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.db.models import CallTask, CampaignRun, Conversion, Enrollment
from engine.reports.campaign import campaign_report

DISPOSITIONS = DispositionSet.standard()


def log(app: App, task: int, agent: str, code: str, at: Any, **fields: str) -> Any:
    with unit(app) as s:
        return log_call(
            s,
            CallInput(task, agent, code, fields, None if code == "NO_ANSWER" else True),
            DISPOSITIONS,
            at=at,
        )


def report(app: App) -> Any:
    """The campaign report (the test runs' enrolled counts set from their enrollments)."""
    with unit(app) as s:
        s.execute(
            update(CampaignRun).values(
                enrolled_count=select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.run_id == CampaignRun.id)
                .scalar_subquery()
            )
        )
    with app.sessions() as s:
        return campaign_report(s, "renew-calls")


def conversion(app: App) -> Conversion:
    with app.sessions() as s:
        return s.scalars(select(Conversion)).one()


def test_a_callback_converted_is_a_touch_of_the_step_it_came_from(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())
    result = log(app, task, "ana", "CALLBACK", TEST_NOW, callback_at="2026-03-03T14:00:00-05:00")
    callback = result.created_task_id
    with app.sessions() as s:
        row = s.get(CallTask, callback)
        assert row is not None and row.step_id is None and row.source_step_id == "call-1"
    log(app, callback, "ana", "CONVERTED", TEST_NOW + timedelta(days=1), action="renewed")

    touch = conversion(app).last_touch
    assert touch is not None
    assert (touch["channel"], touch["step"], touch["agent"]) == ("call", "call-1", "ana")
    assert touch["call_task_id"] == callback
    found = report(app)
    rows = {(t.channel, t.step): t.conversions for t in found.last_touch}
    assert rows == {("call", "call-1"): 1}  # never a step of None
    assert found.last_touch_conversions("call", "call-1") == 1


def test_a_recycled_attempt_that_converts_is_the_steps_touch(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())
    log(app, task, "ana", "NO_ANSWER", TEST_NOW)
    log(app, task, "ana", "CONVERTED", TEST_NOW + timedelta(hours=3), action="renewed")
    touch = conversion(app).last_touch
    assert touch is not None and (touch["step"], touch["agent"]) == ("call-1", "ana")


def test_an_escalated_task_converted_by_another_agent_is_their_touch_at_that_call(
    app: App,
) -> None:
    w = make_world(app)
    w.agent("ana")
    w.agent("esc", teams=("escalations",))
    task = w.task(w.member())
    escalated_at = TEST_NOW
    converted_at = TEST_NOW + timedelta(hours=2)
    log(app, task, "ana", "ESCALATED", escalated_at, team="escalations", reason="billing")
    log(app, task, "esc", "CONVERTED", converted_at, action="renewed")

    c = conversion(app)
    assert c.last_touch is not None and c.first_touch is not None
    assert (c.last_touch["agent"], c.last_touch["at"][:16]) == (
        "esc",
        converted_at.isoformat()[:16],
    )
    # The first touch stays ana's escalation call, at its own time.
    assert (c.first_touch["agent"], c.first_touch["at"][:16]) == (
        "ana",
        escalated_at.isoformat()[:16],
    )


def test_the_last_touch_table_has_a_no_touch_row_and_adds_up(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    called = w.task(w.member())
    log(app, called, "ana", "CONVERTED", TEST_NOW, action="renewed")
    # A member never reached (one unanswered call) who renewed on their own.
    quiet = w.task(w.member())
    log(app, quiet, "ana", "NO_ANSWER", TEST_NOW)
    with unit(app) as s:
        from engine.conversions import match_conversions
        from engine.db.models import ActivityEvent

        row = s.get(CallTask, quiet)
        assert row is not None
        s.add(
            ActivityEvent(
                program_id=w.program_id,
                participant_id=row.participant_id,
                type="renewal",
                occurred_at=TEST_NOW + timedelta(hours=1),
                reference="web-1",
                source="import",
                created_at=TEST_NOW + timedelta(hours=1),
            )
        )
        s.flush()
        match_conversions(s, at=TEST_NOW + timedelta(hours=1), participant_ids=[row.participant_id])
    found = report(app)
    with app.sessions() as s:
        total = len(s.scalars(select(Conversion)).all())
    rows = {(t.channel, t.step): t.conversions for t in found.last_touch}
    assert rows == {("call", "call-1"): 1, ("none", "no touch"): 1}
    assert sum(rows.values()) == total == 2
    table = next(t for t in found.tables() if t.title == "Conversions by last touch")
    assert ("none", "no touch", 1) in [tuple(r) for r in table.rows]

"""A case through its life on both databases: opened by a complaint call, followed by two
agents across three contacts with a breach of the follow-up standard, joined by a second
complaint, resolved with a root cause from the program's list, closed and reopened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cases_helpers import TEST_NOW, call, claim, make_world, task_row, unit

from engine.app import App
from engine.calls.scripts import call_sheet
from engine.cases import commands
from engine.cases.views import list_cases, show_case
from engine.db.models import CallTask, Case, Participant
from engine.errors import InputError

# TEST_NOW is Monday 2 March 2026, 10:00 in New York (the program's zone).
MON_10 = TEST_NOW
TUE_15 = datetime(2026, 3, 3, 20, 0, tzinfo=UTC)
WED_10 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


def test_a_case_across_three_contacts_by_two_agents_with_a_breach(app: App) -> None:
    world = make_world(app)
    member = world.member()
    first = world.task(member)
    world.agent("ann")
    world.agent("ben")

    # 1. Ann's campaign call: the member complains. A case opens, Ann owns it, due in the
    #    billing service level (2 business days: Wednesday 10:00), first follow-up in 4
    #    business hours.
    assert claim(app, "ann", MON_10) == first
    logged = call(app, first, "ann", "COMPLAINT", MON_10, category="billing",
                  summary="charged twice for renewal")  # fmt: skip
    assert logged.case_id is not None and logged.case_opened
    case_id = logged.case_id
    view = show_case_at(app, case_id, MON_10)
    assert (view.case.status, view.case.owner, view.case.category) == (
        "open",
        "agent ann",
        "billing",
    )
    assert view.case.due_at == WED_10
    follow_up = task_row(app, view.follow_up_task_id)
    assert (follow_up.kind, follow_up.assigned_agent, follow_up.case_id) == (
        "follow_up",
        "ann",
        case_id,
    )
    assert follow_up.due_at == MON_10 + timedelta(hours=4)
    assert view.history[0].kind == "opened" and view.history[0].disposition == "COMPLAINT"

    # Nobody calls back on Monday: on Tuesday afternoon the standard is breached (more than
    # 8 business hours without an attempt) and the case is listed with its breach.
    with unit(app) as s:
        assert [r.id for r in list_cases(s, at=TUE_15, breaches=True)] == [case_id]
        assert list_cases(s, at=TUE_15, overdue=True) == []
        # 2. Ann hands it to Ben.
        commands.assign_case(s, case_id, agent="ben", team=None, by="ann", at=TUE_15)
    assert task_row(app, follow_up.id).assigned_agent == "ben"

    # Ben is served the case's follow-up (Ann no longer is), with the case on his sheet.
    assert claim(app, "ann", TUE_15) is None
    assert claim(app, "ben", TUE_15) == follow_up.id
    with unit(app) as s:
        sheet = call_sheet(s, follow_up.id, settings=app.settings, at=TUE_15)
    assert sheet.case is not None and sheet.case.case.id == case_id
    assert [h.kind for h in sheet.case.history] == ["opened", "assigned"]

    # 3. Ben's first attempt: no answer. The task is retried within the standard.
    attempt = call(app, follow_up.id, "ben", "NO_ANSWER", TUE_15, verified=None)
    assert attempt.case_id == case_id and attempt.task_status == "open"

    # 4. Wednesday 10:00 Ben reaches the member, who complains again about the same bill:
    #    the complaint joins the case instead of opening a second one.
    assert claim(app, "ben", WED_10) == follow_up.id
    again = call(app, follow_up.id, "ben", "COMPLAINT", WED_10, category="billing",
                 summary="still charged twice")  # fmt: skip
    assert again.case_id == case_id and not again.case_opened
    with app.sessions() as s:
        assert s.query(Case).count() == 1

    # Resolved with a root cause from the list; one breach on record, no "too few attempts"
    # (two follow-up calls: the no-answer and the reached one).
    with unit(app) as s, pytest.raises(InputError, match="not on the program's list"):
        commands.resolve_case(s, app.settings, case_id, root_cause="gremlins",
                              resolution="refunded", by="ben", at=WED_10)  # fmt: skip
    with unit(app) as s:
        view = commands.resolve_case(
            s, app.settings, case_id, root_cause="billing_error",
            resolution="refunded the second charge", by="ben", at=WED_10 + timedelta(minutes=30),
        )  # fmt: skip
    assert view.case.status == "resolved" and view.case.root_cause == "billing_error"
    assert [h.kind for h in view.history] == [
        "opened", "assigned", "call", "call", "resolved"
    ]  # fmt: skip
    assert [h.by for h in view.history] == ["ann", "ann", "ben", "ben", "ben"]
    assert [h.disposition for h in view.history if h.kind == "call"] == [
        "NO_ANSWER", "COMPLAINT"
    ]  # fmt: skip
    assert len(view.breaches) == 1 and "2026-03-02 15:00Z" in view.breaches[0]
    assert view.follow_up_task_id is None
    with app.sessions() as s:
        open_tasks = s.query(CallTask).filter(
            CallTask.case_id == case_id, CallTask.status.in_(("open", "claimed"))
        )
        assert open_tasks.count() == 0


def show_case_at(app: App, case_id: int, at: datetime):  # type: ignore[no-untyped-def]
    with app.sessions() as s:
        return show_case(s, case_id, at=at)


def test_close_needs_a_resolution_and_reopen_puts_it_back_on_a_list(app: App) -> None:
    world = make_world(app)
    member = world.member()
    world.agent("ann")
    with app.sessions() as s:
        found = s.get(Participant, member)
        assert found is not None
        external_id = found.external_id
    with unit(app) as s:
        view, joined = commands.open_by_hand(
            s, app.settings, external_id, category="points", summary="points missing",
            by="ann", at=MON_10,
        )  # fmt: skip
    assert not joined and view.case.owner == "agent ann" and view.follow_up_task_id
    case_id = view.case.id
    with unit(app) as s, pytest.raises(InputError, match="only a resolved case is closed"):
        commands.close_case(s, case_id, by="ann", at=MON_10)
    with unit(app) as s:
        commands.note_case(s, case_id, "asked for the receipt", by="ann", at=MON_10,
                           waiting_on="member")  # fmt: skip
    assert show_case_at(app, case_id, MON_10).follow_up_task_id is None
    with unit(app) as s:
        commands.resolve_case(s, app.settings, case_id, root_cause="points_not_credited",
                              resolution="credited", by="ann", at=MON_10)  # fmt: skip
        commands.close_case(s, case_id, by="ann", at=MON_10)
        view = commands.reopen_case(s, app.settings, case_id, by="ann", at=TUE_15,
                                    reason="points gone again")  # fmt: skip
    assert view.case.status == "waiting_on_us" and view.reopened == 1
    assert view.follow_up_task_id is not None
    assert view.case.due_at == datetime(2026, 3, 5, 20, 0, tzinfo=UTC)  # Thu 15:00 NY
    # Overdue once past due, and listed so.
    with app.sessions() as s:
        late = list_cases(s, at=datetime(2026, 3, 6, 14, 0, tzinfo=UTC), overdue=True)
    assert [r.id for r in late] == [case_id]

"""An agent who leaves takes no case with them: disabling them hands the cases they were working
to a team (their follow-up calls with them), or is refused with nothing changed when a case has
no team to go to."""

from __future__ import annotations

import pytest
from cases_helpers import TEST_NOW, call, claim, make_world, task_row, unit

from engine.app import App
from engine.calls.agents import disable_agent
from engine.cases.views import list_cases, show_case
from engine.db.models import Agent
from engine.errors import InputError


def test_disabling_an_agent_hands_their_cases_to_their_team(app: App) -> None:
    world = make_world(app)
    member = world.member()
    world.agent("ann", teams=("renewals",))
    world.agent("ben", teams=("renewals",))
    task = world.task(member)
    assert claim(app, "ann", TEST_NOW) == task
    logged = call(app, task, "ann", "COMPLAINT", TEST_NOW, category="billing", summary="twice")
    assert logged.case_id is not None
    with unit(app) as s:
        view = show_case(s, logged.case_id, at=TEST_NOW)
    follow_up = view.follow_up_task_id
    assert view.case.owner == "agent ann" and task_row(app, follow_up).assigned_agent == "ann"

    with unit(app) as s:
        change = disable_agent(s, "ann", at=TEST_NOW)
    assert change.cases_to_team == 1
    with unit(app) as s:
        view = show_case(s, logged.case_id, at=TEST_NOW)
        assert view.case.owner == "team renewals"
        assert view.history[-1].kind == "assigned" and view.history[-1].by == "system"
        # Nobody's list lost it: the follow-up is the team's now, and ben is served it.
        assert [c.id for c in list_cases(s, at=TEST_NOW, owner="ann")] == []
    row = task_row(app, follow_up)
    assert (row.assigned_agent, row.team) == (None, "renewals")
    assert claim(app, "ben", row.due_at) == follow_up


def test_an_agent_whose_case_has_no_team_is_not_disabled(app: App) -> None:
    world = make_world(app)
    member = world.member()
    world.agent("solo", teams=())
    task = world.task(member, team=None)
    assert claim(app, "solo", TEST_NOW) == task
    logged = call(app, task, "solo", "COMPLAINT", TEST_NOW, category="billing", summary="x")
    assert logged.case_id is not None
    # The command's transaction ends with the error: rolled back.
    with pytest.raises(InputError, match=r"works case\(s\) \d+ and has no team"), unit(app) as s:
        disable_agent(s, "solo", at=TEST_NOW)
    with unit(app) as s:
        agent = s.query(Agent).filter_by(login="solo").one()
        assert agent.active  # nothing changed
        assert show_case(s, logged.case_id, at=TEST_NOW).case.owner == "agent solo"

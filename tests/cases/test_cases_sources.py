"""Cases opened by an escalation and by an inbound SMS, and driven through the CLI (both
databases)."""

from __future__ import annotations

import json
from datetime import timedelta

from cases_helpers import TEST_NOW, call, claim, make_world, task_row, unit
from click.testing import CliRunner

from cli import CliState, cli
from engine.app import App
from engine.cases.views import show_case
from engine.clock import FrozenClock
from engine.db.models import Participant
from engine.webhooks.inbound_sms import handle_inbound


def test_an_escalation_opens_a_case_for_the_team_whose_list_has_the_task(app: App) -> None:
    world = make_world(app)
    member = world.member()
    task = world.task(member)
    world.agent("ann")
    world.agent("eve", teams=("escalations",))
    assert claim(app, "ann", TEST_NOW) == task
    logged = call(app, task, "ann", "ESCALATED", TEST_NOW, team="escalations",
                  reason="wants a manager")  # fmt: skip
    assert logged.case_opened and logged.case_id is not None
    assert task_row(app, task).case_id == logged.case_id  # the escalated task is the follow-up
    with app.sessions() as s:
        view = show_case(s, logged.case_id, at=TEST_NOW)
    assert (view.case.category, view.case.owner) == ("escalation", "team escalations")
    assert view.follow_up_task_id == task
    assert claim(app, "eve", TEST_NOW + timedelta(minutes=1)) == task


def test_a_texted_help_opens_a_case_and_a_later_reply_joins_it(app: App) -> None:
    world = make_world(app)
    member = world.member(phone="+12025550188")
    with unit(app) as s:
        helped = handle_inbound(s, {"MessageSid": "SM1", "From": "+12025550188", "Body": "HELP"},
                                at=TEST_NOW)  # fmt: skip
    assert helped.kind == "help" and helped.reply  # the help text is still the answer
    assert helped.follow_up_task_id is not None
    case_id = task_row(app, helped.follow_up_task_id).case_id
    assert case_id is not None
    with unit(app) as s:
        replied = handle_inbound(
            s, {"MessageSid": "SM2", "From": "+12025550188", "Body": "my card was charged"},
            at=TEST_NOW + timedelta(minutes=3),
        )  # fmt: skip
    assert replied.follow_up_task_id == helped.follow_up_task_id  # no second task
    with app.sessions() as s:
        view = show_case(s, case_id, at=TEST_NOW)
        assert s.get(Participant, member) is not None
    assert (view.case.category, view.source) == ("help", "sms")
    assert [(h.kind, h.by, h.text) for h in view.history] == [
        ("opened", "member", "texted HELP"),
        ("message", "member", "my card was charged"),
    ]


def run(app: App, *args: str) -> object:
    return CliRunner().invoke(
        cli,
        list(args),
        obj=CliState(
            overrides={"database_url": app.settings.database_url}, clock=FrozenClock(TEST_NOW)
        ),
    )


def test_cases_commands(app: App) -> None:
    world = make_world(app)
    member = world.member()
    world.agent("ann")
    with app.sessions() as s:
        found = s.get(Participant, member)
        assert found is not None
        external_id = found.external_id
    opened = run(app, "cases", "open", external_id, "--category", "billing", "--summary",
                 "double charge", "--by", "ann", "--json")  # fmt: skip
    assert opened.exit_code == 0, opened.output  # type: ignore[attr-defined]
    case_id = json.loads(opened.output)["case"]["id"]  # type: ignore[attr-defined]
    bad = run(app, "cases", "resolve", str(case_id), "--root-cause", "bad_luck",
              "--resolution", "x", "--by", "ann")  # fmt: skip
    assert bad.exit_code == 1  # type: ignore[attr-defined]
    assert "not on the program's list" in bad.output  # type: ignore[attr-defined]
    assert "Traceback" not in bad.output  # type: ignore[attr-defined]
    unknown = run(app, "cases", "open", external_id, "--category", "weather", "--summary", "x",
                  "--by", "ann")  # fmt: skip
    assert "unknown case category 'weather'" in unknown.output  # type: ignore[attr-defined]
    listed = run(app, "cases", "list", "--owner", "ann")
    assert f"{case_id}" in listed.output and "double charge" in listed.output  # type: ignore[attr-defined]
    noted = run(app, "cases", "note", str(case_id), "called the bank", "--by", "ann")
    assert noted.exit_code == 0 and "called the bank" in noted.output  # type: ignore[attr-defined]
    done = run(app, "cases", "resolve", str(case_id), "--root-cause", "billing_error",
               "--resolution", "refunded", "--by", "ann")  # fmt: skip
    assert done.exit_code == 0 and "root cause: billing_error" in done.output  # type: ignore[attr-defined]
    closed = run(app, "cases", "close", str(case_id), "--by", "ann", "--json")
    assert json.loads(closed.output)["case"]["status"] == "closed"  # type: ignore[attr-defined]
    assert run(app, "cases", "list", "--json").output.strip() == "[]"  # type: ignore[attr-defined]
    shown = run(app, "cases", "show", str(case_id))
    assert "history" in shown.output.lower() and "closed" in shown.output  # type: ignore[attr-defined]


def test_erasure_empties_the_members_words_from_their_cases(app: App) -> None:
    from engine.participants.erasure import erase_participant

    world = make_world(app)
    member = world.member()
    world.agent("ann")
    with app.sessions() as s:
        found = s.get(Participant, member)
        assert found is not None
        external_id = found.external_id
    opened = run(app, "cases", "open", external_id, "--category", "billing", "--summary",
                 "Alex says the bank is Acme", "--by", "ann", "--json")  # fmt: skip
    case_id = json.loads(opened.output)["case"]["id"]  # type: ignore[attr-defined]
    with unit(app) as s:
        receipt = erase_participant(s, None, external_id, at=TEST_NOW)
    assert receipt.removed["case texts emptied"] == 2  # the summary and the opening entry
    with app.sessions() as s:
        view = show_case(s, case_id, at=TEST_NOW)
    assert view.case.summary is None and view.case.category == "billing"
    assert all(h.text is None for h in view.history)

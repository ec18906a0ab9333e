"""The agent's page over HTTP: pause and resume (served no call while paused; next call and
sign-out end a pause; the wallboard shows it), the account shown only after the agent records
a verified identity (attempts to get round it: without verifying, with another agent's task
id, after the claim changed hands), and the calling plan. Both databases."""

from __future__ import annotations

import re
from datetime import timedelta

from click.testing import CliRunner
from console_helpers import (
    Browser,
    add_console_user,
    audit_count,
    error_text,
    make_world,
    task_row,
    unit,
)
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.clock import FrozenClock
from engine.db.models import AgentPause, Program
from engine.programs import set_shown_before_verification
from engine.web import audit

# On the member's account (make_participant's defaults and the world's member): shown only
# after verification unless the program says otherwise.
SECRET_BALANCE = "123456"


def _world(app: App) -> tuple[int, int]:
    world = make_world(app)
    world.agent("ana", timezone="America/Chicago", daily_target=40)
    world.agent("ben")
    first = world.task(world.member(first_name="Ada", points_balance=int(SECRET_BALANCE)))
    second = world.task(world.member(first_name="Bo", points_balance=100))
    for login in ("ana", "ben"):
        add_console_user(app, login)
    add_console_user(app, "sam", role="supervisor")
    return first, second


def _shows_balance(html: str) -> bool:
    return SECRET_BALANCE in html.replace(",", "")  # rendered "123,456"


def _pauses(app: App) -> list[tuple[str, str, str | None]]:
    with app.sessions() as s:
        return [
            (p.agent, p.code, p.end_reason)
            for p in s.scalars(select(AgentPause).order_by(AgentPause.id))
        ]


def _floor_state(page_text: str, login: str) -> str:
    row = re.search(rf'<tr data-agent="{login}"><td>[^<]*</td><td>([^<]*)</td>', page_text)
    assert row, page_text
    return row.group(1)


def test_pause_resume_and_the_wallboard(app: App, clock: FrozenClock) -> None:
    first, _ = _world(app)
    ana, sam = Browser(app), Browser(app)
    page = ana.sign_in("ana")
    assert 'id="pause-form"' in page.text and 'id="next"' in page.text
    paused = ana.post("/agent/pause", {"code": "break"})
    assert paused.status_code == 200
    # 15:00 UTC is 09:00 in Chicago, the agent's zone.
    assert "Paused: <strong>break</strong> since" in paused.text and ">09:00<" in paused.text
    assert 'id="resume"' in paused.text and 'id="next"' not in paused.text
    sam.sign_in("sam")
    assert _floor_state(sam.get("/floor").text, "ana") == "paused (break) since 15:00 UTC"

    refused = ana.post("/agent/pause", {"code": "meeting"})
    assert refused.status_code == 409 and "already paused" in (error_text(refused.text) or "")
    clock.advance(timedelta(minutes=12))
    back = ana.post("/agent/resume", {})
    assert 'id="next"' in back.text and "Paused:" not in back.text
    assert _floor_state(sam.get("/floor").text, "ana") == "signed in, idle since 15:12 UTC"

    # Next call ends a pause; no pause while holding the call.
    ana.post("/agent/pause", {"code": "training"})
    sheet = ana.post("/agent/next", {})
    assert f'name="task_id" value="{first}"' in sheet.text
    refused = ana.post("/agent/pause", {"code": "break"})
    assert refused.status_code == 409 and f"holds task {first}" in (error_text(refused.text) or "")
    ana.post("/agent/release", {"task_id": str(first)})
    # Signing out ends a pause; an unknown code is refused and records nothing.
    bad = ana.post("/agent/pause", {"code": "nap"})
    assert bad.status_code == 409 and "unknown pause code" in (error_text(bad.text) or "")
    ana.post("/agent/pause", {"code": "meeting"})
    ana.post("/logout", {})
    assert _pauses(app) == [
        ("ana", "break", "resumed"),
        ("ana", "training", "next call"),
        ("ana", "meeting", "signed out"),
    ]
    # Another agent's pause cannot be ended by a form naming them: the agent is the session.
    ben = Browser(app)
    ben.sign_in("ben")
    ben.post("/agent/pause", {"code": "break", "agent": "ana"})
    assert _pauses(app)[-1] == ("ben", "break", None)


def test_the_account_is_shown_only_after_verification(app: App, clock: FrozenClock) -> None:
    first, second = _world(app)
    ana, ben = Browser(app), Browser(app)
    ana.sign_in("ana")
    sheet = ana.post("/agent/next", {}).text
    assert "Ada" in sheet and "Your member number?" in sheet  # questions always shown
    assert not _shows_balance(sheet)  # neither the account review nor the script
    assert "<dt>points balance</dt>" not in sheet
    assert 'id="contacts"' not in sheet and 'id="gated"' in sheet
    assert "<dt>tier</dt>" in sheet  # the default list shows the tier
    assert 'id="verify"' in sheet

    # Another agent posts ana's task id: refused, nothing recorded, nothing shown.
    ben.sign_in("ben")
    refused = ben.post("/agent/verify", {"task_id": str(first)})
    assert refused.status_code == 403 and "not yours" in (error_text(refused.text) or "")
    assert not _shows_balance(refused.text)
    assert task_row(app, first).verified_at is None
    assert audit_count(app, audit.IDENTITY_VERIFIED, "ben") == 0
    # Nor does a form or a query string open the account without the verify action.
    assert not _shows_balance(ana.get(f"/agent?verified=1&task_id={first}").text)
    assert not _shows_balance(ana.post("/agent/verify", {"task_id": str(second)}).text)
    assert task_row(app, second).verified_at is None

    verified = ana.post("/agent/verify", {"task_id": str(first)})
    assert verified.status_code == 200
    assert _shows_balance(verified.text) and 'id="verified"' in verified.text
    assert 'id="contacts"' in verified.text and 'id="gated"' not in verified.text
    assert 'name="verified" value="yes" checked' in verified.text  # the log form follows
    assert task_row(app, first).verified_by == "ana"
    assert audit_count(app, audit.IDENTITY_VERIFIED, "ana") == 1

    # The verification belongs to ana's claim: after release, ben's claim starts gated.
    ana.post("/agent/release", {"task_id": str(first)})
    clock.advance(timedelta(minutes=1))
    ben_sheet = ben.post("/agent/next", {}).text
    assert f'name="task_id" value="{first}"' in ben_sheet
    assert not _shows_balance(ben_sheet) and 'id="verify"' in ben_sheet


def test_the_program_chooses_what_is_shown_before_verification(app: App) -> None:
    first, _ = _world(app)
    with unit(app) as s:
        set_shown_before_verification(s, "loyalty", "points_balance,contacts")
    ana = Browser(app)
    ana.sign_in("ana")
    sheet = ana.post("/agent/next", {}).text
    assert _shows_balance(sheet) and 'id="contacts"' in sheet
    assert "<dt>tier</dt>" not in sheet
    assert task_row(app, first).verified_at is None


def test_the_calling_plan_is_on_the_agents_page(app: App) -> None:
    first, _ = _world(app)
    with unit(app) as s:
        log_call(
            s,
            CallInput(first, "ana", "NO_ANSWER", {}, None, None),
            DispositionSet.standard(),
            at=app.clock.now(),
        )
    ana = Browser(app)
    page = ana.sign_in("ana").text
    plan = page[page.index('id="plan"') :]
    # Monday 2 March 2026: today 1 call of 40; the week's target is 40 x 5 business days.
    day = re.search(r'<tr data-period="day">(.*?)</tr>', plan)
    week = re.search(r'<tr data-period="week">(.*?)</tr>', plan)
    assert day and "<td>1</td><td>40</td><td>2%</td>" in day.group(1)
    assert week and "<td>200 <span" in week.group(1) and "2026-03-02 to 2026-03-08" in week.group(1)


def test_programs_set_shown_before_verification_from_the_cli(app: App) -> None:
    make_world(app)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
        return result.exit_code, result.output

    def stored() -> str | None:
        with app.sessions() as s:
            return s.scalar(select(Program.shown_before_verification))

    code, out = run("programs", "set", "loyalty", "--shown-before-verification", "tier,balance")
    assert code != 0 and "unknown account field(s) balance" in out and "Traceback" not in out
    assert stored() is None  # a refused change changes nothing
    code, out = run(
        "programs", "set", "loyalty", "--shown-before-verification", "Points-Balance, case"
    )
    assert code == 0 and "shown before verification:" in out and "points_balance" in out
    assert stored() == "points_balance,case"
    code, out = run("programs", "set", "loyalty", "--shown-before-verification", "default")
    assert code == 0 and "tier" in out and stored() is None

"""The wallboard's standards tiles over HTTP: each test makes the state (agents working calls
in their browser, cases, callbacks, tasks) and sees the supervisor's /floor change. Both
databases."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from console_helpers import TEST_NOW, Browser, add_console_user, error_text, make_world
from console_helpers import World as World

from engine.app import App
from engine.calls.agents import disable_agent
from engine.clock import FrozenClock
from engine.testing.fakes import unit


def _world(app: App) -> World:
    world = make_world(app)
    world.agent("ana")
    add_console_user(app, "ana")
    add_console_user(app, "sam", "supervisor")
    return world


def _floor(app: App) -> str:
    sam = Browser(app)
    page = sam.sign_in("sam")
    assert page.url.path == "/floor", page.text
    return str(page.text)


def _row(page: str, attribute: str, key: str) -> list[str] | None:
    """The cells of the row ``<tr data-ATTRIBUTE="KEY">``, as text; None when absent."""
    found = re.search(rf'<tr {attribute}="{re.escape(key)}"[^>]*>(.*?)</tr>', page, re.S)
    if found is None:
        return None
    cells = re.findall(r"<td>(.*?)</td>", found.group(1), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells]


def _count(page: str, element: str) -> int:
    found = re.search(rf'id="{element}">(\d+)<', page)
    assert found is not None, element
    return int(found.group(1))


def _status(page: str, element: str) -> str:
    found = re.search(rf'id="{element}">(.*?)</p>', page, re.S)
    assert found is not None, element
    return re.sub(r"<[^>]+>", "", found.group(1))


def _log(ana: Browser, task_id: int, disposition: str, **fields: str) -> None:
    ana.post("/agent/next", {})
    form = {"task_id": str(task_id), "disposition": disposition, "verified": "yes"}
    form.update({f"{disposition}.{k}": v for k, v in fields.items()})
    done = ana.post("/agent/log", form)
    assert 'id="logged"' in done.text, error_text(done.text)


def test_escalation_rate_per_team_against_the_ceiling(app: App) -> None:
    world = _world(app)
    first = world.task(world.member(points_balance=900))
    second = world.task(world.member(points_balance=100))
    page = _floor(app)
    assert _row(page, "data-escalation", "renewals|today") is None
    assert _status(page, "escalation-status").startswith("OK")

    ana = Browser(app)
    ana.sign_in("ana")
    _log(ana, first, "NOT_INTERESTED", reason="has enough points")
    page = _floor(app)
    assert _row(page, "data-escalation", "renewals|today") == [
        "renewals",
        "today",
        "0",
        "1",
        "0.0%",
        "ok",
    ]
    assert _status(page, "escalation-status").startswith("OK")

    _log(ana, second, "ESCALATED", team="escalations", reason="billing dispute")
    page = _floor(app)
    today = _row(page, "data-escalation", "renewals|today")
    week = _row(page, "data-escalation", "renewals|this week")
    assert today is not None and today[:5] == ["renewals", "today", "1", "2", "50.0%"]
    assert today[5] == "BREACH (not below 20%)"
    assert week is not None and week[2:5] == ["1", "2", "50.0%"]
    assert _row(page, "data-escalation", "all teams|today") is not None
    assert _status(page, "escalation-status").startswith("BREACH")
    assert 'class="tile breach"' in page


def test_a_case_waiting_on_us_past_the_follow_up_standard(app: App, clock: FrozenClock) -> None:
    world = _world(app)
    first = world.task(world.member())
    ana = Browser(app)
    ana.sign_in("ana")
    # An escalation opens a case owned by the escalations team: on us from now.
    _log(ana, first, "ESCALATED", team="escalations", reason="billing dispute")
    page = _floor(app)
    assert _count(page, "late-count") == 0 and _status(page, "late-status").startswith("OK")
    # Monday 10:00 New York + 8 business hours = Tuesday 10:00; still no attempt on Wednesday.
    clock.advance(timedelta(days=2))
    page = _floor(app)
    assert _count(page, "late-count") == 1
    assert _status(page, "late-status").startswith("BREACH")
    rows = re.findall(r'<tr data-case="(\d+)"', page)
    assert len(rows) == 1
    assert _row(page, "data-case", rows[0])[3] == "team escalations"  # type: ignore[index]


def test_callbacks_due_within_the_hour_with_no_agent_available(app: App) -> None:
    world = _world(app)
    world.agent("wes", teams=("winback",))
    add_console_user(app, "wes")
    soon = TEST_NOW + timedelta(minutes=30)
    mine = world.task(
        world.member(), kind="callback", assigned_agent="ana", due_at=soon, team="renewals"
    )
    teams = world.task(world.member(), kind="callback", due_at=soon, team="winback")
    world.task(
        world.member(), kind="callback", assigned_agent="ana", due_at=soon + timedelta(hours=1)
    )
    page = _floor(app)
    assert _count(page, "stranded-count") == 2
    assert _status(page, "stranded-status").startswith("ATTENTION")
    assert _row(page, "data-task", str(mine))[3] == "ana is signed out"  # type: ignore[index]
    assert _row(page, "data-task", str(teams))[3] == "nobody of team winback is signed in"  # type: ignore[index]

    ana, wes = Browser(app), Browser(app)
    ana.sign_in("ana")
    page = _floor(app)
    assert _count(page, "stranded-count") == 1 and _row(page, "data-task", str(mine)) is None
    wes.sign_in("wes")
    page = _floor(app)
    assert _count(page, "stranded-count") == 0 and _status(page, "stranded-status").startswith("OK")

    with unit(app) as s:
        disable_agent(s, "ana", at=app.clock.now())
    page = _floor(app)
    assert _count(page, "stranded-count") == 1
    assert _row(page, "data-task", str(mine))[3] == "ana is disabled"  # type: ignore[index]


def test_queue_depth_by_team_and_campaign(app: App) -> None:
    world = _world(app)
    for points in (300, 200, 100):
        world.task(world.member(points_balance=points))
    world.task(world.member(), team="winback")
    world.task(world.member(), due_at=TEST_NOW + timedelta(hours=3))  # not due yet
    page = _floor(app)
    assert _row(page, "data-queue", "renewals|renew-calls") == ["renewals", "renew-calls", "3"]
    assert _row(page, "data-queue", "winback|renew-calls") == ["winback", "renew-calls", "1"]
    ana = Browser(app)
    ana.sign_in("ana")
    ana.post("/agent/next", {})
    page = _floor(app)
    assert _row(page, "data-queue", "renewals|renew-calls") == ["renewals", "renew-calls", "2"]

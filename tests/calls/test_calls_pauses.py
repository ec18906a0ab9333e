"""Pause codes (engine/calls/pauses.py): one open pause per agent, refused while holding a
call, ended by the next call; paused time by code in `report agents`, neither talk nor idle;
`campaign agents pause/resume` from the CLI. Both databases."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from calls_helpers import TEST_NOW, make_world, unit
from click.testing import CliRunner
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.calls.agents import disable_agent
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.pauses import (
    DEFAULT_CODES,
    DISABLED,
    NEXT_CALL,
    RESUMED,
    end_pause,
    open_pause,
    pause_codes,
    pause_totals,
    start_pause,
)
from engine.calls.scripts import serve_next
from engine.db.models import AgentPause
from engine.errors import InputError, NotFoundError
from engine.reports.agents import agents_report
from engine.reports.common import Period
from engine.settings import Settings

CODES = DEFAULT_CODES


def test_pause_codes_come_from_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert pause_codes(Settings(database_url="sqlite://")) == ("break", "training", "meeting")
    custom = Settings(database_url="sqlite://", pause_codes=" Lunch, coaching ,lunch,")
    assert pause_codes(custom) == ("lunch", "coaching")


def test_one_open_pause_per_agent_and_errors(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    with unit(app) as s:
        pause = start_pause(s, "ana", "Break", codes=CODES, at=TEST_NOW, by="ana")
        assert pause.code == "break"
    with unit(app) as s, pytest.raises(InputError, match="already paused \\(break since"):
        start_pause(s, "ana", "meeting", codes=CODES, at=TEST_NOW, by="ana")
    with unit(app) as s, pytest.raises(InputError, match="unknown pause code 'nap'"):
        start_pause(s, "ana", "nap", codes=CODES, at=TEST_NOW, by="ana")
    with unit(app) as s, pytest.raises(NotFoundError):
        start_pause(s, "ghost", "break", codes=CODES, at=TEST_NOW, by="cli")
    later = TEST_NOW + timedelta(minutes=15)
    with unit(app) as s:
        ended = end_pause(s, "ana", at=later, reason=RESUMED, by="ana")
        assert ended is not None and ended.end_reason == RESUMED
        assert end_pause(s, "ana", at=later, reason=RESUMED, by="ana") is None
    with app.sessions() as s:
        rows = list(s.scalars(select(AgentPause)))
    assert [(r.code, r.ended_at) for r in rows] == [("break", later)]


def test_no_pause_while_holding_a_call_and_the_next_call_ends_a_pause(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    first = world.task(world.member())
    world.task(world.member())
    with unit(app) as s:
        served = serve_next(s, "ana", settings=app.settings, at=TEST_NOW)
        assert served is not None and served.claim.task_id == first
    with unit(app) as s, pytest.raises(InputError, match=f"holds task {first}: log or release"):
        start_pause(s, "ana", "break", codes=CODES, at=TEST_NOW, by="ana")
    with unit(app) as s:
        log_call(
            s,
            CallInput(first, "ana", "NO_ANSWER", {}, None, None),
            DispositionSet.standard(),
            at=TEST_NOW + timedelta(minutes=4),
        )
        start_pause(s, "ana", "break", codes=CODES, at=TEST_NOW + timedelta(minutes=5), by="ana")
    with unit(app) as s:
        served = serve_next(s, "ana", settings=app.settings, at=TEST_NOW + timedelta(minutes=20))
        assert served is not None
        assert open_pause(s, "ana") is None
        ended = s.scalar(select(AgentPause))
        assert ended is not None and ended.end_reason == NEXT_CALL
        assert ended.ended_at == TEST_NOW + timedelta(minutes=20)


def test_report_agents_shows_paused_time_by_code_apart_from_handle_time(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    world.agent("ben")
    task = world.task(world.member())
    at = TEST_NOW
    with unit(app) as s:
        # A pause straddling the period's start counts only its time inside.
        start_pause(s, "ben", "training", codes=CODES, at=at - timedelta(minutes=30), by="cli")
        end_pause(s, "ben", at=at + timedelta(minutes=10), reason=RESUMED, by="cli")
        start_pause(s, "ana", "break", codes=CODES, at=at, by="ana")
        end_pause(s, "ana", at=at + timedelta(minutes=15), reason=RESUMED, by="ana")
        start_pause(s, "ana", "break", codes=CODES, at=at + timedelta(minutes=20), by="ana")
        end_pause(s, "ana", at=at + timedelta(minutes=25), reason=RESUMED, by="ana")
    with unit(app) as s:
        serve_next(s, "ana", settings=app.settings, at=at + timedelta(minutes=30))
    with unit(app) as s:
        log_call(
            s,
            CallInput(task, "ana", "NO_ANSWER", {}, None, None),
            DispositionSet.standard(),
            at=at + timedelta(minutes=33),
        )
        # Still open at report time: counted up to now.
        start_pause(s, "ana", "meeting", codes=CODES, at=at + timedelta(minutes=40), by="ana")
    now = at + timedelta(minutes=50)
    period = Period(at, at + timedelta(days=1), "today")
    with app.sessions() as s:
        totals = pause_totals(s, start=at, end=now, at=now)
        report = agents_report(s, at=now, settings=app.settings, period=period)
    assert [(t.agent, t.code, t.pauses, t.seconds) for t in totals] == [
        ("ana", "break", 2, 20 * 60),
        ("ana", "meeting", 1, 10 * 60),
        ("ben", "training", 1, 10 * 60),
    ]
    assert [(p.agent, p.code, p.seconds) for p in report.pauses] == [
        (t.agent, t.code, t.seconds) for t in totals
    ]
    (ana,) = report.agents
    assert ana.average_handle_seconds == 180  # the claim to the log; no pause inside
    table = next(t for t in report.tables() if t.title.startswith("Paused time by code"))
    assert [tuple(r) for r in table.rows] == [
        ("ana", "break", 2, "20"),
        ("ana", "meeting", 1, "10"),
        ("ben", "training", 1, "10"),
    ]


@pytest.fixture
def invoke(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", database_url)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    return run


def test_agents_pause_and_resume_from_the_cli(app: App, invoke) -> None:  # type: ignore[no-untyped-def]
    make_world(app).agent("ana")
    code, out = invoke("agents", "pause", "ana", "--code", "training")
    assert code == 0 and "Agent ana paused (training) since" in out, out
    code, out = invoke("agents", "pause", "ana", "--code", "break")
    assert code != 0 and "already paused (training" in out and "Traceback" not in out
    code, out = invoke("agents", "pause", "ana", "--code", "nap")
    assert code != 0 and "unknown pause code 'nap': one of break, training, meeting" in out
    code, out = invoke("agents", "resume", "ana", "--json")
    assert code == 0, out
    resumed = json.loads(out)["resumed"]
    assert resumed["code"] == "training" and resumed["seconds"] >= 0
    code, out = invoke("agents", "resume", "ana")
    assert code == 0 and "was not paused" in out
    code, out = invoke("agents", "resume", "ghost")
    assert code != 0 and "ghost" in out and "Traceback" not in out
    with app.sessions() as s:
        rows = list(s.scalars(select(AgentPause)))
    assert [(r.agent, r.code, r.started_by, r.end_reason) for r in rows] == [
        ("ana", "training", "cli", RESUMED)
    ]


def test_disabling_an_agent_ends_their_pause(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    with unit(app) as s:
        start_pause(s, "ana", "training", codes=CODES, at=TEST_NOW, by="ana")
    gone = TEST_NOW + timedelta(minutes=40)
    with unit(app) as s:
        disable_agent(s, "ana", at=gone)
    with unit(app) as s:
        assert open_pause(s, "ana") is None
        pause = s.scalars(select(AgentPause).where(AgentPause.agent == "ana")).one()
        assert pause.end_reason == DISABLED and pause.ended_by == "agents disable"
        # Counted up to the disabling, however late the report is asked for.
        week_later = gone + timedelta(days=7)
        totals = pause_totals(s, start=TEST_NOW, end=week_later, at=week_later, agent="ana")
        assert [(t.code, t.seconds) for t in totals] == [("training", 40 * 60)]

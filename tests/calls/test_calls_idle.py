"""Idle time (engine/calls/idle.py): signed in to the console, neither on a call (claim to log,
or the claim held now) nor paused; in `report agents` and as "idle since" on the wallboard.
A controlled clock; both databases."""

from __future__ import annotations

from datetime import timedelta

from calls_helpers import TEST_NOW, make_world, unit

from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.idle import idle_times, signed_in
from engine.calls.log import CallInput, log_call
from engine.calls.pauses import DEFAULT_CODES, RESUMED, end_pause, start_pause
from engine.calls.scripts import serve_next
from engine.reports.agents import agents_report
from engine.reports.common import Period
from engine.web import audit
from engine.web.floor import floor
from engine.web.sessions import LIFETIME

T = TEST_NOW  # Monday 15:00 UTC


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def _sign(app: App, login: str, event: str, at_minute: float) -> None:
    with unit(app) as s:
        audit.record(s, event, login, at=T + minutes(at_minute))


def test_signed_in_spans_end_at_sign_out_or_the_sessions_end() -> None:
    events = [
        (T, audit.SIGN_IN),
        (T + minutes(5), audit.SIGN_IN),  # a second tab: the same stretch
        (T + minutes(30), audit.SIGN_OUT),
        (T + minutes(40), audit.SIGN_OUT),  # signed out already: nothing
        (T + minutes(60), audit.SIGN_IN),  # never signed out: the session runs out
    ]
    far = T + timedelta(days=2)
    assert signed_in(events, until=far) == [
        (T, T + minutes(30)),
        (T + minutes(60), T + minutes(60) + LIFETIME),
    ]
    assert signed_in(events, until=T + minutes(70)) == [
        (T, T + minutes(30)),
        (T + minutes(60), T + minutes(70)),
    ]


def test_idle_is_signed_in_time_off_calls_and_pauses(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    world.agent("ben")  # works from the terminal only: no sign-in, no idle row
    world.agent("cy")
    first = world.task(world.member(points_balance=9))
    world.task(world.member(points_balance=5))
    world.task(world.member(points_balance=3))
    _sign(app, "ana", audit.SIGN_IN, 0)
    _sign(app, "cy", audit.SIGN_IN, -30)  # before the period: only the period's part counts
    _sign(app, "cy", audit.SIGN_OUT, 20)
    with unit(app) as s:  # 0-10 idle, 10-14 on a call
        serve_next(s, "ana", settings=app.settings, at=T + minutes(10))
    with unit(app) as s:
        log_call(
            s,
            CallInput(first, "ana", "NO_ANSWER", {}, None, None),
            DispositionSet.standard(),
            at=T + minutes(14),
        )
    with unit(app) as s:  # 14-20 idle, 20-35 paused, 35-40 idle
        start_pause(s, "ana", "break", codes=DEFAULT_CODES, at=T + minutes(20), by="ana")
        end_pause(s, "ana", at=T + minutes(35), reason=RESUMED, by="ana")
    with unit(app) as s:  # a claim held now (40-50): on a call
        serve_next(s, "ben", settings=app.settings, at=T + minutes(38))
        serve_next(s, "ana", settings=app.settings, at=T + minutes(40))
    now = T + minutes(50)
    with app.sessions() as s:
        idle = idle_times(s, start=T, end=T + timedelta(days=1), at=now)
    assert sorted(idle) == ["ana", "cy"]
    assert (idle["ana"].signed_in_seconds, idle["ana"].idle_seconds) == (50 * 60, 21 * 60)
    assert idle["ana"].idle_since is None  # on a call now
    assert (idle["cy"].signed_in_seconds, idle["cy"].idle_seconds) == (20 * 60, 20 * 60)
    assert idle["cy"].idle_since is None  # signed out

    # The claim ends at its log: idle again since then, in the report and on the wallboard.
    with unit(app) as s:
        task = serve_next(s, "ana", settings=app.settings, at=now)
        assert task is not None
        log_call(
            s,
            CallInput(task.claim.task_id, "ana", "NO_ANSWER", {}, None, None),
            DispositionSet.standard(),
            at=T + minutes(52),
        )
    later = T + minutes(60)
    with app.sessions() as s:
        report = agents_report(
            s, at=later, settings=app.settings, period=Period(T, T + timedelta(days=1), "today")
        )
        board = {a.login: a for a in floor(s, at=later).agents}
    rows = {i.agent: i for i in report.idle}
    assert (rows["ana"].signed_in_seconds, rows["ana"].idle_seconds) == (60 * 60, 29 * 60)
    assert rows["ana"].idle_since == T + minutes(52)
    table = next(t for t in report.tables() if t.title.startswith("Idle time"))
    assert ("ana", "60", "29", "48.3%", (T + minutes(52)).isoformat(timespec="minutes")) in [
        tuple(r) for r in table.rows
    ]
    assert table.note is not None and "neither on a call" in table.note
    assert board["ana"].idle_since == T + minutes(52)
    assert board["ana"].state == "signed in, idle since 15:52 UTC"
    assert board["ben"].idle_since is None and board["ben"].state.startswith("on a call")
    assert board["cy"].state == "signed out"

    # A pause now: not idle.
    with unit(app) as s:
        start_pause(s, "ana", "meeting", codes=DEFAULT_CODES, at=later, by="ana")
    with app.sessions() as s:
        board = {a.login: a for a in floor(s, at=later + minutes(5)).agents}
        idle = idle_times(s, start=T, end=later + minutes(5), at=later + minutes(5))
    assert board["ana"].idle_since is None and board["ana"].state.startswith("paused")
    assert idle["ana"].idle_seconds == 29 * 60

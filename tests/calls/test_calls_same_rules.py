"""Calls under the same rules as messages (frequency caps at claim-next), agents who leave
(disable / enable / teams, callback fallback, callbacks at risk) and a busy SQLite database."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from calls_helpers import TEST_NOW, campaign_source, make_run, make_world, task_row, unit
from click.testing import CliRunner
from sqlalchemy import update

import engine.calls.claiming as claiming_module
import engine.db.session as session_module
from cli import cli
from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.rules import CallRules, callbacks_at_risk
from engine.calls.tasks import claim_next
from engine.db.models import CallTask, Contact
from engine.policy import FrequencyCap


def afternoon_zone() -> str:
    """An Etc/GMT zone where the local time is about 14:00 now (the CLI reads the real clock)."""
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def run(app: App, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args], env=env)
    return result.exit_code, result.output


def contact(app: App, pid: int, at: datetime, channel: str = "email") -> None:
    with unit(app) as s:
        s.add(
            Contact(
                participant_id=pid,
                channel=channel,
                run_id=None,
                occurred_at=at,
                kind="call" if channel == "call" else "message",
            )
        )


CAP_2_A_DAY = {"CAMPAIGN_FREQUENCY_CAP_MAX": "2", "CAMPAIGN_FREQUENCY_CAP_PER": "1d"}


# --------------------------------------------------------------------------- caps


def test_a_member_at_the_cap_is_not_served_and_the_list_says_until_when(app: App) -> None:
    # The report of #21: two emails today under a cap of 2 a day, then a call at once.
    w = make_world(app)
    w.agent("ana")
    now = datetime.now(UTC)
    zone = afternoon_zone()
    capped = w.member(timezone=zone, points_balance=9000)
    free = w.member(timezone=zone, points_balance=1)
    capped_task = w.task(capped, due_at=now - timedelta(hours=1))
    free_task = w.task(free, due_at=now - timedelta(hours=1))
    first_email = now - timedelta(hours=3)
    contact(app, capped, first_email)
    contact(app, capped, now - timedelta(minutes=2))

    code, out = run(app, "calls", "list", "--agent", "ana", "--json", env=CAP_2_A_DAY)
    assert code == 0, out
    import json

    rows = {r["task_id"]: r for r in json.loads(out)}
    assert rows[capped_task]["callable_now"] is False
    assert rows[capped_task]["waits_for"] == "frequency_cap"
    # The cap frees when the first email leaves the rolling day (inside the calling window).
    frees = datetime.fromisoformat(rows[capped_task]["callable_at"])
    assert frees >= first_email + timedelta(days=1)
    assert "waits for the frequency cap until" in rows[capped_task]["why"]
    assert rows[free_task]["callable_now"] is True

    code, out = run(app, "calls", "next", "--agent", "ana", "--json", env=CAP_2_A_DAY)
    assert code == 0, out
    assert json.loads(out)["claim"]["task_id"] == free_task  # not the higher-ranked capped one
    code, out = run(app, "calls", "next", "--agent", "ben", env=CAP_2_A_DAY)
    assert code == 1 and "no agent 'ben'" in out
    w.agent("ben")
    code, out = run(app, "calls", "next", "--agent", "ben", env=CAP_2_A_DAY)
    assert code == 0 and "Nothing callable for ben" in out, out
    assert task_row(app, capped_task).status == "open"

    # Under the default cap (4 a week) the same member is callable.
    code, out = run(app, "calls", "next", "--agent", "ben", "--json")
    assert code == 0 and json.loads(out)["claim"]["task_id"] == capped_task, out


def test_a_logged_call_counts_toward_the_cap_and_a_callback_is_exempt(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    pid = w.member()
    first = w.task(pid)
    other_run = make_run(app, w.program_id, campaign_source("other-calls"))
    callback = w.task(pid, kind="callback", assigned_agent="ana", run_id=other_run)
    rules = CallRules(FrequencyCap(1, timedelta(days=1)), timedelta(hours=1))
    contact(app, pid, TEST_NOW - timedelta(hours=2), channel="call")  # the call just logged
    with unit(app) as s:
        listed = {r.task_id: r for r in list_calls(s, at=TEST_NOW, agent="ana", rules=rules)}
    assert listed[first].waits_for == "frequency_cap" and not listed[first].callable_now
    # The member asked for the callback: the cap does not break that promise.
    assert listed[callback].callable_now
    with unit(app) as s:
        claimed = claim_next(s, "ana", at=TEST_NOW, rules=rules)
    assert claimed is not None and claimed.task_id == callback


def test_a_call_in_progress_counts_toward_the_cap(app: App) -> None:
    # One member on two campaigns' lists; ana is calling them: ben is not served them too.
    w = make_world(app)
    w.agent("ana")
    w.agent("ben")
    pid = w.member()
    w.task(pid)
    other_run = make_run(app, w.program_id, campaign_source("other-calls"))
    w.task(pid, run_id=other_run)
    rules = CallRules(FrequencyCap(1, timedelta(days=1)), timedelta(hours=1))
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW, rules=rules) is not None
    with unit(app) as s:
        assert claim_next(s, "ben", at=TEST_NOW + timedelta(minutes=1), rules=rules) is None


def test_the_campaigns_own_cap_applies_too(app: App) -> None:
    w = make_world(app, frequency_cap={"max": 1, "per": "3d"})
    w.agent("ana")
    pid = w.member()
    task = w.task(pid)
    contact(app, pid, TEST_NOW - timedelta(days=2), channel="sms")
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW) is None  # global cap 4/7d is not reached
        listed = list_calls(s, at=TEST_NOW, agent="ana")
    assert listed[0].task_id == task and listed[0].waits_for == "frequency_cap"
    assert listed[0].callable_at is not None
    assert listed[0].callable_at >= TEST_NOW + timedelta(days=1)


# --------------------------------------------------------------------------- agents who leave


def test_disable_enable_and_teams_from_the_cli(app: App) -> None:
    w = make_world(app)
    zone = afternoon_zone()
    now = datetime.now(UTC)
    task = w.task(w.member(timezone=zone), due_at=now - timedelta(hours=1))
    w.agent("ana")
    code, out = run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0, out

    code, out = run(app, "agents", "disable", "ana")
    assert code == 0 and "ana disabled; 1 claim(s) back in the queue" in out, out
    assert task_row(app, task).status == "open"
    code, out = run(app, "calls", "next", "--agent", "ana")
    assert code == 1 and "disabled" in out and "agents enable ana" in out
    assert len(out.strip().splitlines()) == 1
    code, out = run(app, "agents", "list")
    assert code == 0 and "disabled" in out
    code, out = run(app, "agents", "disable", "ana")
    assert code == 0 and "disabled already" in out

    code, out = run(app, "agents", "enable", "ana")
    assert code == 0 and "ana enabled" in out
    code, out = run(app, "agents", "set", "ana", "--team", "Escalations", "--team", "vip")
    assert code == 0 and "teams escalations, vip" in out, out
    # No longer on the renewals team: the renewals task is not hers.
    code, out = run(app, "calls", "next", "--agent", "ana")
    assert code == 0 and "Nothing callable" in out
    code, out = run(app, "agents", "set", "ana", "--team", "bad team")
    assert code != 0 and "team 'bad team'" in out
    code, out = run(app, "agents", "set", "nobody", "--team", "x")
    assert code == 1 and "no agent 'nobody'" in out


def callback_world(app: App, due: datetime) -> tuple[Any, int]:
    w = make_world(app)
    w.agent("ana")
    w.agent("ben")
    task = w.task(w.member(), kind="callback", assigned_agent="ana", due_at=due)
    return w, task


def test_an_untaken_agent_only_callback_falls_back_to_the_team(app: App) -> None:
    # Due Monday 10:00 New York (the program's clock); the fallback is 1 business hour later.
    due = TEST_NOW
    _, task = callback_world(app, due)
    with unit(app) as s:
        assert claim_next(s, "ben", at=due + timedelta(minutes=59)) is None
        risk = callbacks_at_risk(s, at=due + timedelta(minutes=30))
    assert [(r.task_id, r.agent, r.agent_state, r.fallen_back) for r in risk] == [
        (task, "ana", "active", False)
    ]
    assert risk[0].falls_back_at == due + timedelta(hours=1)
    with unit(app) as s:
        rows = list_calls(s, at=due + timedelta(hours=1), agent="ben")
        assert [r.task_id for r in rows] == [task]
        assert "now the team's too (not taken by ana in time)" in rows[0].why
        claimed = claim_next(s, "ben", at=due + timedelta(hours=1))
    assert claimed is not None and claimed.task_id == task


def test_the_fallback_wait_counts_business_hours(app: App) -> None:
    # Due Friday 16:30 New York: one business hour later is Monday 09:30.
    friday = datetime(2026, 3, 6, 21, 30, tzinfo=UTC)
    _, task = callback_world(app, friday)
    with unit(app) as s:
        assert claim_next(s, "ben", at=friday + timedelta(hours=20)) is None
        monday = datetime(2026, 3, 9, 13, 30, tzinfo=UTC)  # 09:30 EDT
        claimed = claim_next(s, "ben", at=monday)
    assert claimed is not None and claimed.task_id == task


def test_a_disabled_agents_callbacks_go_to_the_team_at_once_and_are_reported(app: App) -> None:
    due = TEST_NOW - timedelta(minutes=5)
    _, task = callback_world(app, due)
    code, out = run(app, "agents", "disable", "ana")
    assert code == 0 and "1 agent-only callback(s) now served to the team" in out, out
    with unit(app) as s:
        risk = callbacks_at_risk(s, at=TEST_NOW)
        assert [(r.agent_state, r.fallen_back) for r in risk] == [("disabled", True)]
        claimed = claim_next(s, "ben", at=TEST_NOW)
    assert claimed is not None and claimed.task_id == task
    # A configured longer wait does not hold back a disabled agent's callbacks.
    with unit(app) as s:
        s.execute(update(CallTask).values(status="open", claimed_by=None, claimed_until=None))
        rules = CallRules(FrequencyCap(4, timedelta(days=7)), timedelta(hours=8))
        assert claim_next(s, "ben", at=TEST_NOW, rules=rules) is not None


def test_report_agents_lists_callbacks_at_risk(app: App) -> None:
    due = datetime.now(UTC) - timedelta(minutes=10)
    _, task = callback_world(app, due)
    code, out = run(app, "report", "agents", "--json")
    assert code == 0, out
    import json

    risk = json.loads(out)["callbacks_at_risk"]
    assert [(r["task_id"], r["agent"], r["fallen_back"]) for r in risk] == [(task, "ana", False)]
    code, out = run(app, "report", "agents", "--agent", "ben", "--json")
    assert code == 0 and json.loads(out)["callbacks_at_risk"] == []
    code, out = run(app, "report", "agents")
    assert code == 0 and "Callbacks at risk" in out and "to the team at" in out
    code, out = run(app, "calls", "at-risk", "--json")
    assert code == 0 and [r["task_id"] for r in json.loads(out)] == [task]
    code, out = run(app, "agents", "disable", "ana")
    assert code == 0, out
    code, out = run(app, "calls", "at-risk")
    assert code == 0 and "disabled" in out and "served to the team" in out


# --------------------------------------------------------------------------- busy SQLite


# SQLite only: its busy timeout is the failure; PostgreSQL claims skip locked rows instead.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_calls_next_on_a_locked_sqlite_database_is_one_line(
    app: App, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    w = make_world(app)
    w.agent("ana")
    w.task(w.member(timezone=afternoon_zone()), due_at=datetime.now(UTC) - timedelta(hours=1))
    original = session_module._sqlite_pragmas

    def short_wait(connection: Any, record: Any) -> None:
        original(connection, record)
        connection.execute("PRAGMA busy_timeout=50")

    monkeypatch.setattr(session_module, "_sqlite_pragmas", short_wait)
    monkeypatch.setattr(claiming_module, "BUSY_PAUSE_SECONDS", 0.0)
    path = app.settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock throughout
        code, out = run(app, "calls", "next", "--agent", "ana")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1, out
    assert out.startswith("Error: the database stayed busy") and "tries" in out
    assert len(out.strip().splitlines()) == 1
    assert "sqlalchemy" not in out.lower() and "OperationalError" not in out
    # Once the lock is free, the same command claims.
    code, out = run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0 and '"task_id"' in out, out
    task = json.loads(out)["claim"]["task_id"]

    # Any other command that meets the lock says so in one line too (here: logging the call).
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        code, out = run(app, "calls", "log", str(task), "--disposition", "NO_ANSWER")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and out.startswith("Error: the database is busy"), out
    assert len(out.strip().splitlines()) == 1

"""A run's life (DESIGN.md): active while it has work (enrollments with steps left, pending
messages, open call tasks), completed only when none is left; pause, resume and cancel work on
any run that still has work; cancelling closes its open call tasks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select, update

from cli import cli
from engine import planning, runs
from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.listing import list_calls
from engine.calls.log import CallInput, log_call
from engine.db.models import CallTask, CampaignRun, Enrollment, OutboxMessage, Program
from engine.errors import InputError
from engine.run_work import RunWork
from engine.sending.dispatch import dispatch
from engine.sequencing import advance
from engine.testing.fakes import RecordingChannel, make_consent, make_participant

from .helpers import TEST_NOW, definition, unit

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EMAIL_STEP = {"id": "email-1", "channel": "email", "template": "points_expiring"}
CALL_STEP = {"id": "call-1", "channel": "call", "script": "winback", "max_attempts": 2}


def _members(app: App, program: Program, n: int, **fields: Any) -> None:
    with unit(app) as s:
        for i in range(n):
            member = make_participant(s, program, at=TEST_NOW, external_id=f"L{i}", **fields)
            make_consent(s, member, channel="call", status="opted_in", at=TEST_NOW)


def _launch(app: App, **fields: Any) -> int:
    with unit(app) as s:
        return planning.launch(s, definition(**fields), at=TEST_NOW).run_id


def _run(app: App, run_id: int) -> CampaignRun:
    with unit(app) as s:
        run = s.get(CampaignRun, run_id)
        assert run is not None
        return run


def _work(app: App, run_id: int) -> RunWork:
    with unit(app) as s:
        return runs.show_run(s, run_id).work


def _tasks(app: App) -> list[CallTask]:
    with unit(app) as s:
        return list(s.scalars(select(CallTask).order_by(CallTask.id)))


def _log(app: App, task_id: int, disposition: str, at: datetime, **fields: str) -> None:
    with unit(app) as s:
        log_call(
            s,
            CallInput(
                task_id=task_id,
                agent="ana",
                disposition=disposition,
                fields=fields,
                verified=True,
            ),
            DispositionSet.standard(),
            at=at,
        )


@pytest.fixture
def agent(app: App) -> str:
    from engine.calls.agents import add_agent

    with unit(app) as s:
        add_agent(s, "ana", name="Ana", teams=[], at=TEST_NOW)
    return "ana"


def test_call_tasks_outlive_the_last_step(app: App, program: Program, agent: str) -> None:
    _members(app, program, 40)
    run_id = _launch(app, steps=[CALL_STEP], holdout_percent=20)
    made = advance(app, at=TEST_NOW)
    treated = made.call_tasks
    # Every enrollment made its (only) step; the tasks are open: the run is not finished.
    assert treated > 0 and made.runs_completed == []
    assert _run(app, run_id).status == "active"
    assert _work(app, run_id) == RunWork(0, 0, treated)
    with unit(app) as s:
        listed = list_calls(s, at=TEST_NOW + HOUR)
        holdout = set(
            s.scalars(
                select(Enrollment.state).where(
                    Enrollment.run_id == run_id, Enrollment.group == "holdout"
                )
            )
        )
    assert len(listed) == treated
    assert holdout == {"active"}  # the holdout completes with its run, not before

    # A callback and a recycled attempt, due after the last step, keep the run alive too.
    first, second, *rest = _tasks(app)
    _log(app, first.id, "NO_ANSWER", TEST_NOW + HOUR)
    callback_at = (TEST_NOW + 2 * HOUR).isoformat()
    _log(app, second.id, "CALLBACK", TEST_NOW + HOUR, callback_at=callback_at, who="anyone")
    for task in rest:
        _log(app, task.id, "NOT_INTERESTED", TEST_NOW + HOUR, reason="no time")
    assert advance(app, at=TEST_NOW + HOUR).runs_completed == []
    assert _work(app, run_id) == RunWork(0, 0, 2)  # the recycled first, the callback
    with unit(app) as s:
        assert len(list_calls(s, at=TEST_NOW + 2 * DAY)) == 2

    for task in _tasks(app):
        if task.status == "open":
            _log(app, task.id, "NOT_INTERESTED", TEST_NOW + 5 * HOUR, reason="no time")
    assert advance(app, at=TEST_NOW + 5 * HOUR).runs_completed == [run_id]
    run = _run(app, run_id)
    assert run.status == "completed" and _work(app, run_id) == RunWork()
    with unit(app) as s:
        states = set(s.scalars(select(Enrollment.state).where(Enrollment.run_id == run_id)))
    assert states == {"completed"}


def test_an_empty_run_and_a_holdout_only_run_complete(app: App, program: Program) -> None:
    empty = _launch(app, audience={"field": "status", "eq": "closed"})
    _members(app, program, 20)
    with unit(app) as s:
        loaded = definition(name="other", steps=[CALL_STEP], holdout_percent=50)
        other = planning.launch(s, loaded, at=TEST_NOW).run_id
    with unit(app) as s:
        # Every treatment member converted before the step was made: only the holdout is left.
        s.execute(
            update(Enrollment)
            .where(Enrollment.run_id == other, Enrollment.group == "treatment")
            .values(state="converted", next_action_at=None)
        )
        groups = set(s.scalars(select(Enrollment.group).where(Enrollment.run_id == other)))
    assert groups == {"treatment", "holdout"}
    assert sorted(advance(app, at=TEST_NOW).runs_completed) == sorted([empty, other])
    with unit(app) as s:
        holdout = set(
            s.scalars(
                select(Enrollment.state).where(
                    Enrollment.run_id == other, Enrollment.group == "holdout"
                )
            )
        )
    assert holdout == {"completed"}


def test_queued_messages_after_the_last_step_can_be_paused_and_cancelled(
    app: App, program: Program
) -> None:
    _members(app, program, 3)
    run_id = _launch(app, steps=[EMAIL_STEP])
    assert advance(app, at=TEST_NOW).runs_completed == []
    assert _work(app, run_id) == RunWork(0, 3, 0)
    with unit(app) as s:
        assert runs.pause_run(s, run_id, at=TEST_NOW, reason="typo").after == "paused"
    channel = RecordingChannel(clock=app.clock)
    assert dispatch(app, {"email": channel}, worker="w").sent == 0 and channel.attempts == []
    assert advance(app, at=TEST_NOW + HOUR).runs_completed == []  # paused: not completed
    with unit(app) as s:
        assert runs.resume_run(s, run_id, at=TEST_NOW + HOUR).after == "active"
    with unit(app) as s:
        change = runs.cancel_run(s, run_id, at=TEST_NOW + HOUR, reason="wrong copy")
    assert (change.before, change.after, change.skipped_messages) == ("active", "cancelled", 3)
    with unit(app) as s:
        reasons = set(s.scalars(select(OutboxMessage.status_reason)))
    assert reasons == {"run_cancelled"}
    assert dispatch(app, {"email": channel}, worker="w").sent == 0


def test_a_run_completed_with_work_left_can_still_be_paused(app: App, program: Program) -> None:
    """A run an older version completed with its last messages queued."""
    _members(app, program, 2)
    run_id = _launch(app, steps=[EMAIL_STEP])
    advance(app, at=TEST_NOW)
    with unit(app) as s:
        s.execute(update(CampaignRun).values(status="completed"))
    with unit(app) as s:
        assert runs.pause_run(s, run_id, at=TEST_NOW).before == "completed"
    with unit(app) as s:
        assert runs.cancel_run(s, run_id, at=TEST_NOW).skipped_messages == 2
    # Once finished, there is nothing left to pause or cancel.
    finished = _launch(app, name="finished", audience={"field": "status", "eq": "closed"})
    advance(app, at=TEST_NOW)
    with unit(app) as s, pytest.raises(InputError, match="it has no work left"):
        runs.pause_run(s, finished, at=TEST_NOW)
    with unit(app) as s, pytest.raises(InputError, match="it has no work left"):
        runs.cancel_run(s, finished, at=TEST_NOW)


def test_cancel_closes_open_call_tasks(app: App, program: Program, agent: str) -> None:
    _members(app, program, 3)
    run_id = _launch(app, steps=[CALL_STEP])
    advance(app, at=TEST_NOW)
    held, lapsed, idle = _tasks(app)
    with unit(app) as s:
        # An agent on the call now, and a claim whose lease ran out.
        s.execute(
            update(CallTask)
            .where(CallTask.id == held.id)
            .values(status="claimed", claimed_by="ana", claimed_until=TEST_NOW + 2 * HOUR)
        )
        s.execute(
            update(CallTask)
            .where(CallTask.id == lapsed.id)
            .values(status="claimed", claimed_by="bob", claimed_until=TEST_NOW - HOUR)
        )
    with unit(app) as s:
        change = runs.cancel_run(s, run_id, at=TEST_NOW + HOUR, reason="wrong list")
    assert (change.closed_tasks, change.tasks_with_agents) == (2, 1)
    rows = {t.id: t for t in _tasks(app)}
    assert [(rows[t.id].status, rows[t.id].close_reason) for t in (lapsed, idle)] == [
        ("closed", "run_cancelled")
    ] * 2
    # The agent's call is logged; no retry is made for a cancelled run.
    _log(app, held.id, "NO_ANSWER", TEST_NOW + HOUR)
    task = {t.id: t for t in _tasks(app)}[held.id]
    assert (task.status, task.close_reason) == ("closed", "run_cancelled")
    with unit(app) as s:
        assert list_calls(s, at=TEST_NOW + 2 * DAY) == []


def _afternoon_zone() -> str:
    """An Etc/GMT zone where it is about 14:00 now: the CLI reads the real clock."""
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def test_cli_a_call_campaign_stays_active_until_its_calls_are_logged(
    app: App, program: Program, tmp_path: Path
) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    data = {
        "name": "callers",
        "program": "loyalty",
        "audience": {"field": "status", "eq": "active"},
        "holdout_percent": 0,
        "goal": {"events": ["login"], "window": "30d"},
        "steps": [CALL_STEP],
    }
    (folder / "callers.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    _members(app, program, 3, timezone=_afternoon_zone())

    def run(*args: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["--database-url", app.settings.database_url, *args],
            env={"CAMPAIGN_CAMPAIGNS_DIR": str(folder)},
        )
        assert result.exit_code == 0, result.output
        return result.output

    run_id = json.loads(run("launch", "callers", "--json"))["run_id"]
    assert "runs completed" not in run("advance")
    listed = json.loads(run("calls", "list", "--json"))
    assert len(listed) == 3
    shown = json.loads(run("runs", "show", str(run_id), "--json"))
    assert shown["status"] == "active" and shown["work"]["open_call_tasks"] == 3
    assert "work left: 3 open call task(s)" in run("runs", "show", str(run_id))
    assert "3 open call task(s)" in run("runs", "list")
    run("agents", "add", "ana", "--name", "Ana")
    for row in listed:
        run(
            "calls",
            "log",
            str(row["task_id"]),
            "--agent",
            "ana",
            "--disposition",
            "NOT_INTERESTED",
            "--field",
            "reason=busy",
            "--verified",
            "yes",
            "--no-input",
        )
    assert f"runs completed: {run_id}" in run("advance")
    shown = json.loads(run("runs", "show", str(run_id), "--json"))
    assert shown["status"] == "completed" and "work left: no work left" in run(
        "runs", "show", str(run_id)
    )


def test_an_exited_enrollment_does_not_hold_its_run_open(app: App, program: Program) -> None:
    # A call, then an SMS the member never consented to: at the SMS step the member leaves the
    # sequence, and the unworked call task (served to nobody now) closes with the reason.
    _members(app, program, 1)
    sms = {"id": "sms-1", "channel": "sms", "template": "points_expiring", "delay": "1d"}
    run_id = _launch(app, steps=[CALL_STEP, sms])
    advance(app, at=TEST_NOW)
    assert _work(app, run_id) == RunWork(1, 0, 1)
    later = advance(app, at=TEST_NOW + 2 * DAY)
    assert later.exited == 1 and later.runs_completed == [run_id]
    (task,) = _tasks(app)
    assert (task.status, task.close_reason) == ("closed", "enrollment exited")

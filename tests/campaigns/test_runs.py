"""Run lifecycle: list, show, pause, resume, cancel, with status checks and reasons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import planning, runs
from engine.app import App
from engine.db.models import Enrollment, Program
from engine.errors import InputError, NotFoundError
from engine.testing.fakes import make_participant

from .helpers import TEST_NOW, definition, unit

HOUR = timedelta(hours=1)


@pytest.fixture
def run_id(app: App, program: Program) -> int:
    with unit(app) as s:
        for i in range(30):
            make_participant(s, program, at=TEST_NOW, external_id=f"R{i}")
    with unit(app) as s:
        return planning.launch(s, definition(holdout_percent=20), at=TEST_NOW).run_id


def test_list_and_show(app: App, run_id: int) -> None:
    with unit(app) as s:
        listed = runs.list_runs(s)
        assert runs.list_runs(s, campaign="other") == []
        detail = runs.show_run(s, run_id)
    assert [(r.id, r.campaign, r.status, r.enrolled) for r in listed] == [
        (run_id, "test-campaign", "active", 30)
    ]
    assert detail.definition_hash == definition(holdout_percent=20).content_hash
    groups = detail.by_group_state
    assert sum(groups["treatment"].values()) + sum(groups["holdout"].values()) == 30
    assert groups["holdout"] == {"active": detail.holdout}


def test_pause_resume_cancel(app: App, run_id: int) -> None:
    with unit(app) as s:
        paused = runs.pause_run(s, run_id, at=TEST_NOW + HOUR, reason="copy error in email")
    assert (paused.before, paused.after) == ("active", "paused")
    with unit(app) as s, pytest.raises(InputError, match=r"is paused since .* already"):
        runs.pause_run(s, run_id, at=TEST_NOW + HOUR)
    with unit(app) as s:
        detail = runs.show_run(s, run_id)
        assert (detail.status, detail.status_reason) == ("paused", "copy error in email")
        assert detail.status_changed_at == TEST_NOW + HOUR
    with unit(app) as s:
        assert runs.resume_run(s, run_id, at=TEST_NOW + 2 * HOUR).after == "active"
    with unit(app) as s, pytest.raises(InputError, match="only a paused run can be resumed"):
        runs.resume_run(s, run_id, at=TEST_NOW + 2 * HOUR)
    with unit(app) as s:
        cancelled = runs.cancel_run(s, run_id, at=TEST_NOW + 3 * HOUR, reason="wrong audience")
    assert cancelled.after == "cancelled" and cancelled.exited == 30
    with unit(app) as s, pytest.raises(InputError, match="a cancelled run is final"):
        runs.pause_run(s, run_id, at=TEST_NOW + 4 * HOUR)
    with unit(app) as s:
        states = set(s.execute(select(Enrollment.state, Enrollment.exit_reason)).all())
    assert states == {("exited", "run cancelled: wrong audience")}
    with unit(app) as s, pytest.raises(InputError, match="a cancelled run is final"):
        runs.resume_run(s, run_id, at=TEST_NOW + 4 * HOUR)
    with unit(app) as s, pytest.raises(InputError, match=r"cannot cancel: .* is cancelled"):
        runs.cancel_run(s, run_id, at=TEST_NOW + 4 * HOUR)


def test_a_paused_run_still_holds_its_members(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW)
    weekly = definition(
        schedule={"cron": "0 9 * * MON", "timezone": "America/New_York"},
        reentry={"after": "1d"},
    )
    with unit(app) as s:
        first = planning.launch(s, weekly, at=TEST_NOW)
    with unit(app) as s:
        runs.pause_run(s, first.run_id, at=TEST_NOW)
    with unit(app) as s:
        assert planning.launch(s, weekly, at=TEST_NOW + timedelta(days=7)).enrolled == 0
    with unit(app) as s:
        runs.cancel_run(s, first.run_id, at=TEST_NOW + timedelta(days=8))
    with unit(app) as s:
        assert planning.launch(s, weekly, at=TEST_NOW + timedelta(days=14)).enrolled == 1


def test_unknown_run(app: App, program: Program) -> None:
    with unit(app) as s, pytest.raises(NotFoundError, match="no campaign run 99"):
        runs.show_run(s, 99)

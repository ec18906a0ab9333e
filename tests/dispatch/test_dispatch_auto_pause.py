"""The dispatcher's auto-pause (401/403, or N provider failures in a row) on a run whose
messages are still queued after every step was made, and an auto-pause that cannot be
applied: an error in the output and a dispatcher that stops, never a claim/release loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from dispatch_helpers import queue_email_messages
from sqlalchemy import select, update

import engine.runs
from engine.app import App
from engine.channels.base import CampaignStopError, ChannelError
from engine.clock import FrozenClock
from engine.db.models import CampaignRun, Enrollment, OutboxMessage
from engine.errors import InputError
from engine.sending.dispatch import dispatch
from engine.sequencing import advance
from engine.settings import Settings
from engine.testing.fakes import RecordingChannel, unit
from engine.tick import TickSummary

# A guard only: a regression would loop until it (the assertions are on what stopped it).
GUARD_SECONDS = 60.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        dispatch_max_attempts=5,
        dispatch_pause_after_failures=2,
        dispatch_email_rate=1000,
    )


def _last_step_made(app: App, n: int) -> int:
    """``n`` queued emails of a run whose every enrollment made its last step."""
    messages = queue_email_messages(app, n)
    run_id = messages[0].run_id
    with unit(app) as s:
        s.execute(update(Enrollment).values(state="completed", next_action_at=None))
    # The sequencer's completion check: queued messages keep the run active.
    assert advance(app, at=app.clock.now()).runs_completed == []
    return run_id


def _run(app: App, run_id: int) -> CampaignRun:
    with unit(app) as s:
        run = s.get(CampaignRun, run_id)
        assert run is not None
        return run


def _statuses(app: App) -> set[str]:
    with unit(app) as s:
        return set(s.scalars(select(OutboxMessage.status)))


def test_401_pauses_a_run_whose_steps_are_all_made(app: App, clock: FrozenClock) -> None:
    run_id = _last_step_made(app, 4)
    channel = RecordingChannel(clock=clock)
    channel.fail_next(CampaignStopError("bad key (401)", status=401))
    summary = dispatch(app, {"email": channel}, worker="w", deadline=_guard())
    assert (summary.paused_runs, summary.errors, summary.stopped_by) == ([run_id], [], "drained")
    assert len(channel.attempts) == 1 and _statuses(app) == {"queued"}
    assert _run(app, run_id).status == "paused"


def test_failures_in_a_row_pause_a_run_whose_steps_are_all_made(
    app: App, clock: FrozenClock
) -> None:
    run_id = _last_step_made(app, 4)
    channel = RecordingChannel(clock=clock)
    # A provider that misbehaves (a 404: neither an outage, which the circuit waits out, nor a
    # refusal of the message or recipient) counts toward dispatch_pause_after_failures = 2.
    channel.fail_next(*(ChannelError("no such resource", status=404) for _ in range(4)))
    summary = dispatch(app, {"email": channel}, worker="w", deadline=_guard())
    assert summary.paused_runs == [run_id] and summary.errors == []
    assert _run(app, run_id).status == "paused"


def test_an_auto_pause_that_cannot_be_applied_stops_the_dispatcher(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _last_step_made(app, 4)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InputError("cannot pause: the database says no")

    monkeypatch.setattr(engine.runs, "pause_run", refuse)
    channel = RecordingChannel(clock=clock)
    channel.fail_next(CampaignStopError("bad key (401)", status=401))
    summary = dispatch(app, {"email": channel}, worker="w", deadline=_guard())
    assert summary.stopped_by == "pause_failed" and summary.paused_runs == []
    assert len(summary.errors) == 1 and f"run {run_id} could not be paused" in summary.errors[0]
    # One request, and the batch back in the queue: no claim/release loop.
    assert len(channel.attempts) == 1 and _statuses(app) == {"queued"}
    # The batch and at most the one claimed ahead of it: no claim/release loop.
    assert 4 <= summary.claimed <= 8
    assert _run(app, run_id).status == "active"
    message = TickSummary(at=clock.now(), dispatch=summary).message
    assert "ERROR: run" in message and "could not be paused" in message


def _guard() -> float:
    return time.monotonic() + GUARD_SECONDS

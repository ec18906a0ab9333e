"""`campaign dispatch`'s progress total on a terminal: handled so far plus due now (one COUNT),
on both databases."""

from __future__ import annotations

import io
from datetime import timedelta

from rich.console import Console
from rich.progress import Progress

from engine.app import App
from engine.cli.outbox import DispatchTotal
from engine.db.models import OutboxMessage
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run


def _total(bar: Progress, task: int) -> float | None:
    return next(t.total for t in bar.tasks if t.id == task)


def test_total_is_handled_plus_due_and_refreshes(app: App) -> None:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
        paused = make_run(session, program, at=now, campaign="paused-one", status="paused")
        ids = []
        for _ in range(3):
            member = make_participant(session, program, at=now)
            ids.append(make_outbox_message(session, run, member, at=now).id)
            # Not due: later, or its run paused.
            later = now + timedelta(days=1)
            make_outbox_message(session, run, member, at=now, step_id="sms-1", not_before=later)
            make_outbox_message(session, paused, member, at=now)
    bar = Progress(console=Console(file=io.StringIO()))
    task = bar.add_task("dispatching", total=None)

    slow = DispatchTotal(app, bar, task, every=3600)
    assert _total(bar, task) == 3
    slow(1)  # no recount within `every`: the total stays
    assert _total(bar, task) == 3

    # Two sent by "another dispatcher", one handled here: 1 handled + 1 still due.
    with app.sessions() as session, session.begin():
        for ident in ids[:2]:
            session.get(OutboxMessage, ident).status = "sent"  # type: ignore[union-attr]
    eager = DispatchTotal(app, bar, task, every=0)
    assert _total(bar, task) == 1
    eager(1)
    assert _total(bar, task) == 2
    assert next(t.completed for t in bar.tasks if t.id == task) == 2  # both callers advanced

"""Helpers shared by the dispatch tests."""

from __future__ import annotations

from engine.app import App
from engine.testing import (
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)


def queue_emails(app: App, n: int) -> list[str]:
    """``n`` queued emails of one new run, each to its own opted-in member; their uids."""
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
        uids = []
        for _ in range(n):
            member = make_participant(session, program, at=now)
            make_consent(session, member, channel="email", status="opted_in", at=now)
            uids.append(make_outbox_message(session, run, member, at=now).uid)
    return uids

"""Helpers shared by the dispatch tests."""

from __future__ import annotations

from typing import Any

from engine.app import App
from engine.db.models import OutboxMessage
from engine.testing.fakes import (
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)


def queue_messages(
    app: App, n: int = 1, channel: str = "email", timezone: str | None = None, **message: Any
) -> list[OutboxMessage]:
    """``n`` messages on ``channel`` of one new run (``message``: their fields, queued by
    default), each to its own member opted in on it (in ``timezone``, when given)."""
    now = app.clock.now()
    member_fields = {"timezone": timezone} if timezone else {}
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
        out = []
        for _ in range(n):
            member = make_participant(session, program, at=now, **member_fields)
            make_consent(session, member, channel=channel, status="opted_in", at=now)
            out.append(
                make_outbox_message(session, run, member, at=now, channel=channel, **message)
            )
        return out


def queue_email_messages(app: App, n: int = 1, **message: Any) -> list[OutboxMessage]:
    """``n`` emails of one new run, each to its own opted-in member."""
    return queue_messages(app, n, **message)


def queue_emails(app: App, n: int) -> list[str]:
    """``n`` queued emails of one new run: their uids."""
    return [message.uid for message in queue_email_messages(app, n)]

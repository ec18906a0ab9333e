"""Settling unknown messages at scale: `outbox unknown` pages (--limit/--after, --json) and
`outbox resolve` settles many at once (--all, --run, --since)."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from dispatch_helpers import queue_email_messages
from sqlalchemy import func, select, update

from cli import cli
from engine.app import App
from engine.db.models import Contact, OutboxMessage
from engine.sending.outbox import count_unknown, resolve_many, unknown_messages
from engine.testing.fakes import FrozenClock


def _cli(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        env={"CAMPAIGN_OUTBOX_DIR": str(app.settings.outbox_dir)},
    )
    return result.exit_code, result.output


def _status(app: App) -> dict[int, str]:
    with app.sessions() as session:
        return dict(session.execute(select(OutboxMessage.id, OutboxMessage.status)).all())


def test_unknown_messages_come_a_page_at_a_time(app: App) -> None:
    messages = queue_email_messages(app, 7, status="unknown")
    ids = [m.id for m in messages]
    seen: list[int] = []
    after: list[str] = []
    while True:
        code, output = _cli(app, "outbox", "unknown", "--limit", "3", *after, "--json")
        assert code == 0, output
        page = [m["id"] for m in json.loads(output)]
        if not page:
            break
        assert len(page) <= 3
        seen += page
        after = ["--after", str(page[-1])]
    assert seen == sorted(ids)
    code, output = _cli(app, "outbox", "unknown", "--limit", "3")
    assert code == 0 and "7 message(s) of unknown fate; next page: --after" in output


def test_resolve_all_sent_writes_each_contact_once(app: App, clock: FrozenClock) -> None:
    first = queue_email_messages(app, 3, status="unknown")
    other = queue_email_messages(app, 2, status="unknown")
    queued = queue_email_messages(app, 1)

    code, output = _cli(app, "outbox", "resolve", "--sent", "--run", str(first[0].run_id))
    assert code == 0 and "3 message(s) of unknown fate -> sent" in output, output
    statuses = _status(app)
    assert {statuses[m.id] for m in first} == {"sent"}
    assert {statuses[m.id] for m in other} == {"unknown"}
    with app.sessions() as session:
        contacts = session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(Contact.message_id.in_([m.id for m in first]))
        )
        assert contacts == 3

    code, output = _cli(app, "outbox", "resolve", "--resend", "--all", "--json")
    assert code == 0 and json.loads(output)["count"] == 2
    statuses = _status(app)
    assert {statuses[m.id] for m in other} == {"queued"}
    assert statuses[queued[0].id] == "queued"  # untouched: it was never unknown


def test_resolve_many_since_and_refusals(app: App, clock: FrozenClock) -> None:
    old, new = queue_email_messages(app, 2, status="unknown")
    with app.sessions() as session, session.begin():
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == old.id)
            .values(updated_at=clock.now() - timedelta(days=3))
        )
    with app.sessions() as session, session.begin():
        since = clock.now() - timedelta(days=1)
        assert count_unknown(session, since=since) == 1
        assert [m.id for m in unknown_messages(session, since=since)] == [new.id]
        assert resolve_many(session, "failed", at=clock.now(), since=since).count == 1
    assert _status(app) == {old.id: "unknown", new.id: "failed"}

    code, output = _cli(app, "outbox", "resolve", "--sent")
    assert code == 2 and "--all/--run/--since" in output
    code, output = _cli(app, "outbox", "resolve", str(old.id), "--sent", "--all")
    assert code == 2 and "not both" in output
    code, output = _cli(app, "outbox", "resolve", "--sent", "--run", "999")
    assert code == 1 and "no campaign run 999" in output and "Traceback" not in output

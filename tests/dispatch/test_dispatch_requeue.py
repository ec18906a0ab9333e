"""`campaign outbox requeue`: failed messages that never went are queued again in bulk and
gated again as usual; a message that did go stays failed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from dispatch_helpers import queue_email_messages
from sqlalchemy import update

from cli import cli
from engine.app import App
from engine.consent.suppressions import add_suppression
from engine.db.models import OutboxMessage
from engine.sending.dispatch import dispatch
from engine.testing.fakes import FrozenClock, RecordingChannel

ROOT = Path(__file__).resolve().parents[2]


def _fail(app: App, ids: list[int], reason: str, *, sent: bool = False, at: object = None) -> None:
    with app.sessions() as session, session.begin():
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status="failed",
                status_reason=reason,
                attempts=5,
                sent_at=app.clock.now() if sent else None,
                updated_at=at or app.clock.now(),
            )
        )


def _cli(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        env={"CAMPAIGN_OUTBOX_DIR": str(app.settings.outbox_dir)},
    )
    return result.exit_code, result.output


def _rows(app: App) -> dict[int, OutboxMessage]:
    with app.sessions() as session:
        return {m.id: m for m in session.query(OutboxMessage)}


def test_requeue_failed_messages_by_reason_run_and_time(app: App, clock: FrozenClock) -> None:
    outage = queue_email_messages(app, 4)
    other_run = queue_email_messages(app, 1)
    refused = queue_email_messages(app, 1)
    went = queue_email_messages(app, 1)
    old = clock.now() - timedelta(days=2)
    _fail(app, [m.id for m in outage[:3]], "too_many_attempts")
    _fail(app, [outage[3].id], "too_many_attempts", at=old)
    _fail(app, [other_run[0].id], "too_many_attempts")
    _fail(app, [refused[0].id], "recipient_21211")
    _fail(app, [went[0].id], "too_many_attempts", sent=True)  # accepted, then reported failed

    since = (clock.now() - timedelta(hours=1)).isoformat()
    code, output = _cli(
        app,
        "outbox",
        "requeue",
        "--status",
        "failed",
        "--reason",
        "too_many_attempts",
        "--run",
        str(outage[0].run_id),
        "--since",
        since,
        "--json",
    )
    assert code == 0, output
    assert json.loads(output)["count"] == 3

    rows = _rows(app)
    for message in outage[:3]:
        row = rows[message.id]
        assert (row.status, row.attempts, row.status_reason) == ("queued", 0, "requeued by hand")
    assert rows[outage[3].id].status == "failed"  # failed before --since
    assert rows[other_run[0].id].status == "failed"  # another run
    assert rows[refused[0].id].status == "failed"  # another reason
    assert rows[went[0].id].status == "failed"  # it went: never again

    # Gated again as usual: a suppression made since wins. (The command ran on the real
    # clock: the messages are due from then on, so the test's clock goes there, at noon UTC
    # so that the members' send window is open.)
    due = max(rows[m.id].not_before for m in outage[:3])
    clock.advance(due.replace(hour=16) + timedelta(days=1) - clock.now())
    with app.sessions() as session, session.begin():
        member = session.get(OutboxMessage, outage[0].id)
        assert member is not None and member.to_address
        add_suppression(session, member.to_address, "email", "opt_out", "test", at=clock.now())
    channel = RecordingChannel("email")
    summary = dispatch(app, {"email": channel}, worker="w")
    assert summary.sent == 2 and summary.skipped == {"suppressed": 1}

    code, output = _cli(app, "outbox", "requeue", "--reason", "too_many_attempts")
    assert code == 0 and "2 failed message(s) queued again" in output


def test_requeue_refuses_what_it_cannot_do(app: App) -> None:
    code, output = _cli(app, "outbox", "requeue", "--run", "999")
    assert code != 0 and "no campaign run 999" in output and "Traceback" not in output
    code, output = _cli(app, "outbox", "requeue", "--since", "yesterday-ish")
    assert code != 0 and "--since" in output and "Traceback" not in output
    code, output = _cli(app, "outbox", "requeue", "--status", "unknown")
    assert code != 0 and "Traceback" not in output

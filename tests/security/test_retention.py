"""Message contents are not kept forever (issue #17): the tick empties the rendered content
and address of settled messages older than the retention, and every report count stays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.db.models import OutboxMessage
from engine.retention import purge_message_contents
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run, unit
from engine.tick import tick


def test_the_tick_purges_old_settled_messages_and_keeps_the_rest(app: App, tmp_path: Path) -> None:
    now = app.clock.now()
    old = now - timedelta(days=91)
    with unit(app) as s:
        program = make_program(s, at=old)
        run = make_run(s, program, at=old)
        for i, status in enumerate(["sent", "delivered", "bounced", "queued", "unknown"]):
            member = make_participant(s, program, at=old)
            message = make_outbox_message(
                s,
                run,
                member,
                at=old,
                status=status,
                to_address=f"m{i}@example.com",
                content={"subject": "Hi", "text": "Dear Alex", "html": "", "headers": {}},
                not_before=now + timedelta(days=1),  # the queued one is not due this tick
            )
            message.created_at = old
        young = make_participant(s, program, at=now)
        make_outbox_message(
            s, run, young, at=now, status="sent", to_address="young@example.com",
            content={"subject": "Hi", "text": "Dear Sam", "html": "", "headers": {}},
        )  # fmt: skip
    settings = app.settings.model_copy(update={"campaigns_dir": tmp_path, "outbox_dir": tmp_path})
    ticking = build_app(settings, clock=FrozenClock(now))
    try:
        summary = tick(ticking, budget_seconds=30)
    finally:
        ticking.close()
    assert summary.contents_purged == 3
    assert "old message contents emptied (retention): 3" in summary.message
    with app.sessions() as s:
        messages = list(s.scalars(select(OutboxMessage)))
        rows = {m.to_address: m for m in messages}
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 6
        purged = [m for m in messages if m.to_address is None]
        assert len(purged) == 3 and all(m.content == {} for m in purged)
        assert {m.status for m in purged} == {"sent", "delivered", "bounced"}
        # Still to be sent or settled: kept whole; a young message: kept whole.
        for address in ("m3@example.com", "m4@example.com", "young@example.com"):
            assert rows[address].content["text"].startswith("Dear")
    with unit(app) as s:
        assert purge_message_contents(s, at=now, keep_days=90) == 0  # nothing left to do
        assert purge_message_contents(s, at=now, keep_days=1, limit=10) == 0
        assert purge_message_contents(s, at=now + timedelta(days=2), keep_days=1) == 1

"""An opt-out is honoured before the next request, not the next batch (#16): a suppression
committed while a slow batch is being sent stops the messages of that batch not yet sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dispatch_helpers import queue_messages
from sqlalchemy import select

from engine.app import App
from engine.channels.base import Outbound, SendResult
from engine.consent.suppressions import add_suppression
from engine.db.models import OutboxMessage
from engine.db.session import take_write_lock
from engine.sending.dispatch import dispatch
from engine.sending.gate import SUPPRESSION_RECHECK_SECONDS
from engine.settings import Settings
from engine.testing.fakes import FrozenClock, RecordingChannel


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # One request at a time: the next one starts only once the slow one has come back.
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        dispatch_max_in_flight=1,
        dispatch_sms_rate=1000,
        dispatch_email_rate=1000,
    )


class SlowProvider(RecordingChannel):
    """Takes its time over each message; while the first is on its way, ``during_first``
    runs (a member replies STOP, say) and is committed before the answer comes."""

    def __init__(self, kind: str, during_first: object) -> None:
        super().__init__(kind)
        self.during_first = during_first

    def send(self, message: Outbound) -> SendResult:
        if not self.attempts and callable(self.during_first):
            self.during_first()
        # Longer than the re-check interval: the next request must read suppressions again.
        time.sleep(SUPPRESSION_RECHECK_SECONDS + 0.05)
        return super().send(message)


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_suppression_committed_mid_batch_stops_the_next_message(
    app: App, clock: FrozenClock, channel: str
) -> None:
    first, second, third = queue_messages(app, 3, channel)

    def opt_out_second() -> None:
        with app.sessions() as session, session.begin():
            take_write_lock(session)  # as the webhook does: wait for the dispatcher's writes
            add_suppression(
                session, second.to_address or "", channel, "opt_out", "twilio_stop", at=clock.now()
            )

    provider = SlowProvider(channel, opt_out_second)
    summary = dispatch(app, {channel: provider}, worker="w")

    assert [m.message_id for m in provider.attempts] == [first.uid, third.uid]
    assert summary.sent == 2 and summary.skipped == {"suppressed": 1}
    with app.sessions() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.id == second.id)).one()
    assert (row.status, row.status_reason) == ("skipped", "suppressed")

"""A batch claimed ahead has its gate facts read while the batch before it is sent. When that
batch is held up (a slow SMS rate), the facts are older than FACTS_MAX_AGE_SECONDS by the time
the batch's turn comes, and are read again: a suppression made meanwhile must win.

Ordering, without relying on luck: the first send of batch 1 waits until batch 2's facts have
been read (a hook on the dispatcher's fact reader), and only then is the member of batch 2
suppressed. Batch 1's next two messages are spaced by the token bucket: the second reserves
its slot after that read, the third one interval (2 s at 0.5 SMS/s) later, so batch 2's turn
comes at least 2 s after its facts were read, twice the 1 s after which they are stale.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.app import App, build_app
from engine.channels.base import Outbound, SendResult
from engine.channels.twilio import TwilioChannel
from engine.consent.suppressions import add_suppression
from engine.db.models import OutboxMessage, Participant
from engine.sending import gate as gate_module
from engine.sending.dispatch import dispatch
from engine.settings import Settings
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import (
    FrozenClock,
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)

SMS_RATE = 0.5  # one SMS per 2 s: twice engine.sending.gate.FACTS_MAX_AGE_SECONDS (1 s)
WAIT_FOR_READ_SECONDS = 60.0  # only a broken dispatcher ever waits this long


class HookedChannel:
    """A real channel with a hook run before each send."""

    def __init__(self, inner: TwilioChannel, before_send: Any) -> None:
        self.inner = inner
        self.before_send = before_send
        self.name = inner.name

    def send(self, message: Outbound) -> SendResult:
        self.before_send(message)
        return self.inner.send(message)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def slow_sms_app(database_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    # Claims of 3: batch 1 is three texts, batch 2 the next two.
    settings = Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        dispatch_sms_rate=SMS_RATE,
        dispatch_batch_size=3,
    )
    application = build_app(settings, clock=clock)
    yield application
    application.close()


def _members(app: App, count: int) -> list[tuple[Participant, OutboxMessage]]:
    now = app.clock.now()
    out = []
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
        for index in range(count):
            member = make_participant(session, program, at=now, timezone="America/New_York")
            make_consent(session, member, channel="sms", status="opted_in", at=now)
            # Distinct due times: claims take them in this order.
            due = now - timedelta(minutes=count - index)
            message = make_outbox_message(
                session, run, member, at=now, channel="sms", not_before=due
            )
            out.append((member, message))
    return out


def test_a_suppression_made_while_a_claimed_batch_waits_wins(
    slow_sms_app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = slow_sms_app
    (first, _), second, third, (late, late_message), (fine, _) = _members(app, 5)
    first_batch_phones = {first.phone, second[0].phone, third[0].phone}

    # Signal once batch 2 (late, fine) has had its facts read, before any suppression.
    batch_two_read = threading.Event()
    read_batches: list[set[int]] = []
    load_facts = gate_module.load_facts

    def reading(shared: Any, rows: Sequence[Any], channel: str) -> Any:
        facts = load_facts(shared, rows, channel)
        members = {row.participant_id for row in rows}
        read_batches.append(members)
        if late.id in members:
            batch_two_read.set()
        return facts

    monkeypatch.setattr(gate_module, "load_facts", reading)

    suppressed = threading.Event()

    def before_send(message: Outbound) -> None:
        if suppressed.is_set():
            return
        # The first text of batch 1: batch 2 has been claimed and read meanwhile; now the
        # late member opts out, while batch 2 waits behind the slow batch 1.
        assert batch_two_read.wait(WAIT_FOR_READ_SECONDS), "batch 2 was never claimed ahead"
        with app.sessions() as session, session.begin():
            add_suppression(session, late.phone or "", "sms", "opt_out", "test", at=clock.now())
        suppressed.set()

    with FakeTwilio() as twilio:
        channel = HookedChannel(
            TwilioChannel(
                twilio.account_sid,
                twilio.auth_token,
                from_number="+12025550100",
                base_url=twilio.url,
                clock=clock,
            ),
            before_send,
        )
        try:
            summary = dispatch(app, {"sms": channel}, worker="w")
        finally:
            channel.close()
        received = [r.form["To"][0] for r in twilio.requests if r.form is not None]

    # Batch 2 was read while batch 1 was sent (the setup worked as intended)...
    assert read_batches[0] == {first.id, second[0].id, third[0].id}
    assert {late.id, fine.id} <= read_batches[1]
    # ... and the suppression made after that read won: the late member never reached
    # Twilio, and the row says why.
    assert late.phone not in received
    assert set(received) == first_batch_phones | {fine.phone}
    assert summary.sent == 4 and summary.skipped == {"suppressed": 1}
    with app.sessions() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.id == late_message.id))
    assert row is not None and (row.status, row.status_reason) == ("skipped", "suppressed")

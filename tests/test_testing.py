from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine.app import App
from engine.channels.base import (
    CampaignStopError,
    Channel,
    ChannelError,
    OutboundEmail,
    OutboundSms,
    RecipientError,
    RetryableError,
)
from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Participant
from engine.testing.fakes import RecordingChannel, make_event, make_participant, make_program


def test_builders_insert_rows_the_database_accepts(app: App, clock: FrozenClock) -> None:
    now = clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        assert make_program(session, at=now).id == program.id  # idempotent by key
        alice = make_participant(session, program, at=now, first_name="Alice")
        make_participant(session, program, at=now)
        make_event(session, alice, type="login", occurred_at=now - timedelta(days=1))
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 2
        event = session.scalars(select(ActivityEvent)).one()
        assert event.occurred_at == now - timedelta(days=1)
        assert event.occurred_at.tzinfo is not None


def test_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    first = clock.now()
    assert clock.now() == first
    clock.advance(timedelta(hours=2))
    assert clock.now() - first == timedelta(hours=2)


def _recorded_email(message_id: str) -> OutboundEmail:
    return OutboundEmail(
        message_id=message_id,
        to_email="a@example.com",
        from_email="rewards@example.com",
        subject="s",
        text="t",
    )


def test_recording_channel_records_sends_and_fails_when_told() -> None:
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    channel = RecordingChannel("email", clock=clock)
    assert isinstance(channel, Channel)

    first = channel.send(_recorded_email("m1"))
    assert first.accepted_at == clock.now() and first.provider_message_id == "recording-1"

    channel.fail_next(RetryableError("throttled", retry_after=5), CampaignStopError("revoked"))
    with pytest.raises(RetryableError):
        channel.send(_recorded_email("m2"))
    with pytest.raises(CampaignStopError):
        channel.send(_recorded_email("m2"))
    channel.send(_recorded_email("m2"))  # the queue of failures is used up

    channel.fail_for("m3", RecipientError("21610", "opted out", suppress=True))
    for _ in range(2):
        with pytest.raises(RecipientError):
            channel.send(_recorded_email("m3"))

    assert channel.sent_ids == ["m1", "m2"]
    assert [m.message_id for m in channel.attempts] == ["m1", "m2", "m2", "m2", "m3", "m3"]
    assert [r.provider_message_id for r in channel.results] == ["recording-1", "recording-2"]


def test_recording_channel_refuses_the_wrong_kind_and_sends_after_close() -> None:
    channel = RecordingChannel("sms")
    with pytest.raises(ChannelError, match="sends sms"):
        channel.send(_recorded_email("m1"))
    channel.send(OutboundSms(message_id="s1", to="+12025550123", body="hi"))
    channel.close()
    with pytest.raises(ChannelError, match="closed"):
        channel.send(OutboundSms(message_id="s2", to="+12025550123", body="hi"))
    assert channel.sent_ids == ["s1"] and channel.attempts == channel.sent

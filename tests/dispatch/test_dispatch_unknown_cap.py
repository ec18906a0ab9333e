"""A message of unknown fate (the dispatcher lost track of it after the request may have gone)
counts toward the frequency cap until it is settled: ``resolve --sent`` makes it a contact
(counted once, at the same instant), ``--failed`` drops it, ``--resend`` counts it again only
when it is sent again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from engine.app import App, build_app
from engine.channels.base import UnknownOutcomeError
from engine.db.models import CampaignRun, Contact, OutboxMessage, Participant
from engine.sending.dispatch import dispatch
from engine.sending.outbox import resolve
from engine.settings import Settings
from engine.testing.fakes import (
    FrozenClock,
    RecordingChannel,
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)

WEEK = timedelta(days=7)


def _capped_app(settings: Settings, clock: FrozenClock, most: int) -> Iterator[App]:
    """An app whose global cap is ``most`` contacts per 7 days."""
    capped = {"frequency_cap_max": most, "frequency_cap_per": WEEK}
    application = build_app(settings.model_copy(update=capped), clock=clock)
    yield application
    application.close()


@pytest.fixture
def capped(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    yield from _capped_app(settings, clock, 1)


@pytest.fixture
def capped_at_two(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    yield from _capped_app(settings, clock, 2)


def _member(app: App) -> tuple[CampaignRun, Participant]:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
        member = make_participant(session, program, at=now, timezone="America/New_York")
        make_consent(session, member, channel="email", status="opted_in", at=now)
    return run, member


def _queue(app: App, run: CampaignRun, member: Participant, step: str) -> OutboxMessage:
    with app.sessions() as session, session.begin():
        return make_outbox_message(session, run, member, at=app.clock.now(), step_id=step)


def _row(app: App, message: OutboxMessage) -> OutboxMessage:
    with app.sessions() as session:
        row = session.get(OutboxMessage, message.id)
        assert row is not None
        return row


def _contacts(app: App, member: Participant) -> list[datetime]:
    with app.sessions() as session:
        return list(
            session.scalars(
                select(Contact.occurred_at)
                .where(Contact.participant_id == member.id)
                .order_by(Contact.occurred_at)
            )
        )


def _resolve(app: App, message: OutboxMessage, action: str) -> None:
    with app.sessions() as session, session.begin():
        resolve(session, message.uid, action, at=app.clock.now())  # type: ignore[arg-type]


def _lose(app: App, channel: RecordingChannel, message: OutboxMessage) -> datetime:
    """Dispatch ``message`` with the provider's answer lost; returns when that happened."""
    channel.fail_next(UnknownOutcomeError("read timeout after the request was sent"))
    summary = dispatch(app, {"email": channel}, worker="w")
    assert summary.unknown == 1 and _row(app, message).status == "unknown"
    return app.clock.now()


def test_an_unknown_message_caps_until_resolved_failed(capped: App, clock: FrozenClock) -> None:
    app = capped
    run, member = _member(app)
    channel = RecordingChannel("email", clock=clock)
    lost = _queue(app, run, member, "email-1")
    went = _lose(app, channel, lost)
    assert _contacts(app, member) == []  # not in the ledger: it may not have gone

    clock.advance(timedelta(hours=1))
    second = _queue(app, run, member, "email-2")
    summary = dispatch(app, {"email": channel}, worker="w")

    # Counted from when it went, as a sent message would be: waits for it to leave the week.
    assert summary.waiting == 1 and summary.sent == 0
    row = _row(app, second)
    assert row.status_reason == "waiting: frequency_cap"
    assert row.not_before == went + WEEK
    assert [m.message_id for m in channel.attempts] == [lost.uid]

    _resolve(app, lost, "failed")
    third = _queue(app, run, member, "email-3")
    summary = dispatch(app, {"email": channel}, worker="w")

    # It never reached them: nothing counts any more.
    assert summary.sent == 1 and channel.sent_ids == [third.uid]
    assert _contacts(app, member) == [clock.now()]


def test_resolved_sent_becomes_one_contact_at_the_same_instant(
    capped_at_two: App, clock: FrozenClock
) -> None:
    app = capped_at_two
    run, member = _member(app)
    channel = RecordingChannel("email", clock=clock)
    lost = _queue(app, run, member, "email-1")
    went = _lose(app, channel, lost)

    clock.advance(timedelta(hours=1))
    _resolve(app, lost, "sent")
    assert _contacts(app, member) == [went]

    # Max 2: the settled message counts once, so one more may go...
    second = _queue(app, run, member, "email-2")
    assert dispatch(app, {"email": channel}, worker="w").sent == 1
    assert channel.sent_ids == [second.uid]
    sent_at = clock.now()
    # ... and then the cap is full until the settled one, counted at `went`, leaves the week.
    third = _queue(app, run, member, "email-3")
    summary = dispatch(app, {"email": channel}, worker="w")
    assert summary.waiting == 1
    assert _row(app, third).not_before == went + WEEK
    assert _contacts(app, member) == [went, sent_at]


def test_resent_message_counts_once_when_it_goes_again(capped: App, clock: FrozenClock) -> None:
    app = capped
    run, member = _member(app)
    channel = RecordingChannel("email", clock=clock)
    lost = _queue(app, run, member, "email-1")
    _lose(app, channel, lost)

    clock.advance(timedelta(hours=1))
    _resolve(app, lost, "resend")
    second = _queue(app, run, member, "email-2")
    summary = dispatch(app, {"email": channel}, worker="w")

    # Queued again, it no longer counts as unknown: it goes (max 1), and then it is the one
    # contact the cap sees.
    resent = clock.now()
    assert summary.sent == 1 and summary.waiting == 1
    assert channel.sent_ids == [lost.uid]
    assert _contacts(app, member) == [resent]
    assert _row(app, second).not_before == resent + WEEK


def test_a_lease_that_ran_out_counts_from_the_lease_not_from_when_it_was_noticed(
    capped: App, clock: FrozenClock
) -> None:
    """A dispatcher died mid-send: the next dispatcher marks the row unknown (updated_at is
    then, possibly much later), but the message went while the lease ran."""
    app = capped
    run, member = _member(app)
    stuck = _queue(app, run, member, "email-1")
    lease_end = clock.now() - timedelta(days=2)
    with app.sessions() as session, session.begin():
        row = session.get(OutboxMessage, stuck.id)
        assert row is not None
        row.status, row.claimed_by, row.claimed_until = "sending", "dead-worker", lease_end
    second = _queue(app, run, member, "email-2")
    channel = RecordingChannel("email", clock=clock)

    summary = dispatch(app, {"email": channel}, worker="w")

    assert summary.expired_leases == 1 and summary.waiting == 1 and channel.attempts == []
    assert _row(app, stuck).status == "unknown"
    assert _row(app, second).not_before == lease_end + WEEK

    # Settled as sent, it is a contact at that same instant: the wait does not move.
    _resolve(app, stuck, "sent")
    assert _contacts(app, member) == [lease_end]
    third = _queue(app, run, member, "email-3")
    dispatch(app, {"email": channel}, worker="w")
    assert _row(app, third).not_before == lease_end + WEEK and channel.attempts == []


def test_an_unknown_message_outside_the_window_does_not_count(
    capped: App, clock: FrozenClock
) -> None:
    app = capped
    run, member = _member(app)
    channel = RecordingChannel("email", clock=clock)
    _lose(app, channel, _queue(app, run, member, "email-1"))

    clock.advance(WEEK + timedelta(seconds=1))
    second = _queue(app, run, member, "email-2")

    assert dispatch(app, {"email": channel}, worker="w").sent == 1
    assert channel.sent_ids == [second.uid]

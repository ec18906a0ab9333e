"""dispatch() with RecordingChannel: claims, records, the send-time gate, run states."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.app import App, build_app
from engine.channels.base import Outbound, OutboundEmail, OutboundSms, SendResult
from engine.consent.suppressions import add_suppression
from engine.db.models import CampaignRun, Contact, OutboxMessage, Participant, Program
from engine.runs import cancel_run, pause_run
from engine.sending.dispatch import dispatch
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


def _channels(clock: FrozenClock) -> dict[str, RecordingChannel]:
    return {
        "email": RecordingChannel("email", clock=clock),
        "sms": RecordingChannel("sms", clock=clock),
    }


def _setup(app: App) -> tuple[Program, CampaignRun]:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = make_run(session, program, at=now)
    return program, run


def _member(app: App, program: Program, **fields: object) -> Participant:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        values: dict[str, object] = {"timezone": "America/New_York", **fields}
        member = make_participant(session, program, at=now, **values)
        for channel in ("email", "sms"):
            make_consent(session, member, channel=channel, status="opted_in", at=now)
    return member


def _queue(app: App, run: CampaignRun, member: Participant, **kw: object) -> OutboxMessage:
    with app.sessions() as session, session.begin():
        return make_outbox_message(session, run, member, at=app.clock.now(), **kw)  # type: ignore[arg-type]


def _row(app: App, message_id: int) -> OutboxMessage:
    with app.sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return row


def test_sends_due_messages_records_them_and_the_contact(app: App, clock: FrozenClock) -> None:
    program, run = _setup(app)
    members = [_member(app, program) for _ in range(3)]
    emails = [_queue(app, run, m) for m in members]
    # 13:00 in New York on TEST_NOW's day is inside the 08:00-21:00 SMS window.
    texts = [_queue(app, run, m, channel="sms") for m in members[:2]]
    later = _queue(
        app,
        run,
        members[2],
        channel="sms",
        step_id="sms-2",
        not_before=clock.now() + timedelta(hours=1),
    )
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w1")

    assert summary.sent == 5 and summary.claimed == 5
    assert sorted(channels["email"].sent_ids) == sorted(m.uid for m in emails)
    assert sorted(channels["sms"].sent_ids) == sorted(m.uid for m in texts)
    first = channels["email"].sent[0]
    assert isinstance(first, OutboundEmail)
    assert first.subject and first.subject.startswith("Hello")
    assert first.categories == ("test-campaign",)
    assert first.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    sms = channels["sms"].sent[0]
    assert isinstance(sms, OutboundSms)
    assert sms.status_callback == f"http://127.0.0.1:8000/webhooks/twilio/status?m={sms.message_id}"
    row = _row(app, emails[0].id)
    assert row.status == "sent" and row.provider == "recording"
    assert row.provider_message_id and row.sent_at == clock.now() and row.attempts == 1
    assert row.claimed_by == "w1"
    assert _row(app, later.id).status == "queued"  # not due yet
    with app.sessions() as session:
        contacts = session.scalar(select(func.count()).select_from(Contact))
    assert contacts == 5

    # Nothing is sent twice: a second pass finds nothing due.
    again = dispatch(app, channels, worker="w1")
    assert again.sent == 0 and len(channels["email"].attempts) == 3


def test_opt_out_and_suppression_after_queueing_win(app: App, clock: FrozenClock) -> None:
    program, run = _setup(app)
    opted_out, suppressed, fine = (_member(app, program) for _ in range(3))
    messages = {m.id: _queue(app, run, m, channel="sms") for m in (opted_out, suppressed, fine)}
    with app.sessions() as session, session.begin():
        make_consent_change = session.get(Participant, opted_out.id)
        assert make_consent_change is not None
        from engine.db.models import Consent

        consent = session.scalar(
            select(Consent).where(Consent.participant_id == opted_out.id, Consent.channel == "sms")
        )
        assert consent is not None
        consent.status = "opted_out"
        add_suppression(session, suppressed.phone or "", "sms", "opt_out", "test", at=clock.now())
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 1 and summary.skipped == {"opted_out": 1, "suppressed": 1}
    assert channels["sms"].sent_ids == [messages[fine.id].uid]
    assert _row(app, messages[opted_out.id].id).status_reason == "opted_out"
    assert _row(app, messages[suppressed.id].id).status == "skipped"


def test_outside_the_window_waits_until_it_opens(app: App, clock: FrozenClock) -> None:
    program, run = _setup(app)
    member = _member(app, program, timezone="Asia/Tokyo")  # 00:00 in Tokyo at TEST_NOW
    message = _queue(app, run, member, channel="sms")
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w")

    assert summary.waiting == 1 and channels["sms"].attempts == []
    row = _row(app, message.id)
    assert row.status == "queued" and row.attempts == 0
    assert row.status_reason == "waiting: outside_window"
    # TEST_NOW is 15:00 UTC = 00:00 in Tokyo: the window opens at 08:00 there, 8 hours later.
    assert row.not_before == clock.now() + timedelta(hours=8)

    clock.advance(timedelta(hours=8))
    assert dispatch(app, channels, worker="w").sent == 1


def test_frequency_cap_counts_the_ledger(app: App, clock: FrozenClock) -> None:
    program, run = _setup(app)
    member = _member(app, program)
    with app.sessions() as session, session.begin():
        for days in range(4):  # the global cap: 4 per 7 days (settings default)
            session.add(
                Contact(
                    participant_id=member.id,
                    channel="email",
                    run_id=None,
                    occurred_at=clock.now() - timedelta(days=days, hours=1),
                    kind="message",
                )
            )
    message = _queue(app, run, member)
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w")

    assert summary.waiting == 1 and channels["email"].attempts == []
    row = _row(app, message.id)
    assert row.status_reason == "waiting: frequency_cap"
    # The oldest of the four contacts (3 days 1 hour ago) leaves the 7-day window then.
    assert row.not_before == clock.now() - timedelta(days=3, hours=1) + timedelta(days=7)


def test_campaign_cap_is_stricter_than_the_global_one(app: App, clock: FrozenClock) -> None:
    now = clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        source = (
            "name: capped\nprogram: loyalty\naudience: {field: status, eq: active}\n"
            "holdout_percent: 0\ngoal: {events: [login], window: 30d}\n"
            "frequency_cap: {max: 1, per: 2d}\n"
            "steps:\n  - {id: email-1, channel: email, template: welcome}\n"
            "  - {id: email-2, channel: email, template: welcome}\n"
        )
        run = make_run(session, program, at=now, campaign="capped", definition_source=source)
    member = _member(app, program)
    first = _queue(app, run, member, step_id="email-1")
    second = _queue(app, run, member, step_id="email-2")
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 1 and summary.waiting == 1
    assert channels["email"].sent_ids == [first.uid]
    assert _row(app, second.id).not_before == now + timedelta(days=2)


def test_paused_run_waits_and_cancelled_run_is_skipped(app: App, clock: FrozenClock) -> None:
    now = clock.now()
    program, paused = _setup(app)
    with app.sessions() as session, session.begin():
        cancelled = make_run(session, program, at=now, campaign="other")
    member = _member(app, program)
    waiting = _queue(app, paused, member)
    dropped = _queue(app, cancelled, member)
    with app.sessions() as session, session.begin():
        pause_run(session, paused.id, at=now)
        cancel_run(session, cancelled.id, at=now)
    # cancel_run skipped the queued message at once:
    row = _row(app, dropped.id)
    assert (row.status, row.status_reason) == ("skipped", "run_cancelled")
    # ... and one a racing sequencer queued after the cancel is skipped by the dispatcher.
    late = _queue(app, cancelled, _member(app, program))
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 0 and channels["email"].attempts == []
    assert summary.cancelled_skipped == 1
    assert _row(app, waiting.id).status == "queued"
    row = _row(app, late.id)
    assert (row.status, row.status_reason) == ("skipped", "run_cancelled")


def test_a_run_completes_only_after_its_last_message_went(app: App, clock: FrozenClock) -> None:
    from engine.db.models import Enrollment
    from engine.sequencing import advance

    program, run = _setup(app)
    member = _member(app, program)
    message = _queue(app, run, member)
    with app.sessions() as session, session.begin():
        enrollment = session.get(Enrollment, message.enrollment_id)
        assert enrollment is not None
        enrollment.state, enrollment.next_action_at = "completed", None  # its last step made
    # Every step is made, the message waits: the run is active, so it sends (and can be paused).
    assert advance(app, at=clock.now()).runs_completed == []
    channels = _channels(clock)
    assert dispatch(app, channels, worker="w").sent == 1
    assert channels["email"].sent_ids == [message.uid]
    assert advance(app, at=clock.now()).runs_completed == [run.id]


def test_converted_enrollment_is_skipped(app: App, clock: FrozenClock) -> None:
    from engine.db.models import Enrollment

    program, run = _setup(app)
    member = _member(app, program)
    message = _queue(app, run, member)
    with app.sessions() as session, session.begin():
        enrollment = session.get(Enrollment, message.enrollment_id)
        assert enrollment is not None
        enrollment.state = "converted"
    channels = _channels(clock)
    summary = dispatch(app, channels, worker="w")
    assert summary.skipped == {"converted": 1} and channels["email"].attempts == []


def test_max_messages_and_stop(app: App, clock: FrozenClock) -> None:
    import threading

    program, run = _setup(app)
    members = [_member(app, program) for _ in range(5)]
    for member in members:
        _queue(app, run, member)
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w", max_messages=2)
    assert summary.sent == 2 and summary.stopped_by == "max_messages"

    stop = threading.Event()
    stop.set()
    assert dispatch(app, channels, worker="w", stop=stop).sent == 0

    seen: list[int] = []
    rest = dispatch(app, channels, worker="w", progress=seen.append)
    assert rest.sent == 3 and sum(seen) == 3
    with app.sessions() as session:
        statuses = set(session.scalars(select(OutboxMessage.status)))
    assert statuses == {"sent"}


def test_workers_share_the_queue_without_sending_twice(app: App, clock: FrozenClock) -> None:
    program, run = _setup(app)
    members = [_member(app, program) for _ in range(40)]
    for member in members:
        _queue(app, run, member)
    channels = _channels(clock)

    summary = dispatch(app, channels, worker="w", workers=3)

    assert summary.sent == 40
    ids = channels["email"].sent_ids
    assert len(ids) == len(set(ids)) == 40


def test_bad_arguments_are_clear_errors(app: App, clock: FrozenClock) -> None:
    from engine.errors import InputError

    with pytest.raises(InputError, match="--workers"):
        dispatch(app, _channels(clock), worker="w", workers=0)


def test_a_run_paused_mid_batch_keeps_the_batch_claimed_ahead_queued(
    settings: Settings, clock: FrozenClock
) -> None:
    """The next batch is claimed while one is being sent: a pause that lands in between
    still stops the run at the batch boundary, and nothing is left claimed."""
    import time

    app = build_app(settings.model_copy(update={"dispatch_batch_size": 2}), clock=clock)
    try:
        program, run = _setup(app)
        for _ in range(6):
            _queue(app, run, _member(app, program))

        class PausingChannel(RecordingChannel):
            def send(self, message: Outbound) -> SendResult:
                if not self.attempts:
                    time.sleep(0.5)  # the batch ahead is claimed meanwhile
                    with app.sessions() as session, session.begin():
                        pause_run(session, run.id, at=clock.now())
                return super().send(message)

        channels = {"email": PausingChannel("email", clock=clock)}

        summary = dispatch(app, channels, worker="w")

        assert summary.sent == 2 and len(channels["email"].sent_ids) == 2
        with app.sessions() as session:
            statuses = Counter(session.scalars(select(OutboxMessage.status)))
        assert statuses == Counter({"sent": 2, "queued": 4})
    finally:
        app.close()

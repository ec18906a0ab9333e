"""Step conditions and exits against the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from seq_helpers import DAY, HOUR, TEST_NOW, definition, enrollments, launch, messages, unit
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.app import App
from engine.consent.suppressions import add_suppression
from engine.db.models import (
    CallTask,
    Consent,
    Conversion,
    Enrollment,
    MessageEvent,
    OutboxMessage,
    Participant,
    Program,
)
from engine.sequencing import advance
from engine.testing.fakes import make_consent, make_participant

PHONES = ["+14155552671", "+14155552672", "+14155552673"]


def _three(app: App, program: Program) -> list[Participant]:
    with unit(app) as s:
        people = []
        for i, phone in enumerate(PHONES):
            p = make_participant(s, program, at=TEST_NOW, external_id=f"C{i}", phone=phone)
            for channel in ("sms", "call"):
                make_consent(s, p, channel=channel, status="opted_in", at=TEST_NOW)
            people.append(p)
        return people


def _enrollment_of(s: Session, participant_id: int) -> Enrollment:
    found = s.scalar(select(Enrollment).where(Enrollment.participant_id == participant_id))
    assert found is not None
    return found


def _converted(s: Session, p: Participant, at: datetime) -> None:
    e = _enrollment_of(s, p.id)
    s.add(
        Conversion(
            enrollment_id=e.id,
            run_id=e.run_id,
            participant_id=p.id,
            campaign=e.campaign,
            group=e.group,
            event_type="redemption",
            occurred_at=at,
            source="import",
            created_at=at,
        )
    )


def _opened(s: Session, p: Participant, at: datetime) -> None:
    s.execute(
        update(OutboxMessage).where(OutboxMessage.participant_id == p.id).values(opened_at=at)
    )


def _clicked(s: Session, p: Participant, at: datetime) -> None:
    s.execute(
        update(OutboxMessage).where(OutboxMessage.participant_id == p.id).values(clicked_at=at)
    )


def _dispatched(app: App, at: datetime) -> None:
    """What the dispatcher does to the queued messages (a condition about an earlier message
    waits until that message has gone)."""
    with unit(app) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "queued")
            .values(status="sent", sent_at=at)
        )


def _reached(s: Session, p: Participant, at: datetime) -> None:
    s.execute(update(CallTask).where(CallTask.participant_id == p.id).values(reached_at=at))


def _replied(s: Session, p: Participant, at: datetime) -> None:
    s.add(
        MessageEvent(
            participant_id=p.id,
            provider="twilio",
            provider_event_id=f"in-{p.id}",
            event="reply",
            occurred_at=at,
            received_at=at,
            detail={"body": "yes"},
        )
    )


FIRST_EMAIL = {"id": "first", "channel": "email", "template": "points_expiring"}
FIRST_CALL = {"id": "first", "channel": "call", "script": "winback"}

CASES: list[tuple[str, dict[str, Any], Callable[[Session, Participant, datetime], None]]] = [
    ("not_converted", FIRST_EMAIL, _converted),
    ("email_not_opened", FIRST_EMAIL, _opened),
    ("email_not_clicked", FIRST_EMAIL, _clicked),
    ("no_reply", FIRST_EMAIL, _replied),
    ("not_reached_by_phone", FIRST_CALL, _reached),
]


@pytest.mark.parametrize(("condition", "first", "make_true"), CASES, ids=[c[0] for c in CASES])
def test_each_condition_skips_the_step_for_whom_it_fails(
    app: App,
    program: Program,
    condition: str,
    first: dict[str, Any],
    make_true: Callable[[Session, Participant, datetime], None],
) -> None:
    people = _three(app, program)
    launch(
        app,
        definition(
            steps=[
                first,
                {
                    "id": "then",
                    "channel": "sms",
                    "template": "points_expiring",
                    "delay": "1d",
                    "condition": condition,
                },
            ]
        ),
    )
    advance(app, at=TEST_NOW)
    _dispatched(app, TEST_NOW)
    with unit(app) as s:
        make_true(s, people[0], TEST_NOW + HOUR)
    summary = advance(app, at=TEST_NOW + DAY)
    assert summary.steps_skipped == {condition: 1}
    sms = [m.participant_id for m in messages(app) if m.step_id == "then"]
    assert sorted(sms) == sorted(p.id for p in people[1:])
    # The skipped step still moves the sequence on: everyone is done.
    assert {e.state for e in enrollments(app)} == {"completed"}


def test_a_reply_before_enrollment_is_not_a_reply(app: App, program: Program) -> None:
    people = _three(app, program)
    launch(
        app,
        definition(
            steps=[
                FIRST_EMAIL,
                {"id": "then", "channel": "sms", "template": "points_expiring", "delay": "1d"},
                {
                    "id": "last",
                    "channel": "email",
                    "template": "points_expiring",
                    "delay": "1d",
                    "condition": "no_reply",
                },
            ]
        ),
    )
    with unit(app) as s:
        _replied(s, people[0], TEST_NOW - DAY)
    for day in range(3):
        summary = advance(app, at=TEST_NOW + day * DAY)
        _dispatched(app, TEST_NOW + day * DAY)
        assert summary.steps_skipped == {}
    assert len(messages(app)) == 9


def test_converted_enrollments_are_no_longer_advanced(app: App, program: Program) -> None:
    people = _three(app, program)
    launch(app, definition())
    with unit(app) as s:
        s.execute(
            update(Enrollment)
            .where(Enrollment.participant_id == people[0].id)
            .values(state="converted", next_action_at=None)
        )
    summary = advance(app, at=TEST_NOW)
    assert summary.enrollments == 2
    assert people[0].id not in {m.participant_id for m in messages(app)}


def test_exit_on_opt_out_and_suppression_of_every_remaining_channel(
    app: App, program: Program
) -> None:
    people = _three(app, program)
    launch(
        app,
        definition(
            steps=[
                FIRST_EMAIL,
                {"id": "sms-1", "channel": "sms", "template": "points_expiring", "delay": "1d"},
            ]
        ),
    )
    with unit(app) as s:
        # people[0]: email suppressed and SMS opted out -> leaves the sequence
        add_suppression(s, people[0].email or "", "email", "opt_out", "test", at=TEST_NOW)
        make_consent_update(s, people[0], "sms", "opted_out")
        # people[1]: only the email is suppressed -> stays (SMS still open)
        add_suppression(s, people[1].email or "", "email", "bounce", "test", at=TEST_NOW)
        # people[2]: suppressed on "all" by phone, email still open -> stays
        add_suppression(s, PHONES[2], "all", "do_not_call", "test", at=TEST_NOW)
    summary = advance(app, at=TEST_NOW)
    assert summary.exited == 1
    by_participant = {e.participant_id: e for e in enrollments(app)}
    gone = by_participant[people[0].id]
    assert (gone.state, gone.next_action_at) == ("exited", None)
    assert gone.exit_reason == "no channel left to contact (email: suppressed, sms: opted out)"
    assert {m.participant_id for m in messages(app)} == {people[1].id, people[2].id}
    # people[1]'s email is queued all the same: the dispatcher's gate skips it at send time.
    # Later, with only the SMS step left, people[2] (phone suppressed everywhere) exits.
    later = advance(app, at=TEST_NOW + DAY)
    assert later.exited == 1 and later.messages == {"sms": 1}
    states = {e.participant_id: e.state for e in enrollments(app)}
    assert states == {people[0].id: "exited", people[1].id: "completed", people[2].id: "exited"}


def make_consent_update(s: Session, p: Participant, channel: str, status: str) -> None:
    s.execute(
        update(Consent)
        .where(Consent.participant_id == p.id, Consent.channel == channel)
        .values(status=status, recorded_at=TEST_NOW, source="test")
    )

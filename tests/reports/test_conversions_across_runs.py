"""Conversions across the overlapping runs of a recurring campaign (both databases): one event
is one conversion, credited to the member's most recent enrollment whose window holds it; the
earliest qualifying event wins whatever the order it arrives in; reports count it once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from report_helpers import enroll, event, make_run, members, message
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.app import App
from engine.conversions import match_conversions
from engine.db.models import Conversion, Enrollment
from engine.reports.campaign import campaign_report
from engine.testing.fakes import make_program

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def _conversions(app: App) -> list[Conversion]:
    with app.sessions() as session:
        return list(session.scalars(select(Conversion).order_by(Conversion.id)).all())


def test_one_redemption_converts_only_the_most_recent_overlapping_run(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        [member] = members(session, program, 1, at=T0)
        week1 = make_run(session, program, at=T0, fire_key="2026-01-05T14:00:00+00:00")
        week2 = make_run(session, program, at=T0 + WEEK, fire_key="2026-01-12T14:00:00+00:00")
        # Week 1's sequence finished; re-entry let the member into week 2 as well.
        first = enroll(session, week1, member, state="completed")
        second = enroll(session, week2, member)
        message(session, first, at=T0 + timedelta(hours=1))
        message(session, second, at=T0 + WEEK + timedelta(hours=1))
        # Inside both 30-day windows.
        event(session, member, "redemption", T0 + WEEK + timedelta(days=2), points=-1000)
        event(session, member, "renewal", T0 + timedelta(days=3), amount="25.00")

    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=T0 + 5 * WEEK) == 2
    found = {c.enrollment_id: c for c in _conversions(app)}
    # Day 3 is before week 2 began: week 1's. Day 9 is in both windows: week 2's only.
    assert found[first.id].occurred_at == T0 + timedelta(days=3)
    assert found[first.id].amount == Decimal("25.00")
    assert found[second.id].points == -1000 and found[second.id].amount is None
    assert len({c.event_id for c in found.values()}) == 2

    with app.sessions() as session:
        report = campaign_report(session, "renewal-test")
    assert report.conversions == 2
    assert report.groups["treatment"].points == -1000
    assert report.groups["treatment"].amount == Decimal("25.00")


def test_a_single_event_in_two_windows_counts_once(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        [member] = members(session, program, 1, at=T0)
        week1 = make_run(session, program, at=T0, fire_key="2026-01-05T14:00:00+00:00")
        week2 = make_run(session, program, at=T0 + WEEK, fire_key="2026-01-12T14:00:00+00:00")
        enroll(session, week1, member, state="completed")
        second = enroll(session, week2, member)
        event(session, member, "redemption", T0 + WEEK + timedelta(days=1), points=-1000)
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=T0 + 5 * WEEK) == 1
    [only] = _conversions(app)
    assert only.enrollment_id == second.id
    with app.sessions() as session:
        report = campaign_report(session, "renewal-test")
    assert report.conversions == 1 and report.groups["treatment"].points == -1000


def test_the_database_refuses_a_second_conversion_of_one_event(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        [member] = members(session, program, 1, at=T0)
        week1 = make_run(session, program, at=T0, fire_key="a")
        week2 = make_run(session, program, at=T0 + WEEK, fire_key="b")
        enrollments = [enroll(session, week1, member), enroll(session, week2, member)]
        ev = event(session, member, "redemption", T0 + WEEK + timedelta(days=1))
    rows = [
        Conversion(
            enrollment_id=e.id,
            run_id=e.run_id,
            participant_id=member.id,
            campaign=e.campaign,
            group="treatment",
            event_id=ev.id,
            event_type="redemption",
            occurred_at=ev.occurred_at,
            source="import",
            created_at=T0,
        )
        for e in enrollments
    ]
    with pytest.raises(IntegrityError), app.sessions() as session, session.begin():
        session.add_all(rows)


def test_an_earlier_event_arriving_late_replaces_the_conversion(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        [member] = members(session, program, 1, at=T0)
        run = make_run(session, program, at=T0)
        enrollment = enroll(session, run, member)
        early_mail = message(session, enrollment, at=T0 + timedelta(hours=1), step="email-1")
        late_mail = message(
            session, enrollment, at=T0 + timedelta(days=5), step="email-2", step_index=1
        )
        event(session, member, "renewal", T0 + timedelta(days=6), amount="80.00")
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=T0 + timedelta(days=7)) == 1
    [before] = _conversions(app)
    assert before.last_touch is not None and before.last_touch["message_id"] == late_mail.id

    # The source system's feed delivers an older redemption a day later.
    with app.sessions() as session, session.begin():
        earlier = event(session, member, "redemption", T0 + timedelta(days=2), points=-500)
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=T0 + timedelta(days=8)) == 0
    [after] = _conversions(app)
    assert after.id == before.id and after.event_id == earlier.id
    assert after.occurred_at == T0 + timedelta(days=2)
    assert (after.points, after.amount, after.event_type) == (-500, None, "redemption")
    # Attribution moved with it: only the first email came before day 2.
    assert after.last_touch is not None and after.last_touch["message_id"] == early_mail.id
    with app.sessions() as session:
        report = campaign_report(session, "renewal-test")
        state = session.scalar(select(Enrollment.state).where(Enrollment.id == enrollment.id))
    assert report.conversions == 1 and report.groups["treatment"].amount == Decimal("0.00")
    assert report.groups["treatment"].mean_hours_to_convert == 48.0
    assert state == "converted"
    # Matching again changes nothing.
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=T0 + timedelta(days=9)) == 0
    assert [(c.id, c.event_id) for c in _conversions(app)] == [(after.id, earlier.id)]


def test_arrival_order_does_not_change_the_result(app: App) -> None:
    """The same events imported in either order give the same conversions."""
    outcomes = []
    for order in ((0, 1), (1, 0)):
        with app.sessions() as session, session.begin():
            program = make_program(session, at=T0, key=f"p{order[0]}")
            [member] = members(session, program, 1, at=T0)
            run = make_run(session, program, at=T0, name=f"c{order[0]}")
            enroll(session, run, member)
        times = [T0 + timedelta(days=4), T0 + timedelta(days=1)]
        for i in order:
            with app.sessions() as session, session.begin():
                event(session, member, "renewal", times[i], amount=f"{10 + i}.00")
            with app.sessions() as session, session.begin():
                match_conversions(session, at=T0 + timedelta(days=10))
        with app.sessions() as session:
            c = session.scalars(select(Conversion).where(Conversion.campaign == f"c{order[0]}"))
            [row] = c.all()
        outcomes.append((row.occurred_at, row.amount))
    assert outcomes == [(T0 + timedelta(days=1), Decimal("11.00"))] * 2

"""Conversion matching: windows, first event, attribution, effects, idempotency (both DBs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from report_helpers import call_task, enroll, event, make_run, members, message
from sqlalchemy import select

from engine.app import App
from engine.conversions import match_after_import, match_conversions
from engine.db.models import CallTask, Conversion, Enrollment, OutboxMessage
from engine.testing.fakes import make_program

T0 = datetime(2026, 1, 10, 14, 0, tzinfo=UTC)
AT = T0 + timedelta(days=40)


def _conversions(app: App) -> dict[int, Conversion]:
    with app.sessions() as session:
        return {c.enrollment_id: c for c in session.scalars(select(Conversion)).all()}


def test_window_first_event_groups_and_source(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0, window="30d")
        p = members(session, program, 7, at=T0)
        e = [
            enroll(session, run, p[i], group="holdout" if i >= 5 else "treatment") for i in range(7)
        ]
        # 0: converts inside the window; a later second goal event does not count twice.
        event(session, p[0], "renewal", T0 + timedelta(days=3), points=100, amount="49.90")
        event(session, p[0], "redemption", T0 + timedelta(days=9), points=5)
        # 1: goal event before enrollment, and a non-goal event inside: no conversion.
        event(session, p[1], "renewal", T0 - timedelta(seconds=1))
        event(session, p[1], "login", T0 + timedelta(days=1))
        # 2: exactly at the window's end (inclusive) via a call disposition.
        event(session, p[2], "redemption", T0 + timedelta(days=30), source="call")
        # 3: one second after the window: no conversion.
        event(session, p[3], "renewal", T0 + timedelta(days=30, seconds=1))
        # 4: exactly at enrollment (inclusive), from a webhook.
        event(session, p[4], "renewal", T0, source="webhook:sendgrid")
        # 5 (holdout): converts; measured from the same moment.
        event(session, p[5], "renewal", T0 + timedelta(days=2), amount="10.00")
        # 6 (holdout): event after `at` is not yet a conversion.
        event(session, p[6], "renewal", AT + timedelta(hours=1))

    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 4

    found = _conversions(app)
    assert set(found) == {e[0].id, e[2].id, e[4].id, e[5].id}
    first = found[e[0].id]
    assert (first.event_type, first.points, first.amount) == ("renewal", 100, Decimal("49.90"))
    assert first.occurred_at == T0 + timedelta(days=3)
    assert first.group == "treatment" and first.source == "import"
    assert found[e[2].id].source == "call"
    assert found[e[4].id].source == "webhook"
    assert found[e[5].id].group == "holdout"

    with app.sessions() as session:
        states = dict(session.execute(select(Enrollment.id, Enrollment.state)).all())
    assert states[e[0].id] == "converted" and states[e[5].id] == "converted"
    assert states[e[1].id] == "active" and states[e[3].id] == "active"

    # Idempotent: nothing new, nothing changes.
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 0
    assert len(_conversions(app)) == 4

    # Time moves on: the holdout member's later event now counts (still inside 30 days? no:
    # day 40 + 1 h is after the window, so it never converts).
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT + timedelta(days=1)) == 0


def test_attribution_and_effects(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        (p,) = members(session, program, 1, at=T0)
        e = enroll(session, run, p)
        first = message(session, e, at=T0 + timedelta(hours=1), variant="b", status="delivered")
        message(
            session, e, step="sms-1", channel="sms", at=T0 + timedelta(days=3), status="bounced"
        )
        task = call_task(
            session,
            e,
            at=T0 + timedelta(days=7),
            status="open",
            reached_at=T0 + timedelta(days=7, hours=2),
            agent="agent-7",
        )
        later = message(
            session, e, step="email-2", at=T0 + timedelta(days=20), status="delivered", step_index=3
        )
        queued = message(session, e, step="email-3", at=T0 + timedelta(days=25), status="queued")
        event(session, p, "renewal", T0 + timedelta(days=8))
        first_id, task_id, later_id, queued_id = first.id, task.id, later.id, queued.id

    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT, participant_ids=[p.id]) == 1

    conversion = _conversions(app)[e.id]
    assert conversion.first_touch == {
        "channel": "email",
        "step": "email-1",
        "variant": "b",
        "agent": None,
        "message_id": first_id,
        "call_task_id": None,
        "at": (T0 + timedelta(hours=1)).isoformat(),
    }
    # The bounced SMS is no touch; the reached call is the last one before the event; the
    # email sent after the event is not a touch of it.
    assert conversion.last_touch == {
        "channel": "call",
        "step": "call-1",
        "variant": None,
        "agent": "agent-7",
        "message_id": None,
        "call_task_id": task_id,
        "at": (T0 + timedelta(days=7, hours=2)).isoformat(),
    }
    assert later_id != conversion.last_touch["message_id"]
    with app.sessions() as session:
        assert session.get(Enrollment, e.id).state == "converted"  # type: ignore[union-attr]
        closed = session.get(CallTask, task_id)
        assert closed is not None
        assert (closed.status, closed.close_reason) == ("closed", "converted")
        skipped = session.get(OutboxMessage, queued_id)
        assert skipped is not None
        assert (skipped.status, skipped.status_reason) == ("skipped", "converted")


def test_holdout_has_no_touch_and_participant_filter(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        other = make_run(session, program, at=T0, name="other", events="login", window="7d")
        a, b = members(session, program, 2, at=T0)
        ea = enroll(session, run, a, group="holdout")
        eb = enroll(session, run, b)
        eo = enroll(session, other, a)
        event(session, a, "renewal", T0 + timedelta(days=1))
        event(session, a, "login", T0 + timedelta(days=2))
        event(session, b, "redemption", T0 + timedelta(days=1))

    # Only participant a: both of a's runs convert, b waits.
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT, participant_ids={a.id}) == 2
        assert match_conversions(session, at=AT, participant_ids=[]) == 0
    found = _conversions(app)
    assert set(found) == {ea.id, eo.id}
    assert found[ea.id].first_touch is None and found[ea.id].last_touch is None
    assert found[eo.id].event_type == "login"
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 1
    assert eb.id in _conversions(app)


def test_completed_enrollment_keeps_state_and_import_hook(app: App) -> None:
    imported_at = T0 + timedelta(days=5)
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        a, b = members(session, program, 2, at=T0)
        ea = enroll(session, run, a, state="completed")
        eb = enroll(session, run, b)
        event(session, a, "renewal", T0 + timedelta(days=2))  # created_at = occurred_at
        # b's event arrives with the import stamped imported_at.
        ev = event(session, b, "renewal", T0 + timedelta(days=4))
        ev.created_at = imported_at
    with app.sessions() as session, session.begin():
        assert match_after_import(session, imported_at=imported_at, at=imported_at) == 1
    assert set(_conversions(app)) == {eb.id}
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 1
        assert session.get(Enrollment, ea.id).state == "completed"  # type: ignore[union-attr]

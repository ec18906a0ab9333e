from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Participant
from engine.testing import make_event, make_participant, make_program


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

"""Shared helpers of the sequencing tests: a campaign definition, launch, and table reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from engine import planning
from engine.app import App
from engine.db.models import CallTask, Enrollment, OutboxMessage, Program
from engine.definitions.loader import LoadedDefinition
from engine.testing.fakes import load_definition, unit

# The same instant as tests/conftest.py's TEST_NOW (the `clock` fixture): a Monday, 10:00 in
# New York, six days before the US spring-forward (2026-03-08).
TEST_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def definition(**fields: Any) -> LoadedDefinition:
    """A definition through the real loader, with templates that exist in templates/."""
    return load_definition(
        {
            "name": "seq-test",
            "program": "loyalty",
            "audience": {"field": "status", "eq": "active"},
            "holdout_percent": 0,
            "goal": {"events": ["redemption"], "window": "30d"},
            "steps": [{"id": "email-1", "channel": "email", "template": "points_expiring"}],
        },
        **fields,
    )


def launch(app: App, loaded: LoadedDefinition, at: datetime = TEST_NOW) -> int:
    with unit(app) as s:
        return planning.launch(s, loaded, at=at).run_id


def messages(app: App) -> list[OutboxMessage]:
    with unit(app) as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def tasks(app: App) -> list[CallTask]:
    with unit(app) as s:
        return list(s.scalars(select(CallTask).order_by(CallTask.id)))


def enrollments(app: App) -> list[Enrollment]:
    with unit(app) as s:
        return list(s.scalars(select(Enrollment).order_by(Enrollment.id)))


def program_of(app: App) -> Program:
    with unit(app) as s:
        program = s.scalar(select(Program))
        assert program is not None
        return program

"""Shared helpers for the audience, plan, launch and run tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import insert

from engine import sampling
from engine.app import App
from engine.db.models import Participant, Program
from engine.definitions.filters import Filter
from engine.definitions.loader import LoadedDefinition
from engine.testing.fakes import load_definition, unit

# The same instant as tests/conftest.py's TEST_NOW (the `clock` fixture).
TEST_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

FILTER = TypeAdapter(Filter)


def parse_filter(data: Any) -> Filter:
    return FILTER.validate_python(data)


def definition(**fields: Any) -> LoadedDefinition:
    """A campaign definition through the real loader; fields override sensible defaults."""
    return load_definition(
        {
            "name": "test-campaign",
            "program": "loyalty",
            "audience": {"field": "status", "eq": "active"},
            "holdout_percent": 0,
            "goal": {"events": ["login"], "window": "30d"},
            "steps": [{"id": "email-1", "channel": "email", "template": "welcome"}],
        },
        **fields,
    )


def insert_members(app: App, program: Program, n: int) -> None:
    """``n`` active members M00000.. with an email, inserted in one statement."""
    rows = [
        {
            "program_id": program.id,
            "external_id": f"M{i:05d}",
            "email": f"m{i}@example.com",
            "status": "active",
            "points_balance": 0,
            "points_expiring": 0,
            "attributes": {},
            "sample_key": sampling.sample_key(program.key, f"M{i:05d}"),
            "created_at": TEST_NOW,
            "updated_at": TEST_NOW,
        }
        for i in range(n)
    ]
    with unit(app) as s:
        s.execute(insert(Participant), rows)

"""BatchWriter.move: each enrollment moves only if it is still where it was read, whether
the batch moves in a few ways (one UPDATE per way) or in many (PostgreSQL: one UPDATE
joined to the batch's arrays)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from seq_helpers import TEST_NOW, definition, enrollments, launch
from sqlalchemy import update

from engine.app import App
from engine.db.models import Enrollment, Program
from engine.sequencing.due import sqlite_time
from engine.sequencing.rules import Outcome
from engine.sequencing.write import _MOST_GROUPS, BatchWriter
from engine.testing.fakes import make_participant, unit


def _launched(app: App, program: Program, n: int) -> list[int]:
    with unit(app) as s:
        for i in range(n):
            make_participant(s, program, at=TEST_NOW, external_id=f"M{i:03d}")
    launch(app, definition())
    return [e.id for e in enrollments(app)]


@pytest.mark.parametrize("ways", [2, _MOST_GROUPS + 4])
def test_move_moves_only_enrollments_still_where_they_were_read(
    app: App, program: Program, ways: int
) -> None:
    ids = _launched(app, program, 12)
    # One enrollment was moved by someone else since it was read; one has exited.
    with unit(app) as s:
        s.execute(update(Enrollment).where(Enrollment.id == ids[0]).values(next_step_index=1))
        s.execute(update(Enrollment).where(Enrollment.id == ids[1]).values(state="exited"))
    wanted = {i: TEST_NOW + timedelta(days=1, minutes=n % ways) for n, i in enumerate(ids)}
    moves: list[tuple[Any, Outcome]] = [
        (SimpleNamespace(id=i, next_step_index=0), Outcome((), (), 1, at, "active"))
        for i, at in wanted.items()
    ]
    dialect = app.engine.dialect.name
    writer = BatchWriter(dialect, sqlite_time(TEST_NOW))
    with app.engine.begin() as conn:
        moved = writer.move(conn, moves)
    assert moved == set(ids[2:])
    after = {e.id: e for e in enrollments(app)}
    for i in ids[2:]:
        assert after[i].next_step_index == 1
        assert after[i].next_action_at == wanted[i]
        assert after[i].state == "active"
    assert after[ids[0]].next_action_at != wanted[ids[0]]
    assert after[ids[1]].state == "exited" and after[ids[1]].next_step_index == 0

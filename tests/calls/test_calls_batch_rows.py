"""The dialer import's plain task rows stand in for CallTask (engine/calls/batch_rows.py): they
must keep every column of ``call_tasks`` by the ORM's names, or a column added later would be
missing from them (log_call sets and CallBatch writes back by name)."""

from __future__ import annotations

from dataclasses import fields

from engine.calls.batch_rows import MemberRow, TaskRow
from engine.db.models import CallTask
from engine.db.tables.calls import call_tasks
from engine.db.tables.members import participants


def test_a_task_row_holds_every_column_of_call_tasks_by_its_orm_name() -> None:
    names = [field.name for field in fields(TaskRow)]
    assert sorted(names) == sorted(call_tasks.c.keys())
    assert set(names) <= set(CallTask.__mapper__.attrs.keys())


def test_a_member_row_names_participants_columns() -> None:
    assert {field.name for field in fields(MemberRow)} <= set(participants.c.keys())

"""An index of the open call tasks in serving order within a run (#19)

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07 23:45:00

Claim-next reads each campaign step's tasks a page at a time (engine/calls/tasks.py
serving_order); a step ranked by no participant field is read in due order, and PostgreSQL
sorted every open task of the run to return the first ten (40 ms at 100,000 open tasks, and
growing with the list). ``ix_call_tasks_open_queue`` (run_id, kind, due_at, id) of the open
and claimed tasks gives those rows in that order, so the read stops after its page; a
callback step's page reads the run's callbacks alone. It leads with run_id over the same rows
as ``ix_call_tasks_open_by_run`` (0014: "has this run an open task?", engine/run_work.py),
which it replaces: one index written per task and status change, as before (a fourth
index of the same rows cost each call-task insert about 17% more).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "status IN ('open', 'claimed')"


def upgrade() -> None:
    op.create_index(
        "ix_call_tasks_open_queue",
        "call_tasks",
        ["run_id", "kind", "due_at", "id"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )
    op.drop_index("ix_call_tasks_open_by_run", table_name="call_tasks")


def downgrade() -> None:
    op.create_index(
        "ix_call_tasks_open_by_run",
        "call_tasks",
        ["run_id"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )
    op.drop_index("ix_call_tasks_open_queue", table_name="call_tasks")

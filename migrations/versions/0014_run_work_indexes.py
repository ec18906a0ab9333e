"""Partial indexes of a run's remaining work; completed runs that still have work reopen

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:00:00

A run is ``active`` while any treatment enrollment has steps left, any message is pending
(queued, sending, unknown) or any call task is open (engine/run_work.py). The sequencer asks
that of every active run on each advance: these three small partial indexes, by run, make
each question one index probe however many finished rows a run holds (a row enters an index
only while it is work, and leaves it when it is done).

Until now a run completed as soon as every enrollment had made its last step, with its last
messages still queued and its call tasks open (served to no agent, refused by pause and
cancel). Such runs are active again, so that their work is served, sent and can be paused.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ENROLLMENT = "state = 'active' AND \"group\" = 'treatment'"
PENDING_MESSAGE = "status IN ('queued', 'sending', 'unknown')"
OPEN_TASK = "status IN ('open', 'claimed')"


def upgrade() -> None:
    for name, table, where in (
        ("ix_enrollments_open_by_run", "enrollments", OPEN_ENROLLMENT),
        ("ix_outbox_messages_pending_by_run", "outbox_messages", PENDING_MESSAGE),
        ("ix_call_tasks_open_by_run", "call_tasks", OPEN_TASK),
    ):
        op.create_index(
            name,
            table,
            ["run_id"],
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    # Inbound SMS follow-ups (no parent task) are answered whatever became of their run and do
    # not keep it open (engine/run_work.py); the rest of the work does.
    op.execute(
        "UPDATE campaign_runs SET status = 'active',"
        " status_reason = 'reopened: it still had work when it was marked completed'"
        " WHERE status = 'completed' AND ("
        f" EXISTS (SELECT 1 FROM enrollments e WHERE e.run_id = campaign_runs.id"
        f" AND e.{OPEN_ENROLLMENT.replace(' AND ', ' AND e.')})"
        f" OR EXISTS (SELECT 1 FROM outbox_messages m WHERE m.run_id = campaign_runs.id"
        f" AND m.{PENDING_MESSAGE})"
        f" OR EXISTS (SELECT 1 FROM call_tasks t WHERE t.run_id = campaign_runs.id"
        f" AND t.{OPEN_TASK} AND NOT (t.kind = 'follow_up' AND t.parent_task_id IS NULL)))"
    )


def downgrade() -> None:
    op.drop_index("ix_call_tasks_open_by_run", table_name="call_tasks")
    op.drop_index("ix_outbox_messages_pending_by_run", table_name="outbox_messages")
    op.drop_index("ix_enrollments_open_by_run", table_name="enrollments")

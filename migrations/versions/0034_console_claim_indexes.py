"""Partial indexes for claim-next and the agent's call sheet (#19)

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 12:00:00

Three statements of every claim and call sheet read every row of ``call_tasks`` (or every
open one), however few they want; each now reads an index of the rows it asks for:

- ``ix_call_tasks_open_expiring`` (expires_at) of the open tasks that have a deadline: the
  UPDATE that closes the expired ones, first in every claim, scanned the whole table
  (closed tasks too, which only ever grow);
- ``ix_call_tasks_open_callbacks_due`` (due_at) of the open callbacks: "my callbacks today"
  on the call sheet read every open task due today to find the few callbacks;
- ``ix_participants_account_manager`` of the members that have an account manager: claim-next
  serves an agent their team's tasks or their managed members' tasks, and looks the managed
  members up here (engine/calls/tasks.py), so the scan keeps to the agent's teams before it
  joins the members instead of joining every open task of every team first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    (
        "ix_call_tasks_open_expiring",
        "call_tasks",
        ["expires_at"],
        "status IN ('open', 'claimed') AND expires_at IS NOT NULL",
    ),
    (
        "ix_call_tasks_open_callbacks_due",
        "call_tasks",
        ["due_at"],
        "kind = 'callback' AND status IN ('open', 'claimed')",
    ),
    (
        "ix_participants_account_manager",
        "participants",
        ["account_manager"],
        "account_manager IS NOT NULL",
    ),
)


def upgrade() -> None:
    for name, table, columns, where in INDEXES:
        op.create_index(
            name,
            table,
            columns,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for name, table, _columns, _where in reversed(INDEXES):
        op.drop_index(name, table_name=table)

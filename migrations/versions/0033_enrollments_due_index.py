"""The sequencer's due index holds only the enrollments that can fall due (#20)

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07 11:30:00

``ix_enrollments_state_next_action_at_id`` (0010) indexed every enrollment, whatever its
state, though every query that reads it asks for ``state = 'active'`` of the treatment group
(the sequencer's due scan, the templates preflight). It is replaced by
``ix_enrollments_due`` on (next_action_at, id) of the active treatment enrollments only:

- an enrollment that ends (completed, exited, converted) leaves the index instead of taking
  a new entry, so the sequencer's UPDATE of a last step writes one index entry fewer (the
  update is never HOT: ``state`` and ``next_action_at`` are indexed). Measured on PostgreSQL:
  about 2 us of the server's ~15 per enrollment moved, with 50,000 enrollments;
- the index no longer grows with every enrollment ever made (holdouts and finished ones),
  but stays the size of the work left.

Both databases use it for the due scan: its WHERE repeats the index's condition.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = "state = 'active' AND \"group\" = 'treatment'"


def upgrade() -> None:
    op.create_index(
        "ix_enrollments_due",
        "enrollments",
        ["next_action_at", "id"],
        sqlite_where=sa.text(DUE),
        postgresql_where=sa.text(DUE),
    )
    op.drop_index("ix_enrollments_state_next_action_at_id", table_name="enrollments")


def downgrade() -> None:
    op.create_index(
        "ix_enrollments_state_next_action_at_id",
        "enrollments",
        ["state", "next_action_at", "id"],
    )
    op.drop_index("ix_enrollments_due", table_name="enrollments")

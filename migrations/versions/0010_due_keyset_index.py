"""The sequencer's due index ends with the id, so its scan can resume after a keyset position

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 21:00:00

engine.sequencing reads due enrollments in (next_action_at, id) order after the last row it
handed out, and forked workers share that one position (#4). On (state, next_action_at)
alone PostgreSQL orders equal times by tuple position, so a launch's enrollments (all due at
one instant) could not be resumed from; with the id in the index both databases seek
straight to the next row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_enrollments_state_next_action_at_id"),
        "enrollments",
        ["state", "next_action_at", "id"],
    )
    op.drop_index(op.f("ix_enrollments_state_next_action_at"), table_name="enrollments")


def downgrade() -> None:
    op.create_index(
        op.f("ix_enrollments_state_next_action_at"), "enrollments", ["state", "next_action_at"]
    )
    op.drop_index(op.f("ix_enrollments_state_next_action_at_id"), table_name="enrollments")

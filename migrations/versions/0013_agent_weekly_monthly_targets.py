"""agents.weekly_target, agents.monthly_target: explicit calling-plan targets

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 09:00:00

An agent's weekly and monthly targets were always the daily one times the business days of
the week or month; real plans differ (part-time agents, ramp-up, a monthly quota of its own).
Both columns are nullable: NULL keeps the derived target, so existing agents are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a CHECK constraint in place, so it rebuilds `agents`
    # (no foreign key points at it, so the rebuild is safe); PostgreSQL just alters it.
    with op.batch_alter_table("agents") as batch_op:
        batch_op.add_column(sa.Column("weekly_target", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("monthly_target", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_agents_weekly_target"), "weekly_target >= 0")
        batch_op.create_check_constraint(op.f("ck_agents_monthly_target"), "monthly_target >= 0")


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_constraint(op.f("ck_agents_monthly_target"), type_="check")
        batch_op.drop_constraint(op.f("ck_agents_weekly_target"), type_="check")
        batch_op.drop_column("monthly_target")
        batch_op.drop_column("weekly_target")

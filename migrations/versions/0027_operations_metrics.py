"""metric_counters, process_heartbeats and an index of open call tasks by team (/metrics)

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-10 10:00:00

Counters of what happens in the dispatcher, the tick and the webhooks are summed in
metric_counters (one row per metric and label set), the last sign of life of each kind of
process is kept in process_heartbeats, and `campaign serve` reads both on /metrics
(engine/metrics). The partial index lets /metrics count open call tasks by team from the
index alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.types import UTCDateTime

revision: str = "0027"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.String(length=400), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", name=op.f("pk_metric_counters")),
    )
    op.create_table(
        "process_heartbeats",
        sa.Column("process", sa.String(length=32), nullable=False),
        sa.Column("beat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_process_heartbeats")),
    )
    op.create_index(
        "ix_call_tasks_open_by_team",
        "call_tasks",
        ["team", "status"],
        unique=False,
        sqlite_where=sa.text("status IN ('open', 'claimed')"),
        postgresql_where=sa.text("status IN ('open', 'claimed')"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_tasks_open_by_team", table_name="call_tasks")
    op.drop_table("process_heartbeats")
    op.drop_table("metric_counters")

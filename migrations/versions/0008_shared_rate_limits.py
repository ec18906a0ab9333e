"""rate_limit_slots: the send rate shared by every dispatcher on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 20:30:00

Two dispatchers on one PostgreSQL database sent at twice the configured rate, each pacing
itself alone (#4). Each row is the timeline of one rate limit (channel and sender): from
``next_slot`` on (the database's clock, seconds since the epoch) it is free; a dispatcher
reserves the slots it is about to use by moving it on (engine/sending/shared_ratelimit.py).

UNLOGGED on PostgreSQL: a reservation's commit then waits for no WAL flush (at thousands of
messages a second, one every few milliseconds), and what a crash loses is only where each
timeline stood, which restarts at the database's "now". Created on SQLite too, so the models
and the migrations stay one schema; nothing uses it there (one dispatcher at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "rate_limit_slots",
        sa.Column("bucket", sa.String(length=400), nullable=False),
        sa.Column("next_slot", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_rate_limit_slots")),
        prefixes=["UNLOGGED"] if postgres else [],
    )


def downgrade() -> None:
    op.drop_table("rate_limit_slots")

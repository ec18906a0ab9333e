"""agent_pauses, call_tasks.verified_at/by, programs.shown_before_verification

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 03:00:00

- ``agent_pauses``: an agent's pause with its code (break, training, meeting...), start and
  end; at most one open pause per agent (a partial unique index).
- ``call_tasks.verified_at`` / ``verified_by``: the claim's agent recorded that the member's
  identity was verified; the console shows the full account from then on.
- ``programs.shown_before_verification``: the account fields shown before that (NULL: the
  default list, engine/calls/verification.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = engine.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_pauses",
        sa.Column("id", _ID, nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("ended_at", _TIME, nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=False),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pauses")),
    )
    op.create_index(
        op.f("ix_agent_pauses_agent_started_at"), "agent_pauses", ["agent", "started_at"]
    )
    op.create_index(
        "uq_agent_pauses_open",
        "agent_pauses",
        ["agent"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    # Plain ADD COLUMNs on both databases: batch mode would rebuild the tables on SQLite,
    # which their foreign keys refuse once rows exist.
    op.add_column("call_tasks", sa.Column("verified_at", _TIME, nullable=True))
    op.add_column("call_tasks", sa.Column("verified_by", sa.String(length=64), nullable=True))
    op.add_column(
        "programs", sa.Column("shown_before_verification", sa.String(length=200), nullable=True)
    )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    op.execute("ALTER TABLE programs DROP COLUMN shown_before_verification")
    op.execute("ALTER TABLE call_tasks DROP COLUMN verified_by")
    op.execute("ALTER TABLE call_tasks DROP COLUMN verified_at")
    op.drop_index("uq_agent_pauses_open", table_name="agent_pauses")
    op.drop_index(op.f("ix_agent_pauses_agent_started_at"), table_name="agent_pauses")
    op.drop_table("agent_pauses")

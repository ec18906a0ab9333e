"""programs.sms_opt_out_notice

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 16:40:00

The first SMS of a campaign carries opt-out instructions unless the program turns that off
(#4). Existing programs keep the notice (server default true).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: batch mode would rebuild `programs` on SQLite,
    # which its foreign keys refuse once members exist (and there is nothing to rebuild for).
    op.add_column(
        "programs",
        sa.Column("sms_opt_out_notice", sa.Boolean(), server_default=sa.true(), nullable=False),
    )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    op.execute("ALTER TABLE programs DROP COLUMN sms_opt_out_notice")

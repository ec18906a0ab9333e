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
    with op.batch_alter_table("programs") as batch:
        batch.add_column(
            sa.Column("sms_opt_out_notice", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("sms_opt_out_notice")

"""programs.holidays: the public-holiday calendar a program's business days skip

Revision ID: 0026
Revises: 0028
Create Date: 2026-12-07 00:10:00

A code of the holidays library ("US", "US-CA", "CN", "GB-SCT"), set with
`campaign programs add/set --holidays`; NULL keeps Monday to Friday.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: batch mode would rebuild `programs` on SQLite,
    # which its foreign keys refuse once members exist.
    op.add_column("programs", sa.Column("holidays", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    op.execute("ALTER TABLE programs DROP COLUMN holidays")

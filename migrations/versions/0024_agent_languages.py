"""agents.languages: the languages an agent speaks (routing of call tasks)

Revision ID: 0024
Revises: 0021
Create Date: 2026-12-08 10:00:00

A JSON list of language codes such as ["zh", "en"]; empty (every existing agent) means the
agent is served as before, whatever the member's language (engine/calls/language_routing.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        batch_op.add_column(
            sa.Column("languages", _JSON, server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_column("languages")

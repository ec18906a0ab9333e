"""outbox_messages: partial index of messages whose content has not been purged

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 21:50:00

The tick empties the content and address of settled messages older than
CAMPAIGN_MESSAGE_RETENTION_DAYS (engine/retention.py). This index holds only messages that
still have an address, by age, so finding the next chunk never scans the purged history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_messages_unpurged",
        "outbox_messages",
        ["created_at"],
        unique=False,
        sqlite_where=sa.text("to_address IS NOT NULL"),
        postgresql_where=sa.text("to_address IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_messages_unpurged", table_name="outbox_messages")

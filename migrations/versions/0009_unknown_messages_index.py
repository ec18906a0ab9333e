"""A partial index of the outbox messages in ``unknown``, by participant

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 20:50:00

The frequency caps count a member's messages left ``unknown`` (they may have gone:
engine/sending/contact_ledger.py) beside the contacts ledger: in every claimed batch of the
dispatcher and, per member, in plan and launch. Few messages are ever unknown, so this index
is tiny and costs nothing to the sequencer's inserts (a row enters it only when it turns
unknown); without it each member's lookup read the member's outbox rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_messages_unknown",
        "outbox_messages",
        ["participant_id"],
        sqlite_where=sa.text("status = 'unknown'"),
        postgresql_where=sa.text("status = 'unknown'"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_messages_unknown", table_name="outbox_messages")

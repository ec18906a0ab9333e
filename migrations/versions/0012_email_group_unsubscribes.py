"""email_group_unsubscribes: the SendGrid suppression groups an email address left, and when

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 22:00:00

A SendGrid ``group_resubscribe`` lifts the email opt-out that group unsubscribes made, and
no other (engine/webhooks/sendgrid_groups.py). For that it must know which groups the
address left and when (SendGrid's event time): one row per (address hash, group), kept
apart from the suppression entry, whose note a coordinator's ``suppress add`` overwrites.

Every email entry that a group unsubscribe wrote before this migration gets a row of group
-1, a group no resubscribe can name: the code of that time rewrote whatever entry the
address had (our unsubscribe link, a bounce, a spam report) to its own, so nothing says what
such an entry replaced, and it must never be lifted. ``left_at`` and ``recorded_at`` are the
entry's ``created_at``, when that unsubscribe was recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_group_unsubscribes",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("left_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("group_id >= -1", name=op.f("ck_email_group_unsubscribes_group_id")),
        sa.PrimaryKeyConstraint(
            "address_hash", "group_id", name=op.f("pk_email_group_unsubscribes")
        ),
    )
    op.execute(
        "INSERT INTO email_group_unsubscribes (address_hash, group_id, left_at, recorded_at) "
        "SELECT address_hash, -1, created_at, created_at FROM suppressions "
        "WHERE channel = 'email' AND source = 'sendgrid_group_unsubscribe'"
    )


def downgrade() -> None:
    op.drop_table("email_group_unsubscribes")

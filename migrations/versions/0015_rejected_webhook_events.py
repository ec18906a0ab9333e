"""rejected_webhook_events: webhook events that could not be stored, with the reason

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 21:00:00

One bad event in a SendGrid batch (a lone surrogate, a 4,300-digit number) used to fail the
whole request, so SendGrid retried the batch for a day and its good events (an unsubscribe)
were never applied. Now each event is checked on its own; a bad one is kept here with the
reason and the batch is answered 2xx.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected_webhook_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_digest", sa.String(length=64), nullable=False),
        sa.Column("received_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_webhook_events")),
        sa.UniqueConstraint(
            "source", "payload_digest", name=op.f("uq_rejected_webhook_events_source_payload_digest")
        ),
    )


def downgrade() -> None:
    op.drop_table("rejected_webhook_events")

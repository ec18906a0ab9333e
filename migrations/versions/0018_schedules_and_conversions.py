"""campaign_schedules, skipped_fires; conversions unique per (campaign, event)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 21:00:00

- ``campaign_schedules``: when the engine first saw each schedule of a campaign, so a new or
  edited schedule launches from its next fire time, never an old one (engine/schedules.py).
- ``skipped_fires``: cron fire times that were not launched (later than the misfire grace, or
  before their schedule was first seen), reported once and listed by ``campaign runs skipped``.
- ``conversions``: UNIQUE(campaign, event_id), so one event converts one enrollment of a
  campaign however many of its runs overlap. Duplicates made before are removed first, keeping
  the conversion of the member's most recent enrollment (the rule engine/conversions.py now
  follows); the older enrollment keeps its state.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_schedules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("schedule_hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("first_seen_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_schedules")),
        sa.UniqueConstraint(
            "campaign", "schedule_hash", name=op.f("uq_campaign_schedules_campaign_schedule_hash")
        ),
    )
    op.create_table(
        "skipped_fires",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("fire_key", sa.String(length=64), nullable=False),
        sa.Column("fire_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("skipped_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skipped_fires")),
        sa.UniqueConstraint("campaign", "fire_key", name=op.f("uq_skipped_fires_campaign_fire_key")),
    )
    # Keep, per (campaign, event), the conversion of the most recent enrollment.
    op.execute(
        """
        DELETE FROM conversions
        WHERE event_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM conversions c2
            JOIN enrollments e2 ON e2.id = c2.enrollment_id
            JOIN enrollments e1 ON e1.id = conversions.enrollment_id
            WHERE c2.campaign = conversions.campaign AND c2.event_id = conversions.event_id
              AND (e2.enrolled_at > e1.enrolled_at
                   OR (e2.enrolled_at = e1.enrolled_at AND e2.id > e1.id)))
        """
    )
    with op.batch_alter_table("conversions") as batch_op:
        batch_op.create_unique_constraint(
            op.f("uq_conversions_campaign_event_id"), ["campaign", "event_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("conversions") as batch_op:
        batch_op.drop_constraint(op.f("uq_conversions_campaign_event_id"), type_="unique")
    op.drop_table("skipped_fires")
    op.drop_table("campaign_schedules")

"""report_schedules, report_deliveries: report subscriptions delivered on a schedule

Revision ID: 0028
Revises: 0023
Create Date: 2026-12-07 10:00:00

- ``report_schedules``: when the engine first saw each schedule of a report subscription
  (``reports/*.yaml``), so a new or edited schedule delivers from its next fire time.
- ``report_deliveries``: one row per (subscription, fire key) with its status, attempts and
  next attempt (engine/subscriptions/deliveries.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0028"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = engine.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_schedules",
        sa.Column("id", _ID, nullable=False),
        sa.Column("subscription", sa.String(length=64), nullable=False),
        sa.Column("schedule_hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_schedules")),
        sa.UniqueConstraint(
            "subscription",
            "schedule_hash",
            name=op.f("uq_report_schedules_subscription_schedule_hash"),
        ),
    )
    op.create_table(
        "report_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("subscription", sa.String(length=64), nullable=False),
        sa.Column("fire_key", sa.String(length=96), nullable=False),
        sa.Column("fire_at", _TIME, nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("period_label", sa.String(length=64), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("delivered_to", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("claimed_until", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'retrying', 'sent', 'failed', 'unknown', 'skipped')",
            name=op.f("ck_report_deliveries_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_deliveries")),
        sa.UniqueConstraint(
            "subscription", "fire_key", name=op.f("uq_report_deliveries_subscription_fire_key")
        ),
    )
    op.create_index(
        op.f("ix_report_deliveries_status_next_attempt_at"),
        "report_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_report_deliveries_status_next_attempt_at"), table_name="report_deliveries"
    )
    op.drop_table("report_deliveries")
    op.drop_table("report_schedules")

"""outbox_messages.expires_at, call_tasks.expires_at: every message and call has a deadline

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:00:00

A message meant for a moment (a renewal date, a points expiry) must never go out weeks late
after a pause or an outage: the sequencer stores the deadline it computed when it made the
message or call task (the step's due time + expires_after, or the start of the day of a member
field named by expires_before, whichever is earlier); the dispatcher's gate skips a queued
message past it (reason ``expired``) and call lists close such tasks. Nullable: rows made
before this migration have no deadline and behave as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_messages", sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("call_tasks", sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True))
    # Messages still waiting to go get the default deadline of an email/SMS step (3 days; no
    # step could set another before this migration), counted from when they were made (never
    # before their due time), so an upgrade does not let old queued messages go weeks late.
    if op.get_bind().dialect.name == "postgresql":
        later = "created_at + interval '3 days'"
    else:
        # The text form UTCDateTime stores on SQLite (naive UTC, microseconds).
        later = "strftime('%Y-%m-%d %H:%M:%S', created_at, '+3 days') || substr(created_at, 20)"
    op.execute(
        f"UPDATE outbox_messages SET expires_at = {later} "
        "WHERE status IN ('queued', 'sending') AND expires_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("call_tasks") as batch_op:
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("outbox_messages") as batch_op:
        batch_op.drop_column("expires_at")

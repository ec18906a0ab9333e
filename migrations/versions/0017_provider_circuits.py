"""provider_circuits; dispatch_claims.heartbeat_at: outages and dead dispatchers (#16)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 21:00:00

During a 15-minute outage the first message of each batch spent every attempt and ended
``failed too_many_attempts`` without ever having gone (#16). Now an error that is the
provider's (no connection, 5xx, 429, a connect timeout) opens the circuit of that provider
and sender: one row here, keyed like the rate limits (``email:sendgrid:rewards@...``), read by
every dispatcher before it claims that channel. Until ``retry_at`` nothing is claimed for
it; then one request probes, and a success deletes the row. ``failures`` counts the probes
that failed in a row (the wait doubles each time); ``opened_at`` is what `dispatch` and `tick`
report ("waiting for sendgrid since ...").

``dispatch_claims.heartbeat_at``: a dispatcher moves it on for its live claims every few
seconds; a claim whose heartbeat is more than a minute old belongs to a dead dispatcher, and
its rows are settled as after a lease that ran out (CAMPAIGN_DISPATCH_LEASE stays the
longest a claim lives). NULL (a claim of an older dispatcher): only its lease counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_circuits",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("opened_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retry_at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_provider_circuits")),
    )
    op.add_column(
        "dispatch_claims",
        sa.Column("heartbeat_at", engine.db.types.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("dispatch_claims") as batch_op:
        batch_op.drop_column("heartbeat_at")
    op.drop_table("provider_circuits")

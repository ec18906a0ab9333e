"""campaign_runs.claim_form: what claiming a call reads of a run's definition (#18)

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-07 14:00:00

A claim parsed the run's stored definition with pydantic (about 110 ms in a fresh `calls
next`) to read each step's priority, the call window, the frequency cap and the standing
filter. Launch now stores those as plain JSON with the run (engine/calls/claim_form.py), and
the claim reads that. Existing runs get theirs from their stored definition here; one whose
text no longer validates keeps NULL, and a claim works it out (and reports the error) as
before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.types import JSONDocument

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases (batch mode would rebuild the table on SQLite).
    op.add_column("campaign_runs", sa.Column("claim_form", JSONDocument(), nullable=True))
    from engine.calls.claim_form import store_claim_forms

    store_claim_forms(op.get_bind())


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    op.execute("ALTER TABLE campaign_runs DROP COLUMN claim_form")

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
    from engine.calls.claim_form import claim_form_of
    from engine.definitions.stored import stored_definition
    from engine.errors import InputError

    runs = sa.table(
        "campaign_runs",
        sa.column("id", sa.BigInteger()),
        sa.column("campaign", sa.String()),
        sa.column("definition_source", sa.Text()),
        sa.column("claim_form", JSONDocument()),
    )
    bind = op.get_bind()
    found = bind.execute(sa.select(runs.c.id, runs.c.campaign, runs.c.definition_source)).all()
    for run_id, campaign, source in found:
        try:
            definition = stored_definition(source, f"run {run_id}: {campaign}.yaml")
        except InputError:
            continue  # NULL: worked out (and the error reported) when a claim meets it
        bind.execute(
            sa.update(runs).where(runs.c.id == run_id).values(claim_form=claim_form_of(definition))
        )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    op.execute("ALTER TABLE campaign_runs DROP COLUMN claim_form")

"""Claim forms re-stored with the call sheet's fields (#18)

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07 18:00:00

A run's claim form (engine/calls/claim_form.py) now also holds what the call sheet reads of
the run's definition (each step's script, talking points, offer and cross-sell; the campaign's
name and description), so a `calls next` that takes a task parses no definition. Forms stored
before (version 1: 0036's backfill and launches since) still serve claims, but their runs' call
sheets parse the definition every time; here they are stored again from each run's definition.
No schema change; downgrading leaves the newer forms, which older code works out again from the
definition (it reads only the version it wrote).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from engine.calls.claim_form import FORM_VERSION, store_claim_forms

    store_claim_forms(op.get_bind(), older_than=FORM_VERSION)


def downgrade() -> None:
    pass

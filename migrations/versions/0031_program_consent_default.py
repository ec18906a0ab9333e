"""programs.consent_default_sms_at / consent_default_call_at: a program states consent

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 03:15:00

Set with `campaign programs add/set KEY --consent-default sms=yes` (and call=yes): from that
instant, a member of the program whose consent on that channel is not stated (no row in
participant_consents) counts as opted in. A stated `no`, an opt-out or a suppression always
wins. NULL (the default): not stated still counts as no.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.types import UTCDateTime

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("consent_default_sms_at", "consent_default_call_at")


def upgrade() -> None:
    # Plain ADD COLUMNs on both databases: batch mode would rebuild `programs` on SQLite,
    # which its foreign keys refuse once members exist.
    for name in COLUMNS:
        op.add_column("programs", sa.Column(name, UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no rebuild, so no foreign-key trouble).
    for name in COLUMNS:
        op.execute(f"ALTER TABLE programs DROP COLUMN {name}")

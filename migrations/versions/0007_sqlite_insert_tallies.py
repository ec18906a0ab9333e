"""SQLite: the outbox's inserts are tallied by the code that inserts, not by a row trigger

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 18:20:00

Materialising a step must reach 20,000 messages/s (#4). On SQLite, whose row triggers fire
once per row, the insert trigger of 0005 cost 14 µs per outbox row (9 µs of it for firing at
all, whatever its WHEN clause), a quarter of the write path that SQLite runs one writer at a
time. So on SQLite the inserts are tallied by the two ways rows are inserted:
engine.sequencing's bulk insert counts what it inserted in one INSERT ... SELECT per batch
(engine.reports.tallies.tally_inserted), and an ORM insert by the mapper event beside
engine.db.models.OutboxTally. The update and delete triggers stay, as do all three of
PostgreSQL's statement triggers (one INSERT per statement: cheap there).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER outbox_tally_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER outbox_tally_insert AFTER INSERT ON outbox_messages BEGIN "
            "INSERT INTO outbox_tallies (run_id, step_id, channel, variant, status, reason, "
            "messages, opened, clicked) VALUES (NEW.run_id, NEW.step_id, NEW.channel, "
            "NEW.variant, NEW.status, CASE WHEN NEW.status = 'skipped' THEN NEW.status_reason "
            "END, 1, (NEW.opened_at IS NOT NULL), (NEW.clicked_at IS NOT NULL)); END"
        )

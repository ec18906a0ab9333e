"""outbox_messages: two index entries fewer for each message made (#20)

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07 14:00:00

Materialising a step COPYs one outbox row per member, and every index takes an entry per row
(about 1 us of the server's each, on PostgreSQL). Eight indexes took one for a new (queued)
message; two of them need not:

- ``ix_outbox_messages_run_id_step_id_status`` (every message of a run, by step and status)
  and ``ix_outbox_messages_pending_by_run`` (the pending messages of a run, 0014) become one
  index ``ix_outbox_messages_run_id_status`` (run_id, status). No query looks messages up by
  run and step (the reports count from outbox_tallies); everything that reads a run's
  messages reads them by run, and "has this run a pending message?" (engine/run_work.py)
  is a probe of it per pending status, as cheap as the partial index's probe.
- ``ix_outbox_messages_unpurged`` (0021) holds only the *settled* messages that still have
  an address: the retention purge empties only those, so a queued message, sending or of
  unknown fate takes no entry until it settles (when its row changes anyway, and every index
  takes a new entry).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "outbox_messages"
PENDING = "status IN ('queued', 'sending', 'unknown')"
NOT_PURGED = "to_address IS NOT NULL"
SETTLED_NOT_PURGED = (
    "to_address IS NOT NULL AND status IN ('sent', 'delivered', 'bounced', 'failed', 'skipped')"
)


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(
        name, TABLE, columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
    )


def upgrade() -> None:
    op.create_index("ix_outbox_messages_run_id_status", TABLE, ["run_id", "status"])
    op.drop_index("ix_outbox_messages_run_id_step_id_status", table_name=TABLE)
    op.drop_index("ix_outbox_messages_pending_by_run", table_name=TABLE)
    op.drop_index("ix_outbox_messages_unpurged", table_name=TABLE)
    _partial("ix_outbox_messages_unpurged", ["created_at"], SETTLED_NOT_PURGED)


def downgrade() -> None:
    op.drop_index("ix_outbox_messages_unpurged", table_name=TABLE)
    _partial("ix_outbox_messages_unpurged", ["created_at"], NOT_PURGED)
    _partial("ix_outbox_messages_pending_by_run", ["run_id"], PENDING)
    op.create_index(
        "ix_outbox_messages_run_id_step_id_status", TABLE, ["run_id", "step_id", "status"]
    )
    op.drop_index("ix_outbox_messages_run_id_status", table_name=TABLE)

"""outbox_messages: what a new message costs the database (#20)

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07 03:20:00

Materialising a step writes one outbox row per member; every foreign key is a lookup of the
parent row (on PostgreSQL a row lock too, which dirties the parent's page) and every index an
entry, per row. Measured on PostgreSQL (server CPU per row of a COPY of 30,000 rows, same run):
72 us with the three keys, 49 without any, 25 into a table with nothing.

- The keys from ``run_id`` to ``campaign_runs`` and from ``participant_id`` to
  ``participants`` are dropped: every message belongs to an enrollment (``enrollment_id`` is
  NOT NULL, with its key and ON DELETE CASCADE), whose run and participant it copies, and the
  enrollment has the same two keys with ON DELETE CASCADE. Deleting a run or a participant
  still deletes their messages, through their enrollments.
- ``ix_outbox_messages_provider_message_id`` holds only the messages that have a provider
  id (NULL until the provider answered): a new message adds no entry. Every lookup is by a
  given id (``=`` / ``IN``), which implies NOT NULL, so both databases still use it.

SQLite rebuilds the table to drop keys (batch mode): its triggers on ``outbox_messages``
(the tallies, migration 0005) and its indexes are saved before and made again after, as they
were; and since dropping the old table (foreign keys on) sets every reference to it to NULL
(``contacts.message_id``, ``message_events.outbox_id``: ON DELETE SET NULL), those are saved
and put back too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (
    ("fk_outbox_messages_run_id_campaign_runs", "campaign_runs", "run_id"),
    ("fk_outbox_messages_participant_id_participants", "participants", "participant_id"),
)
_PROVIDER_INDEX = "ix_outbox_messages_provider_message_id"


def _sqlite_schema() -> list[str]:
    """SQLite: the CREATE statements of outbox_messages' triggers and named indexes, which a
    batch rebuild of the table would lose (triggers) or might remake differently (partial
    indexes)."""
    rows = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'outbox_messages' "
        "AND type IN ('trigger', 'index') AND sql IS NOT NULL"
    )
    return [row[0] for row in rows]


# SQLite: the columns that refer to outbox_messages (ON DELETE SET NULL).
_REFERENCES = (("contacts", "message_id"), ("message_events", "outbox_id"))


def _rebuild_keys(add: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    saved = _sqlite_schema() if sqlite else []
    if sqlite:
        for table, column in _REFERENCES:
            op.execute(
                f"CREATE TEMPORARY TABLE keep_{table} AS SELECT id, {column} AS ref "
                f"FROM {table} WHERE {column} IS NOT NULL"
            )
        for statement in saved:
            kind, name = statement.split()[1], statement.split()[2]
            if kind.upper() == "UNIQUE":  # CREATE UNIQUE INDEX name
                kind, name = "INDEX", statement.split()[3]
            op.execute(f"DROP {kind.upper()} IF EXISTS {name}")
    with op.batch_alter_table("outbox_messages") as batch_op:
        for name, parent, column in _KEYS:
            if add:
                batch_op.create_foreign_key(name, parent, [column], ["id"], ondelete="CASCADE")
            else:
                batch_op.drop_constraint(name, type_="foreignkey")
    for statement in saved:
        op.execute(statement)
    if sqlite:
        for table, column in _REFERENCES:
            op.execute(
                f"UPDATE {table} SET {column} = (SELECT ref FROM keep_{table} AS k "
                f"WHERE k.id = {table}.id) WHERE id IN (SELECT id FROM keep_{table})"
            )
            op.execute(f"DROP TABLE keep_{table}")


def upgrade() -> None:
    _rebuild_keys(add=False)
    op.drop_index(_PROVIDER_INDEX, table_name="outbox_messages")
    op.create_index(
        _PROVIDER_INDEX,
        "outbox_messages",
        ["provider_message_id"],
        unique=False,
        sqlite_where=sa.text("provider_message_id IS NOT NULL"),
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(_PROVIDER_INDEX, table_name="outbox_messages")
    op.create_index(_PROVIDER_INDEX, "outbox_messages", ["provider_message_id"], unique=False)
    _rebuild_keys(add=True)

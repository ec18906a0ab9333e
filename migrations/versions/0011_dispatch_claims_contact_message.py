"""dispatch_claims: the dispatcher's hand-off mark; contacts.message_id: one contact a message

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 21:30:00

A dispatcher claims its next batch while the one before is being sent (#4). Killed, it left
both batches ``sending``, and when their leases ran out both became ``unknown``, though the
batch claimed ahead never went. Now each claim is a row of ``dispatch_claims``, its id in the
messages it claims (``outbox_messages.claim_id``), moved to ``handed`` just before its first
request: an expired lease of a claim never handed goes back to ``queued``
(engine/sending/dispatch.py). UNLOGGED on PostgreSQL: the hand-off's commit waits for no WAL flush,
and a server crash empties the table, after which every expired lease ends ``unknown``, as
before this migration. ``claim_id`` has no foreign key: a claim's row is dropped once none of
its messages is ``sending``, and the messages keep the id.

``contacts.message_id``: the message a contact is (NULL for calls), unique where set. A
dispatcher that outlived its lease recorded ``sent`` after a provider event had already
settled the then ``unknown`` message, and the message had two contacts; every insert of a
message's contact now skips one it already has.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "dispatch_claims",
        sa.Column("id", _ID, autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "state IN ('claimed', 'handed', 'lapsed')", name=op.f("ck_dispatch_claims_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_claims")),
        prefixes=["UNLOGGED"] if postgres else [],
    )
    with op.batch_alter_table("outbox_messages") as batch_op:
        batch_op.add_column(sa.Column("claim_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.add_column(sa.Column("message_id", _ID, nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_contacts_message_id_outbox_messages"),
            "outbox_messages",
            ["message_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        op.f("ix_contacts_message_id"),
        "contacts",
        ["message_id"],
        unique=True,
        sqlite_where=sa.text("message_id IS NOT NULL"),
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_contacts_message_id"), table_name="contacts")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_constraint(op.f("fk_contacts_message_id_outbox_messages"), type_="foreignkey")
        batch_op.drop_column("message_id")
    with op.batch_alter_table("outbox_messages") as batch_op:
        batch_op.drop_column("claim_id")
    op.drop_table("dispatch_claims")

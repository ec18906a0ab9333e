"""caller_log: keyed MAC chain, personal digest, erasure; signed checkpoints

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-06 21:00:00

Entries were chained with unkeyed SHA-256, so anyone who could write the database could edit an
entry and recompute the chain, and a deleted tail or an emptied log verified as intact. New
entries are chained with an HMAC whose key lives outside the database (``chain`` = 'hmac');
entries written before keep 'sha256' and are verified as before. The personal columns enter
the MAC only through ``personal_digest``, so erasure can empty them (``erased_at``) without
breaking the chain; on PostgreSQL the append-only trigger lets exactly that UPDATE through.
``caller_log_checkpoints`` holds a signed (seq, head) per append, append-only too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.db.types

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# Erasure may empty the personal columns and stamp erased_at, once; nothing else may change.
_APPEND_ONLY_BUT_ERASURE = """
CREATE OR REPLACE FUNCTION caller_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
       AND NEW.external_id IS NULL AND NEW.number_dialled IS NULL AND NEW.fields IS NULL
       AND NEW.notes IS NULL AND NEW.record IS NULL
       AND (NEW.id, NEW.seq, NEW.task_id, NEW.participant_id, NEW.program, NEW.campaign,
            NEW.run_id, NEW.task_kind, NEW.agent, NEW.disposition, NEW.human_contact,
            NEW.verified, NEW.claimed_at, NEW.logged_at, NEW.handle_seconds, NEW.attempt,
            NEW.source, NEW.chain, NEW.personal_digest, NEW.prev_hash, NEW.hash)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.seq, OLD.task_id, OLD.participant_id, OLD.program, OLD.campaign,
            OLD.run_id, OLD.task_kind, OLD.agent, OLD.disposition, OLD.human_contact,
            OLD.verified, OLD.claimed_at, OLD.logged_at, OLD.handle_seconds, OLD.attempt,
            OLD.source, OLD.chain, OLD.personal_digest, OLD.prev_hash, OLD.hash)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'caller_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""

_CHECKPOINTS_APPEND_ONLY = """
CREATE FUNCTION caller_log_checkpoints_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'caller_log_checkpoints is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""

_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION caller_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'caller_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    with op.batch_alter_table("caller_log") as batch_op:
        batch_op.add_column(
            sa.Column("chain", sa.String(length=8), server_default="sha256", nullable=False)
        )
        batch_op.add_column(sa.Column("personal_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("erased_at", engine.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.alter_column("external_id", existing_type=sa.String(length=128), nullable=True)
        batch_op.alter_column("record", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column("fields", existing_type=_JSON, nullable=True)
    op.create_table(
        "caller_log_checkpoints",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column("at", engine.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_log_checkpoints")),
    )
    op.create_index(
        op.f("ix_caller_log_checkpoints_seq"), "caller_log_checkpoints", ["seq"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_BUT_ERASURE)
        op.execute(_CHECKPOINTS_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER caller_log_checkpoints_no_update_delete BEFORE UPDATE OR DELETE "
            "ON caller_log_checkpoints FOR EACH ROW EXECUTE FUNCTION "
            "caller_log_checkpoints_append_only()"
        )
        op.execute(
            "CREATE TRIGGER caller_log_checkpoints_no_truncate BEFORE TRUNCATE "
            "ON caller_log_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION "
            "caller_log_checkpoints_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS caller_log_checkpoints_no_truncate ON caller_log_checkpoints")
        op.execute(
            "DROP TRIGGER IF EXISTS caller_log_checkpoints_no_update_delete ON caller_log_checkpoints"
        )
        op.execute("DROP FUNCTION IF EXISTS caller_log_checkpoints_append_only()")
        op.execute(_APPEND_ONLY)
    op.drop_index(op.f("ix_caller_log_checkpoints_seq"), table_name="caller_log_checkpoints")
    op.drop_table("caller_log_checkpoints")
    with op.batch_alter_table("caller_log") as batch_op:
        batch_op.alter_column("fields", existing_type=_JSON, nullable=False)
        batch_op.alter_column("record", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("external_id", existing_type=sa.String(length=128), nullable=False)
        batch_op.drop_column("erased_at")
        batch_op.drop_column("personal_digest")
        batch_op.drop_column("chain")

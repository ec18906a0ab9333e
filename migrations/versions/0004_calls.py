"""agents, caller log, call task assignment

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 13:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.db.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('agents',
    sa.Column('id', _ID, nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('daily_target', sa.Integer(), nullable=False),
    sa.Column('teams', _JSON, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('agent', 'coordinator', 'manager')", name=op.f('ck_agents_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents')),
    sa.UniqueConstraint('login', name=op.f('uq_agents_login'))
    )

    # The audit trail: no foreign keys (it outlives what it names), UNIQUE(seq) keeps the
    # chain from forking, and on PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE.
    op.create_table('caller_log',
    sa.Column('id', _ID, nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('program', sa.String(length=64), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('task_kind', sa.String(length=16), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('number_dialled', sa.String(length=20), nullable=True),
    sa.Column('disposition', sa.String(length=32), nullable=False),
    sa.Column('human_contact', sa.Boolean(), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=True),
    sa.Column('fields', _JSON, nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('claimed_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('logged_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('handle_seconds', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caller_log')),
    sa.UniqueConstraint('seq', name=op.f('uq_caller_log_seq'))
    )
    with op.batch_alter_table('caller_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caller_log_agent_logged_at'), ['agent', 'logged_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_caller_log_participant_id_logged_at'), ['participant_id', 'logged_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_caller_log_task_id'), ['task_id'], unique=False)

    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assigned_agent', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('parent_task_id', _ID, nullable=True))
        batch_op.add_column(sa.Column('source_step_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', engine.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_attempt_at', engine.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_call_tasks_parent_task_id_call_tasks'), 'call_tasks', ['parent_task_id'], ['id'], ondelete='SET NULL')

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            """
            CREATE FUNCTION caller_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'caller_log is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER caller_log_no_update_delete BEFORE UPDATE OR DELETE ON caller_log "
            "FOR EACH ROW EXECUTE FUNCTION caller_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER caller_log_no_truncate BEFORE TRUNCATE ON caller_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION caller_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS caller_log_no_truncate ON caller_log")
        op.execute("DROP TRIGGER IF EXISTS caller_log_no_update_delete ON caller_log")
        op.execute("DROP FUNCTION IF EXISTS caller_log_append_only()")
    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_call_tasks_parent_task_id_call_tasks'), type_='foreignkey')
        batch_op.drop_column('last_attempt_at')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('source_step_id')
        batch_op.drop_column('parent_task_id')
        batch_op.drop_column('assigned_agent')
    with op.batch_alter_table('caller_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caller_log_task_id'))
        batch_op.drop_index(batch_op.f('ix_caller_log_participant_id_logged_at'))
        batch_op.drop_index(batch_op.f('ix_caller_log_agent_logged_at'))
    op.drop_table('caller_log')
    op.drop_table('agents')

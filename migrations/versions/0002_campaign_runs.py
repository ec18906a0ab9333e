"""campaign runs, enrollments, contact ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:03:22.930505
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaign_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('definition_hash', sa.String(length=64), nullable=False),
    sa.Column('definition_source', sa.Text(), nullable=False),
    sa.Column('fire_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('status_changed_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('launched_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('enrolled_count', sa.Integer(), nullable=False),
    sa.Column('holdout_count', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('active', 'paused', 'cancelled', 'completed')", name=op.f('ck_campaign_runs_status')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_campaign_runs_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_runs')),
    # One run per (campaign, one-off key or cron fire time): launches are idempotent.
    sa.UniqueConstraint('campaign', 'fire_key', name=op.f('uq_campaign_runs_campaign_fire_key'))
    )
    op.create_index(op.f('ix_campaign_runs_program_id'), 'campaign_runs', ['program_id'], unique=False)

    op.create_table('contacts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('occurred_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.CheckConstraint("channel IN ('email', 'sms', 'call')", name=op.f('ck_contacts_channel')),
    sa.CheckConstraint("kind IN ('message', 'call')", name=op.f('ck_contacts_kind')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_contacts_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], name=op.f('fk_contacts_run_id_campaign_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts'))
    )
    # Frequency caps count a participant's contacts in a rolling window.
    op.create_index(op.f('ix_contacts_participant_id_occurred_at'), 'contacts', ['participant_id', 'occurred_at'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group', sa.String(length=16), nullable=False),
    sa.Column('enrolled_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('exit_reason', sa.Text(), nullable=True),
    sa.Column('next_action_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_step_index', sa.Integer(), nullable=False),
    sa.CheckConstraint("state IN ('active', 'converted', 'exited', 'completed')", name=op.f('ck_enrollments_state')),
    sa.CheckConstraint('"group" IN (\'treatment\', \'holdout\')', name=op.f('ck_enrollments_group')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_enrollments_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], name=op.f('fk_enrollments_run_id_campaign_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments')),
    # Nobody is enrolled twice in one run, however many launches race.
    sa.UniqueConstraint('run_id', 'participant_id', name=op.f('uq_enrollments_run_id_participant_id'))
    )
    # Already-enrolled and re-entry look-ups.
    op.create_index(op.f('ix_enrollments_campaign_participant_id_enrolled_at'), 'enrollments', ['campaign', 'participant_id', 'enrolled_at'], unique=False)
    op.create_index(op.f('ix_enrollments_participant_id'), 'enrollments', ['participant_id'], unique=False)
    # The sequencer's "due now" scan.
    op.create_index(op.f('ix_enrollments_state_next_action_at'), 'enrollments', ['state', 'next_action_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_enrollments_state_next_action_at'), table_name='enrollments')
    op.drop_index(op.f('ix_enrollments_participant_id'), table_name='enrollments')
    op.drop_index(op.f('ix_enrollments_campaign_participant_id_enrolled_at'), table_name='enrollments')
    op.drop_table('enrollments')
    op.drop_index(op.f('ix_contacts_participant_id_occurred_at'), table_name='contacts')
    op.drop_table('contacts')
    op.drop_index(op.f('ix_campaign_runs_program_id'), table_name='campaign_runs')
    op.drop_table('campaign_runs')

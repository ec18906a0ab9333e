"""foundation: programs, participants, consents, suppressions, events

Revision ID: 0001
Revises:
Create Date: 2026-11-24 08:54:37.954161
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('engine_settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_engine_settings'))
    )
    op.create_table('programs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('region', sa.String(length=2), nullable=False),
    sa.Column('help_text', sa.Text(), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_programs')),
    sa.UniqueConstraint('key', name=op.f('uq_programs_key'))
    )
    op.create_table('suppressions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=True),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel IN ('email', 'sms', 'call', 'all')", name=op.f('ck_suppressions_channel')),
    sa.CheckConstraint("reason IN ('opt_out', 'bounce', 'spam_report', 'do_not_call', 'erasure', 'invalid', 'complaint', 'manual')", name=op.f('ck_suppressions_reason')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
    sa.UniqueConstraint('channel', 'address_hash', name=op.f('uq_suppressions_channel_address_hash'))
    )
    op.create_index(op.f('ix_suppressions_address'), 'suppressions', ['address'], unique=False)
    op.create_table('participants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=True),
    sa.Column('last_name', sa.String(length=100), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('enrolled_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_activity_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('points_balance', sa.Integer(), nullable=False),
    sa.Column('points_expiring', sa.Integer(), nullable=False),
    sa.Column('points_expire_at', sa.Date(), nullable=True),
    sa.Column('tier', sa.String(length=64), nullable=True),
    sa.Column('renewal_date', sa.Date(), nullable=True),
    sa.Column('account_manager', sa.String(length=128), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sample_key', sa.Integer(), nullable=False),
    sa.Column('source_digest', sa.String(length=64), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'inactive', 'lapsed', 'closed')", name=op.f('ck_participants_status')),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_participants_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants')),
    sa.UniqueConstraint('program_id', 'external_id', name=op.f('uq_participants_program_id_external_id'))
    )
    op.create_index(op.f('ix_participants_email'), 'participants', ['email'], unique=False)
    op.create_index(op.f('ix_participants_phone'), 'participants', ['phone'], unique=False)
    op.create_table('activity_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('points', sa.Integer(), nullable=True),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('reference', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_activity_events_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['program_id'], ['programs.id'], name=op.f('fk_activity_events_program_id_programs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_events')),
    sa.UniqueConstraint('program_id', 'reference', name=op.f('uq_activity_events_program_id_reference'))
    )
    op.create_index(op.f('ix_activity_events_participant_id_type_occurred_at'), 'activity_events', ['participant_id', 'type', 'occurred_at'], unique=False)
    op.create_table('participant_consents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('recorded_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.CheckConstraint("channel IN ('email', 'sms', 'call')", name=op.f('ck_participant_consents_channel')),
    sa.CheckConstraint("status IN ('opted_in', 'opted_out')", name=op.f('ck_participant_consents_status')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_participant_consents_participant_id_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_consents')),
    sa.UniqueConstraint('participant_id', 'channel', name=op.f('uq_participant_consents_participant_id_channel'))
    )


def downgrade() -> None:
    op.drop_table('participant_consents')
    op.drop_index(op.f('ix_activity_events_participant_id_type_occurred_at'), table_name='activity_events')
    op.drop_table('activity_events')
    op.drop_index(op.f('ix_participants_phone'), table_name='participants')
    op.drop_index(op.f('ix_participants_email'), table_name='participants')
    op.drop_table('participants')
    op.drop_index(op.f('ix_suppressions_address'), table_name='suppressions')
    op.drop_table('suppressions')
    op.drop_table('programs')
    op.drop_table('engine_settings')

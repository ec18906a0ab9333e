"""outbox, provider events, call tasks, conversions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:31:54.632502
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.db.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('call_tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=True),
    sa.Column('step_id', sa.String(length=64), nullable=True),
    sa.Column('step_index', sa.Integer(), nullable=True),
    sa.Column('script', sa.String(length=128), nullable=True),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('due_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reached_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('campaign', 'callback', 'follow_up')", name=op.f('ck_call_tasks_kind')),
    sa.CheckConstraint("status IN ('open', 'claimed', 'closed')", name=op.f('ck_call_tasks_status')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_call_tasks_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_call_tasks_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], name=op.f('fk_call_tasks_run_id_campaign_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_tasks')),
    sa.UniqueConstraint('enrollment_id', 'step_id', name=op.f('uq_call_tasks_enrollment_id_step_id'))
    )
    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_tasks_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_tasks_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_tasks_status_due_at'), ['status', 'due_at'], unique=False)

    op.create_table('conversions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=False),
    sa.Column('group', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('points', sa.Integer(), nullable=True),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('first_touch', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('last_touch', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('import', 'webhook', 'call')", name=op.f('ck_conversions_source')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_conversions_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['activity_events.id'], name=op.f('fk_conversions_event_id_activity_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_conversions_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], name=op.f('fk_conversions_run_id_campaign_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions')),
    sa.UniqueConstraint('enrollment_id', name=op.f('uq_conversions_enrollment_id'))
    )
    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conversions_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_conversions_run_id_group'), ['run_id', 'group'], unique=False)

    # One message per (enrollment, step): the key that keeps two sequencers from sending twice.
    op.create_table('outbox_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=False),
    sa.Column('step_id', sa.String(length=64), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('template', sa.String(length=128), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('to_address', sa.String(length=320), nullable=True),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('not_before', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('provider', sa.String(length=16), nullable=True),
    sa.Column('provider_message_id', sa.String(length=128), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('opened_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('clicked_at', engine.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('email', 'sms')", name=op.f('ck_outbox_messages_channel')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'skipped', 'unknown')", name=op.f('ck_outbox_messages_status')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_outbox_messages_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_outbox_messages_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], name=op.f('fk_outbox_messages_run_id_campaign_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    sa.UniqueConstraint('enrollment_id', 'step_id', name=op.f('uq_outbox_messages_enrollment_id_step_id')),
    sa.UniqueConstraint('uid', name=op.f('uq_outbox_messages_uid'))
    )
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_messages_participant_id_created_at'), ['participant_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_messages_provider_message_id'), ['provider_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_messages_run_id_step_id_status'), ['run_id', 'step_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_messages_status_not_before'), ['status', 'not_before'], unique=False)

    # A replayed provider webhook finds its event already recorded and changes nothing.
    op.create_table('message_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('participant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_event_id', sa.String(length=128), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', engine.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox_messages.id'], name=op.f('fk_message_events_outbox_id_outbox_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_message_events_participant_id_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_events')),
    sa.UniqueConstraint('provider', 'provider_event_id', name=op.f('uq_message_events_provider_provider_event_id'))
    )
    with op.batch_alter_table('message_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_events_outbox_id'), ['outbox_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_events_participant_id_event_occurred_at'), ['participant_id', 'event', 'occurred_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('message_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_events_participant_id_event_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_message_events_outbox_id'))

    op.drop_table('message_events')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_messages_status_not_before'))
        batch_op.drop_index(batch_op.f('ix_outbox_messages_run_id_step_id_status'))
        batch_op.drop_index(batch_op.f('ix_outbox_messages_provider_message_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_messages_participant_id_created_at'))

    op.drop_table('outbox_messages')
    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversions_run_id_group'))
        batch_op.drop_index(batch_op.f('ix_conversions_participant_id'))

    op.drop_table('conversions')
    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_tasks_status_due_at'))
        batch_op.drop_index(batch_op.f('ix_call_tasks_run_id'))
        batch_op.drop_index(batch_op.f('ix_call_tasks_participant_id'))

    op.drop_table('call_tasks')

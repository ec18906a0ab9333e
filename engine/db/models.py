"""The ORM classes, each mapped onto its Core table of engine/db/tables (where the columns,
constraints and indexes are declared and documented). The schema changes only through Alembic
(migrations/).

The ``Mapped[...]`` annotations type the attributes for mypy; the columns come from the
table. No `from __future__ import annotations` here, unlike elsewhere: with real (not string)
annotations SQLAlchemy need not eval some 250 `Mapped[...]` strings when the classes are
built. The tables' status lists and other constants are re-exported, so
``from engine.db.models import X`` keeps working for all of them.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, event, insert
from sqlalchemy.orm import DeclarativeBase, Mapped

from engine.db.tables import calls, cases, console, members, ops, outbox, runs
from engine.db.tables.base import NAMING_CONVENTION, metadata
from engine.db.tables.calls import (
    AGENT_ROLES,
    CALL_TASK_KINDS,
    CALL_TASK_STATUSES,
)
from engine.db.tables.cases import (
    CASE_ACTIVE_STATUSES,
    CASE_STATUSES,
)
from engine.db.tables.console import (
    CONSOLE_ROLES,
    REPORT_DELIVERY_STATUSES,
)
from engine.db.tables.members import (
    CHANNELS,
    CONSENT_STATUSES,
    NO_GROUP,
    PARTICIPANT_STATUSES,
    SUPPRESSION_CHANNELS,
    SUPPRESSION_REASONS,
)
from engine.db.tables.outbox import (
    DISPATCH_CLAIM_STATES,
    MESSAGE_CHANNELS,
    OUTBOX_STATUSES,
)
from engine.db.tables.runs import (
    CONTACT_KINDS,
    CONVERSION_SOURCES,
    ENROLLMENT_GROUPS,
    ENROLLMENT_STATES,
    RUN_STATUSES,
)

__all__ = [
    "AGENT_ROLES",
    "CALL_TASK_KINDS",
    "CALL_TASK_STATUSES",
    "CASE_ACTIVE_STATUSES",
    "CASE_STATUSES",
    "CHANNELS",
    "CONSENT_STATUSES",
    "CONSOLE_ROLES",
    "CONTACT_KINDS",
    "CONVERSION_SOURCES",
    "DISPATCH_CLAIM_STATES",
    "ENROLLMENT_GROUPS",
    "ENROLLMENT_STATES",
    "MESSAGE_CHANNELS",
    "NAMING_CONVENTION",
    "NO_GROUP",
    "OUTBOX_STATUSES",
    "PARTICIPANT_STATUSES",
    "REPORT_DELIVERY_STATUSES",
    "RUN_STATUSES",
    "SUPPRESSION_CHANNELS",
    "SUPPRESSION_REASONS",
    "ActivityEvent",
    "Agent",
    "AgentPause",
    "Base",
    "CallTask",
    "CallerLogCheckpoint",
    "CallerLogEntry",
    "CampaignRun",
    "CampaignSchedule",
    "Case",
    "CaseEvent",
    "Consent",
    "ConsoleAuditEvent",
    "ConsoleUser",
    "Contact",
    "Conversion",
    "DispatchClaim",
    "EmailGroupUnsubscribe",
    "EngineSetting",
    "Enrollment",
    "MessageEvent",
    "MetricCounter",
    "OutboxMessage",
    "OutboxTally",
    "Participant",
    "ProcessHeartbeat",
    "Program",
    "ProviderCircuit",
    "RateLimitSlot",
    "RejectedWebhookEvent",
    "ReportDelivery",
    "ReportSchedule",
    "SkippedFire",
    "Suppression",
]


class Base(DeclarativeBase):
    metadata = metadata


class Program(Base):
    __table__ = members.programs

    id: Mapped[int]
    key: Mapped[str]
    name: Mapped[str]
    timezone: Mapped[str]
    region: Mapped[str]
    help_text: Mapped[str | None]
    created_at: Mapped[datetime]
    sms_opt_out_notice: Mapped[bool]
    holidays: Mapped[str | None]
    shown_before_verification: Mapped[str | None]
    consent_default_sms_at: Mapped[datetime | None]
    consent_default_call_at: Mapped[datetime | None]


class Participant(Base):
    __table__ = members.participants

    id: Mapped[int]
    program_id: Mapped[int]
    external_id: Mapped[str]
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    email: Mapped[str | None]
    phone: Mapped[str | None]
    timezone: Mapped[str | None]
    locale: Mapped[str | None]
    status: Mapped[str]
    enrolled_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime | None]
    points_balance: Mapped[int]
    points_expiring: Mapped[int]
    points_expire_at: Mapped[date | None]
    tier: Mapped[str | None]
    renewal_date: Mapped[date | None]
    account_manager: Mapped[str | None]
    attributes: Mapped[dict[str, Any]]
    sample_key: Mapped[int]
    source_digest: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Consent(Base):
    __table__ = members.participant_consents

    id: Mapped[int]
    participant_id: Mapped[int]
    channel: Mapped[str]
    status: Mapped[str]
    recorded_at: Mapped[datetime]
    source: Mapped[str]


class Suppression(Base):
    __table__ = members.suppressions

    id: Mapped[int]
    channel: Mapped[str]
    address: Mapped[str | None]
    address_hash: Mapped[str]
    reason: Mapped[str]
    source: Mapped[str]
    note: Mapped[str | None]
    created_at: Mapped[datetime]


class EmailGroupUnsubscribe(Base):
    __table__ = members.email_group_unsubscribes

    address_hash: Mapped[str]
    group_id: Mapped[int]
    left_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class ActivityEvent(Base):
    __table__ = members.activity_events

    id: Mapped[int]
    program_id: Mapped[int]
    participant_id: Mapped[int]
    type: Mapped[str]
    occurred_at: Mapped[datetime]
    points: Mapped[int | None]
    amount: Mapped[Decimal | None]
    reference: Mapped[str]
    source: Mapped[str]
    created_at: Mapped[datetime]


class EngineSetting(Base):
    __table__ = ops.engine_settings

    key: Mapped[str]
    value: Mapped[str]


class RateLimitSlot(Base):
    __table__ = ops.rate_limit_slots

    bucket: Mapped[str]
    next_slot: Mapped[Decimal]


class ProviderCircuit(Base):
    __table__ = ops.provider_circuits

    key: Mapped[str]
    channel: Mapped[str]
    provider: Mapped[str]
    opened_at: Mapped[datetime]
    retry_at: Mapped[datetime]
    failures: Mapped[int]
    last_error: Mapped[str | None]


class MetricCounter(Base):
    __table__ = ops.metric_counters

    name: Mapped[str]
    labels: Mapped[str]
    value: Mapped[float]


class ProcessHeartbeat(Base):
    __table__ = ops.process_heartbeats

    process: Mapped[str]
    beat_at: Mapped[datetime]


class CampaignRun(Base):
    __table__ = runs.campaign_runs

    id: Mapped[int]
    campaign: Mapped[str]
    program_id: Mapped[int]
    definition_hash: Mapped[str]
    definition_source: Mapped[str]
    fire_key: Mapped[str]
    status: Mapped[str]
    status_reason: Mapped[str | None]
    status_changed_at: Mapped[datetime | None]
    launched_at: Mapped[datetime]
    enrolled_count: Mapped[int]
    holdout_count: Mapped[int]
    claim_form: Mapped[dict[str, Any] | None]


class CampaignSchedule(Base):
    __table__ = runs.campaign_schedules

    id: Mapped[int]
    campaign: Mapped[str]
    schedule_hash: Mapped[str]
    description: Mapped[str]
    first_seen_at: Mapped[datetime]


class SkippedFire(Base):
    __table__ = runs.skipped_fires

    id: Mapped[int]
    campaign: Mapped[str]
    fire_key: Mapped[str]
    fire_at: Mapped[datetime]
    skipped_at: Mapped[datetime]
    reason: Mapped[str]


class Enrollment(Base):
    __table__ = runs.enrollments

    id: Mapped[int]
    run_id: Mapped[int]
    campaign: Mapped[str]
    participant_id: Mapped[int]
    group: Mapped[str]
    enrolled_at: Mapped[datetime]
    state: Mapped[str]
    exit_reason: Mapped[str | None]
    next_action_at: Mapped[datetime | None]
    next_step_index: Mapped[int]


class Contact(Base):
    __table__ = runs.contacts

    id: Mapped[int]
    participant_id: Mapped[int]
    channel: Mapped[str]
    run_id: Mapped[int | None]
    occurred_at: Mapped[datetime]
    kind: Mapped[str]
    message_id: Mapped[int | None]


class OutboxMessage(Base):
    __table__ = outbox.outbox_messages

    id: Mapped[int]
    uid: Mapped[str]
    run_id: Mapped[int]
    enrollment_id: Mapped[int]
    participant_id: Mapped[int]
    campaign: Mapped[str]
    step_id: Mapped[str]
    step_index: Mapped[int]
    variant: Mapped[str | None]
    channel: Mapped[str]
    template: Mapped[str]
    locale: Mapped[str | None]
    to_address: Mapped[str | None]
    content: Mapped[dict[str, Any]]
    status: Mapped[str]
    status_reason: Mapped[str | None]
    not_before: Mapped[datetime]
    attempts: Mapped[int]
    claimed_by: Mapped[str | None]
    claimed_until: Mapped[datetime | None]
    claim_id: Mapped[int | None]
    provider: Mapped[str | None]
    provider_message_id: Mapped[str | None]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class DispatchClaim(Base):
    __table__ = outbox.dispatch_claims

    id: Mapped[int]
    state: Mapped[str]
    heartbeat_at: Mapped[datetime | None]


class OutboxTally(Base):
    __table__ = outbox.outbox_tallies

    id: Mapped[int]
    run_id: Mapped[int]
    step_id: Mapped[str]
    channel: Mapped[str]
    variant: Mapped[str | None]
    status: Mapped[str]
    reason: Mapped[str | None]
    messages: Mapped[int]
    opened: Mapped[int]
    clicked: Mapped[int]
    state: Mapped[int]


@event.listens_for(OutboxMessage, "after_insert")
def _tally_orm_insert(_mapper: Any, connection: Connection, row: OutboxMessage) -> None:
    """SQLite: the +1 of an outbox row the ORM inserted (migration 0007 left inserts to their
    writers there; PostgreSQL's statement trigger counts them)."""
    if connection.dialect.name != "sqlite":
        return
    connection.execute(
        insert(OutboxTally).values(
            run_id=row.run_id,
            step_id=row.step_id,
            channel=row.channel,
            variant=row.variant,
            status=row.status,
            reason=row.status_reason if row.status == "skipped" else None,
            messages=1,
            opened=int(row.opened_at is not None),
            clicked=int(row.clicked_at is not None),
        )
    )


class MessageEvent(Base):
    __table__ = outbox.message_events

    id: Mapped[int]
    outbox_id: Mapped[int | None]
    participant_id: Mapped[int | None]
    provider: Mapped[str]
    provider_event_id: Mapped[str]
    event: Mapped[str]
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]


class RejectedWebhookEvent(Base):
    __table__ = outbox.rejected_webhook_events

    id: Mapped[int]
    source: Mapped[str]
    reason: Mapped[str]
    payload: Mapped[str]
    payload_digest: Mapped[str]
    received_at: Mapped[datetime]


class CallTask(Base):
    __table__ = calls.call_tasks

    id: Mapped[int]
    kind: Mapped[str]
    run_id: Mapped[int | None]
    enrollment_id: Mapped[int | None]
    participant_id: Mapped[int]
    campaign: Mapped[str | None]
    step_id: Mapped[str | None]
    step_index: Mapped[int | None]
    script: Mapped[str | None]
    team: Mapped[str | None]
    status: Mapped[str]
    close_reason: Mapped[str | None]
    outcome: Mapped[str | None]
    due_at: Mapped[datetime]
    attempts: Mapped[int]
    max_attempts: Mapped[int]
    claimed_by: Mapped[str | None]
    claimed_until: Mapped[datetime | None]
    reached_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    assigned_agent: Mapped[str | None]
    parent_task_id: Mapped[int | None]
    source_step_id: Mapped[str | None]
    claimed_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    case_id: Mapped[int | None]
    verified_at: Mapped[datetime | None]
    verified_by: Mapped[str | None]


class Conversion(Base):
    __table__ = runs.conversions

    id: Mapped[int]
    enrollment_id: Mapped[int]
    run_id: Mapped[int]
    participant_id: Mapped[int]
    campaign: Mapped[str]
    group: Mapped[str]
    event_id: Mapped[int | None]
    event_type: Mapped[str]
    occurred_at: Mapped[datetime]
    points: Mapped[int | None]
    amount: Mapped[Decimal | None]
    source: Mapped[str]
    first_touch: Mapped[dict[str, Any] | None]
    last_touch: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class Agent(Base):
    __table__ = calls.agents

    id: Mapped[int]
    login: Mapped[str]
    name: Mapped[str]
    role: Mapped[str]
    timezone: Mapped[str]
    daily_target: Mapped[int]
    weekly_target: Mapped[int | None]
    monthly_target: Mapped[int | None]
    teams: Mapped[list[str]]
    languages: Mapped[list[str]]
    active: Mapped[bool]
    created_at: Mapped[datetime]


class AgentPause(Base):
    __table__ = calls.agent_pauses

    id: Mapped[int]
    agent: Mapped[str]
    code: Mapped[str]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None]
    started_by: Mapped[str]
    ended_by: Mapped[str | None]


class CallerLogEntry(Base):
    __table__ = calls.caller_log

    id: Mapped[int]
    seq: Mapped[int]
    task_id: Mapped[int | None]
    participant_id: Mapped[int]
    external_id: Mapped[str | None]
    program: Mapped[str]
    campaign: Mapped[str | None]
    run_id: Mapped[int | None]
    task_kind: Mapped[str]
    agent: Mapped[str]
    number_dialled: Mapped[str | None]
    disposition: Mapped[str]
    human_contact: Mapped[bool]
    verified: Mapped[bool | None]
    fields: Mapped[dict[str, Any] | None]
    notes: Mapped[str | None]
    record: Mapped[str | None]
    claimed_at: Mapped[datetime | None]
    logged_at: Mapped[datetime]
    handle_seconds: Mapped[int | None]
    attempt: Mapped[int]
    source: Mapped[str]
    chain: Mapped[str]
    personal_digest: Mapped[str | None]
    erased_at: Mapped[datetime | None]
    prev_hash: Mapped[str]
    hash: Mapped[str]


class CallerLogCheckpoint(Base):
    __table__ = calls.caller_log_checkpoints

    id: Mapped[int]
    seq: Mapped[int]
    head: Mapped[str]
    at: Mapped[datetime]
    signature: Mapped[str]


class Case(Base):
    __table__ = cases.cases

    id: Mapped[int]
    program_id: Mapped[int]
    participant_id: Mapped[int]
    category: Mapped[str]
    summary: Mapped[str | None]
    status: Mapped[str]
    source: Mapped[str]
    owner_agent: Mapped[str | None]
    owner_team: Mapped[str | None]
    opened_by: Mapped[str]
    opened_at: Mapped[datetime]
    due_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    root_cause: Mapped[str | None]
    resolution: Mapped[str | None]
    closed_at: Mapped[datetime | None]
    reopened: Mapped[int]
    updated_at: Mapped[datetime]


class CaseEvent(Base):
    __table__ = cases.case_events

    id: Mapped[int]
    case_id: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str]
    by: Mapped[str]
    status_from: Mapped[str | None]
    status_to: Mapped[str | None]
    caller_log_id: Mapped[int | None]
    call_task_id: Mapped[int | None]
    text: Mapped[str | None]


class ReportSchedule(Base):
    __table__ = console.report_schedules

    id: Mapped[int]
    subscription: Mapped[str]
    schedule_hash: Mapped[str]
    description: Mapped[str]
    first_seen_at: Mapped[datetime]


class ReportDelivery(Base):
    __table__ = console.report_deliveries

    id: Mapped[int]
    subscription: Mapped[str]
    fire_key: Mapped[str]
    fire_at: Mapped[datetime]
    manual: Mapped[bool]
    period_label: Mapped[str]
    recipients: Mapped[str]
    delivered_to: Mapped[str]
    status: Mapped[str]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None]
    provider_message_id: Mapped[str | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class ConsoleUser(Base):
    __table__ = console.console_users

    id: Mapped[int]
    login: Mapped[str]
    role: Mapped[str]
    agent_id: Mapped[int | None]
    password_hash: Mapped[str]
    active: Mapped[bool]
    session_version: Mapped[int]
    created_at: Mapped[datetime]
    password_set_at: Mapped[datetime]


class ConsoleAuditEvent(Base):
    __table__ = console.console_audit

    id: Mapped[int]
    at: Mapped[datetime]
    event: Mapped[str]
    login: Mapped[str]
    address: Mapped[str | None]
    actor: Mapped[str | None]
    detail: Mapped[str | None]

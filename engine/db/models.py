"""SQLAlchemy 2 typed models. The schema changes only through Alembic (migrations/).

No `from __future__ import annotations` here, unlike elsewhere: with real (not string)
annotations SQLAlchemy need not eval some 250 `Mapped[...]` strings when the classes are
built, which every command pays at start-up (about a quarter of this module's import time).
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    Date,
    Float,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    insert,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.db.types import BigIntId, JSONDict, UTCDateTime

# A naming convention makes constraint names stable, so Alembic can diff and drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PARTICIPANT_STATUSES = ("active", "inactive", "lapsed", "closed")
CHANNELS = ("email", "sms", "call")
SUPPRESSION_CHANNELS = (*CHANNELS, "all")
CONSENT_STATUSES = ("opted_in", "opted_out")
SUPPRESSION_REASONS = (
    "opt_out",
    "bounce",
    "spam_report",
    "do_not_call",
    "erasure",
    "invalid",
    "complaint",
    "manual",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Program(Base):
    """A client loyalty or membership program; every participant belongs to one."""

    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(2))
    help_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Off: the first SMS of a campaign goes without " Reply STOP to opt out." (#4).
    sms_opt_out_notice: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # A public-holiday calendar of the holidays library ("US", "US-CA", "CN", "GB-SCT"): its
    # holidays are not business days (engine/calls/business_days.py). NULL: Monday to Friday.
    holidays: Mapped[str | None] = mapped_column(String(16))
    # The account fields an agent sees before recording that the member's identity was
    # verified (0030; a comma list of engine/calls/verification.py's names). NULL: its default.
    shown_before_verification: Mapped[str | None] = mapped_column(String(200))
    # The program states consent (`programs set --consent-default sms=yes`): since this instant
    # a member whose consent on SMS / calls is not stated counts as opted in; a stated no, an
    # opt-out or a suppression still wins (engine/consent/defaults.py). NULL: not stated is no.
    consent_default_sms_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consent_default_call_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        CheckConstraint(_in("status", PARTICIPANT_STATUSES), name="status"),
        Index(None, "email"),
        Index(None, "phone"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    external_id: Mapped[str] = mapped_column(String(128))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA
    locale: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    points_balance: Mapped[int] = mapped_column(default=0)
    points_expiring: Mapped[int] = mapped_column(default=0)
    points_expire_at: Mapped[date | None] = mapped_column(Date)
    tier: Mapped[str | None] = mapped_column(String(64))
    renewal_date: Mapped[date | None] = mapped_column(Date)
    account_manager: Mapped[str | None] = mapped_column(String(128))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    # engine.sampling.sample_key(program key, external id): deterministic holdout / A/B groups.
    sample_key: Mapped[int] = mapped_column()
    # Digest of the source row as last imported: an unchanged row in a daily feed is
    # recognised by this alone, without validating it again.
    source_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Consent(Base):
    """The participant's current consent on one channel, with when and where it came from."""

    __tablename__ = "participant_consents"
    __table_args__ = (
        UniqueConstraint("participant_id", "channel"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("status", CONSENT_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(64))


class Suppression(Base):
    """An address or number that must not be contacted on a channel, across all programs.

    Keyed by the SHA-256 of the normalised address so that an erased participant's entry still
    blocks a re-import after the address itself has been removed.
    """

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("channel", "address_hash"),
        CheckConstraint(_in("channel", SUPPRESSION_CHANNELS), name="channel"),
        CheckConstraint(_in("reason", SUPPRESSION_REASONS), name="reason"),
        # Audience and send-time checks join on the plain address.
        Index(None, "address"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(320))
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# An unsubscribe from a group we cannot name (see EmailGroupUnsubscribe).
NO_GROUP = -1


class EmailGroupUnsubscribe(Base):
    """A SendGrid suppression group an email address left, and when: what lets a
    ``group_resubscribe`` lift the suppression that group unsubscribes made, and no other
    (engine/webhooks/sendgrid_groups.py).

    Keyed by the address's hash, as suppressions are, and the group (SendGrid's
    ``asm_group_id``). ``left_at`` is SendGrid's event time, the latest on replay;
    ``recorded_at`` is when we recorded that. Group ``NO_GROUP`` (-1) is one we cannot name: an
    event without ``asm_group_id``, or a group entry written before groups were recorded
    (migration 0012). No resubscribe names it, so its address stays suppressed. An erasure
    deletes the address's rows.
    """

    __tablename__ = "email_group_unsubscribes"
    __table_args__ = (CheckConstraint(f"group_id >= {NO_GROUP}", name="group_id"),)

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    left_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivityEvent(Base):
    """Something a participant did: login, redemption, renewal, activation, payment..."""

    __tablename__ = "activity_events"
    __table_args__ = (
        UniqueConstraint("program_id", "reference"),
        # Audience conditions ask "was there a <type> for this participant since <t>?".
        Index(None, "participant_id", "type", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    points: Mapped[int | None] = mapped_column()
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    # The source system's reference; when a feed has none, a digest of the event's content,
    # so re-importing the same file is still idempotent.
    reference: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EngineSetting(Base):
    """Values the engine generates once and keeps (e.g. the unsubscribe signing key)."""

    __tablename__ = "engine_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RateLimitSlot(Base):
    """The timeline of one send rate limit shared by every dispatcher on PostgreSQL (a
    channel and its sender, e.g. ``sms:twilio:MG...``): free from ``next_slot`` on, in seconds
    since the epoch on the database's clock (numeric: exact however small the slots).
    engine/sending/shared_ratelimit.py reserves slots by moving it on. UNLOGGED on PostgreSQL
    (migration 0008); unused on SQLite."""

    __tablename__ = "rate_limit_slots"

    bucket: Mapped[str] = mapped_column(String(400), primary_key=True)
    next_slot: Mapped[Decimal] = mapped_column(Numeric)


class ProviderCircuit(Base):
    """A provider (and sender) that is down: its channel waits, its messages spend no attempt
    (engine/sending/circuits.py). Keyed like the rate limits (``email:sendgrid:rewards@...``);
    no row means the circuit is closed. Until ``retry_at`` no dispatcher claims for it; then one
    request probes. ``failures``: probes failed in a row (the wait doubles each time)."""

    __tablename__ = "provider_circuits"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retry_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)


class MetricCounter(Base):
    """A counter of something that happens in any process (a send, a provider error, a
    webhook request, a tick's seconds), summed over every process that ever added to it:
    each process adds what it counted since its last flush (engine/metrics/counters.py), and
    ``campaign serve`` exposes the sums on /metrics. ``labels`` is the label set as canonical
    JSON (sorted keys). Rows are few: one per metric and label set, never per event."""

    __tablename__ = "metric_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(400), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ProcessHeartbeat(Base):
    """When a kind of process (``dispatcher``, ``tick``) last showed it was alive, whichever
    of its instances that was: /metrics turns it into the age of the freshest."""

    __tablename__ = "process_heartbeats"

    process: Mapped[str] = mapped_column(String(32), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --------------------------------------------------------------------------- campaign runs

RUN_STATUSES = ("active", "paused", "cancelled", "completed")
ENROLLMENT_GROUPS = ("treatment", "holdout")
ENROLLMENT_STATES = ("active", "converted", "exited", "completed")
CONTACT_KINDS = ("message", "call")


class CampaignRun(Base):
    """One launch of a campaign: a one-off launch, or one fire time of a recurring campaign.

    ``status`` is what the sequencer obeys: ``active`` runs advance their enrollments;
    ``paused`` runs keep their enrollments but nothing is sent or called until resumed;
    ``cancelled`` runs are over for good (their open enrollments are exited) and cannot be
    resumed; ``completed`` runs have no work left: no treatment enrollment with steps left, no
    pending message, no open call task (engine/run_work.py). UNIQUE(campaign, fire_key) makes
    a repeated or concurrent launch of the same one-off campaign (fire_key ``once``) or of the
    same cron fire time (fire_key = the fire time in ISO 8601 UTC) create one run only.
    The definition's source text and hash are kept so that editing the file later never
    changes what an old run did.
    """

    __tablename__ = "campaign_runs"
    __table_args__ = (
        UniqueConstraint("campaign", "fire_key"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index(None, "program_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    definition_hash: Mapped[str] = mapped_column(String(64))
    definition_source: Mapped[str] = mapped_column(Text)
    fire_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Filled once by the launch: every enrollment (both groups), and the holdout share of it.
    enrolled_count: Mapped[int] = mapped_column(default=0)
    holdout_count: Mapped[int] = mapped_column(default=0)


class CampaignSchedule(Base):
    """When the engine first saw each schedule of a campaign (``schedule_hash``: sha256 of its
    cron and zone, or its one-off start). A new or edited schedule launches from its next fire
    time on: an older fire of the same crontab was never this schedule's (engine/schedules.py).
    """

    __tablename__ = "campaign_schedules"
    __table_args__ = (UniqueConstraint("campaign", "schedule_hash"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    schedule_hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SkippedFire(Base):
    """A cron fire time that was not launched, and why: later than the misfire grace, or
    before its schedule was first seen. One row per (campaign, fire key), so a tick reports a
    skip once; ``campaign runs skipped`` lists them."""

    __tablename__ = "skipped_fires"
    __table_args__ = (UniqueConstraint("campaign", "fire_key"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    fire_key: Mapped[str] = mapped_column(String(64))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime())
    skipped_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)


class Enrollment(Base):
    """A participant in one run, in the treatment or the holdout group.

    Treatment enrollments start with ``next_action_at = enrolled_at`` and step 0; the
    sequencer advances them. Holdout enrollments are never contacted: they start with
    ``next_action_at`` NULL and exist so conversions can be compared against them.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("run_id", "participant_id"),
        CheckConstraint(_in('"group"', ENROLLMENT_GROUPS), name="group"),
        CheckConstraint(_in("state", ENROLLMENT_STATES), name="state"),
        # "Is this participant in (or was ever in / recently in) this campaign?"
        Index(None, "campaign", "participant_id", "enrolled_at"),
        # The sequencer's "what is due now" scan, resumable after (next_action_at, id) (0010).
        Index(None, "state", "next_action_at", "id"),
        Index(None, "participant_id"),
        # "Has this run an enrollment with steps left?" (engine/run_work.py; 0014).
        Index(
            "ix_enrollments_open_by_run",
            "run_id",
            sqlite_where=text("state = 'active' AND \"group\" = 'treatment'"),
            postgresql_where=text("state = 'active' AND \"group\" = 'treatment'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    campaign: Mapped[str] = mapped_column(String(64))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    group: Mapped[str] = mapped_column(String(16))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="active")
    exit_reason: Mapped[str | None] = mapped_column(Text)
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_step_index: Mapped[int] = mapped_column(default=0)


class Contact(Base):
    """The contact ledger: every message sent and call made, across all campaigns.

    Frequency caps count rows here in a rolling window; the sending and calling work append
    to it. ``run_id`` is NULL for contacts outside a campaign run.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("kind", CONTACT_KINDS), name="kind"),
        Index(None, "participant_id", "occurred_at"),
        Index(
            None,
            "message_id",
            unique=True,
            sqlite_where=text("message_id IS NOT NULL"),
            postgresql_where=text("message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("campaign_runs.id", ondelete="SET NULL"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    # The outbox message this contact is (NULL for calls): one contact per message however
    # many writers record it (the dispatcher, a provider event, `outbox resolve --sent`),
    # whose inserts skip a message that has one (engine/sending/contact_ledger.py; 0011).
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="SET NULL")
    )


# --------------------------------------------------------------------------- outbox

MESSAGE_CHANNELS = ("email", "sms")
# engine/sending/outbox_status.py holds the transitions between these; see DESIGN.md
# "Outbox states".
OUTBOX_STATUSES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "skipped",
    "unknown",
)


class OutboxMessage(Base):
    """One email or SMS of one step for one enrollment, from rendering to its last provider event.

    UNIQUE(enrollment_id, step_id) is what makes "never sent twice" hold however many
    sequencers race. ``uid`` is our message id: it travels in SendGrid ``custom_args`` and in
    the Twilio status callback URL, so provider events find their row. ``content`` holds the
    rendered message exactly as it will be sent (subject/html/text/headers, or the SMS body).
    ``not_before`` is the earliest instant it may go (the step's due time, later when the
    send window or the cap says wait, or a retry's backoff). A dispatcher's claim is a lease:
    ``claimed_by`` until ``claimed_until``, of the batch ``claim_id`` (DispatchClaim).
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        UniqueConstraint("uid"),
        CheckConstraint(_in("channel", MESSAGE_CHANNELS), name="channel"),
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        # The dispatcher's "what may go now" scan.
        Index(None, "status", "not_before"),
        # Provider events find their message (only messages a provider answered: 0032).
        Index(
            None,
            "provider_message_id",
            sqlite_where=text("provider_message_id IS NOT NULL"),
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        # Reports: funnel per run and step.
        Index(None, "run_id", "step_id", "status"),
        # The campaign report's A/B results: a conversion's variant, without the table (0005).
        Index(
            "ix_outbox_messages_variants",
            "enrollment_id",
            "step_id",
            "status",
            "variant",
            "sent_at",
            sqlite_where=text("variant IS NOT NULL"),
            postgresql_where=text("variant IS NOT NULL"),
        ),
        Index(None, "participant_id", "created_at"),
        # The caps count a member's unknown messages (engine/sending/contact_ledger.py; 0009).
        # Messages whose content has not been purged yet, by age (engine/retention.py; 0021).
        Index(
            "ix_outbox_messages_unpurged",
            "created_at",
            sqlite_where=text("to_address IS NOT NULL"),
            postgresql_where=text("to_address IS NOT NULL"),
        ),
        Index(
            "ix_outbox_messages_unknown",
            "participant_id",
            sqlite_where=text("status = 'unknown'"),
            postgresql_where=text("status = 'unknown'"),
        ),
        # "Has this run a pending message?" (engine/run_work.py; 0014).
        Index(
            "ix_outbox_messages_pending_by_run",
            "run_id",
            sqlite_where=text("status IN ('queued', 'sending', 'unknown')"),
            postgresql_where=text("status IN ('queued', 'sending', 'unknown')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    # The enrollment's run and participant. No keys of their own (migration 0032): the
    # enrollment's key covers them (deleting a run or a participant deletes its enrollments,
    # and so their messages), and each key cost a parent lookup per message made.
    run_id: Mapped[int] = mapped_column(BigIntId)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(BigIntId)
    campaign: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(64))
    step_index: Mapped[int] = mapped_column()
    variant: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str | None] = mapped_column(String(16))
    to_address: Mapped[str | None] = mapped_column(String(320))
    content: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    status_reason: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The claim (DispatchClaim) that holds it while ``sending``; stale otherwise.
    claim_id: Mapped[int | None] = mapped_column(BigInteger)
    provider: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The deadline (0016): past it the message is skipped as ``expired``, never sent late.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


DISPATCH_CLAIM_STATES = ("claimed", "handed", "lapsed")


class DispatchClaim(Base):
    """One batch a dispatcher claimed, while any of its messages is ``sending``: whether the
    batch was handed to the thread that sends (engine/sending/dispatch.py, the hand-off mark).

    ``claimed`` (written with the claim): nothing of it has gone; ``handed`` (committed just
    before the first request): its messages may have gone, so a lease that runs out makes them
    ``unknown``; ``lapsed`` (its lease ran out first): its messages went back to the queue and
    this claim never sends. A hand-off and a lapse each move ``claimed`` on with one
    conditional UPDATE of this row, so only one of them ever happens. The id is random, and
    is written into the messages it claims (``outbox_messages.claim_id``, no foreign key: the
    row is dropped once none of its messages is ``sending``, and a message keeps the id).
    UNLOGGED on PostgreSQL (migration 0011): a hand-off's commit waits for no WAL flush, and
    a server crash, which empties the table, makes every lease of a missing claim end
    ``unknown``, as a handed one does."""

    __tablename__ = "dispatch_claims"
    __table_args__ = (CheckConstraint(_in("state", DISPATCH_CLAIM_STATES), name="state"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(8))
    # Moved on every few seconds by the live dispatcher (migration 0017): a claim whose
    # heartbeat is a minute old is a dead dispatcher's. NULL: only the lease counts.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxTally(Base):
    """Outbox messages counted per (run, step, channel, variant, status, skip reason): what the
    campaign report's funnel reads instead of counting 10,000,000 outbox rows.

    Database triggers (migration 0005) write it, so no code path can miss a change: +1 for an
    outbox row inserted, -1 for one deleted, and -1 for the old key with +1 for the new one
    when a row's status, skip reason, variant, open or click changes (PostgreSQL: one row
    per key per statement, net; SQLite: rows per outbox row). Except SQLite's inserts
    (migration 0007: a row trigger there cost a quarter of a large step's write time): the
    sequencer's bulk insert counts its rows (engine.reports.tallies: tally_counted, or
    tally_inserted when the unique key refused some) and an ORM insert is counted by
    ``_tally_orm_insert`` below; nothing else inserts outbox rows.
    Writers only INSERT, so concurrent dispatchers never wait on a shared counter. The tick
    folds each run's rows into one per key (engine.reports.tallies.fold_tallies); ``state``
    tells the rows the triggers added (0) from folded ones (1) and ones being folded (2).
    """

    __tablename__ = "outbox_tallies"
    __table_args__ = (
        Index(None, "run_id"),
        Index(None, "state", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigIntId)
    step_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    variant: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)  # status_reason of skipped messages only
    messages: Mapped[int] = mapped_column()
    opened: Mapped[int] = mapped_column()
    clicked: Mapped[int] = mapped_column()
    state: Mapped[int] = mapped_column(default=0, server_default="0")


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
    """What a provider told us: a delivery event, an open or click, an opt-out, an inbound reply.

    UNIQUE(provider, provider_event_id) makes a replayed webhook batch change nothing.
    ``outbox_id`` is NULL for events about no message of ours (an inbound SMS, say);
    ``participant_id`` is set whenever the sender or recipient is known.
    """

    __tablename__ = "message_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index(None, "outbox_id"),
        # Sequence conditions ask "did this participant reply/open since <t>?".
        Index(None, "participant_id", "event", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id", ondelete="SET NULL")
    )
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    provider: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class RejectedWebhookEvent(Base):
    """An event a webhook received and could not store (a lone surrogate, a number of
    thousands of digits...): kept with the reason, while the good events of the same batch
    are applied and the provider gets a 2xx (a 5xx would make it retry the whole batch, bad
    event included, for a day). ``payload`` is the event as JSON text with every non-ASCII
    character escaped, cut at 16 KB; UNIQUE(source, payload_digest) keeps a replay from
    adding it twice."""

    __tablename__ = "rejected_webhook_events"
    __table_args__ = (UniqueConstraint("source", "payload_digest"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # sendgrid | twilio | events
    reason: Mapped[str] = mapped_column(String(1000))
    payload: Mapped[str] = mapped_column(Text)
    payload_digest: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --------------------------------------------------------------------------- call tasks

CALL_TASK_KINDS = ("campaign", "callback", "follow_up")
CALL_TASK_STATUSES = ("open", "claimed", "closed")


class CallTask(Base):
    """Work on an agent's call list: a call step of a campaign, a callback, or a follow-up of
    an inbound reply. UNIQUE(enrollment_id, step_id) gives one campaign task per step; callbacks
    and follow-ups have no step (NULLs never collide). ``reached_at`` is set when an agent
    spoke with the participant (the ``not_reached_by_phone`` step condition reads it)."""

    __tablename__ = "call_tasks"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        CheckConstraint(_in("kind", CALL_TASK_KINDS), name="kind"),
        CheckConstraint(_in("status", CALL_TASK_STATUSES), name="status"),
        Index(None, "status", "due_at"),
        Index(None, "participant_id"),
        Index(None, "run_id"),
        # "Has this run an open call task?" (engine/run_work.py; 0014).
        Index(
            "ix_call_tasks_open_by_run",
            "run_id",
            sqlite_where=text("status IN ('open', 'claimed')"),
            postgresql_where=text("status IN ('open', 'claimed')"),
        ),
        # /metrics: open call tasks by team, from the index alone (engine/metrics; 0027).
        Index(
            "ix_call_tasks_open_by_team",
            "team",
            "status",
            sqlite_where=text("status IN ('open', 'claimed')"),
            postgresql_where=text("status IN ('open', 'claimed')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="campaign")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    campaign: Mapped[str | None] = mapped_column(String(64))
    step_id: Mapped[str | None] = mapped_column(String(64))
    step_index: Mapped[int | None] = mapped_column()
    script: Mapped[str | None] = mapped_column(String(128))
    team: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    close_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added by 0004 (engine/calls): an agent-only task (agent-only callback) names its agent;
    # a callback or follow-up points at the task it came from and keeps that task's step (its
    # script, talking points, priority); claimed_at starts the handle time.
    assigned_agent: Mapped[str | None] = mapped_column(String(64))
    parent_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_tasks.id", ondelete="SET NULL")
    )
    source_step_id: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The deadline (0016): past it the task is not served and is closed as ``expired``.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A follow-up of a case (0023, engine/cases): the call is recorded in the case's history.
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True
    )
    # The claim's agent recorded that the member's identity was verified (0030): the full
    # account is shown from then on, for this claim only (verified_by/at must match the claim).
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_by: Mapped[str | None] = mapped_column(String(64))


# --------------------------------------------------------------------------- conversions

CONVERSION_SOURCES = ("import", "webhook", "call")


class Conversion(Base):
    """A goal event of an enrolled participant inside the campaign's attribution window.

    One per enrollment (the earliest goal event counts), in either group: holdout conversions
    are the baseline of the lift. One per event and campaign: an event inside the windows of
    several runs converts the member's most recent enrollment only (engine/conversions.py).
    ``first_touch``/``last_touch`` are the contacts before the event
    (channel, step, variant, agent, message or call task id, when); NULL when none was made.
    """

    __tablename__ = "conversions"
    __table_args__ = (
        UniqueConstraint("enrollment_id"),
        # One event converts one enrollment of a campaign, however many runs overlap (0018).
        UniqueConstraint("campaign", "event_id"),
        CheckConstraint(_in("source", CONVERSION_SOURCES), name="source"),
        Index(None, "run_id", "group"),
        Index(None, "participant_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    campaign: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("activity_events.id", ondelete="SET NULL")
    )
    event_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    points: Mapped[int | None] = mapped_column()
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    source: Mapped[str] = mapped_column(String(16))
    first_touch: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)
    last_touch: Mapped[dict[str, Any] | None] = mapped_column(JSONDict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# ------------------------------------------------------------------- calls (agents, caller log)

AGENT_ROLES = ("agent", "coordinator", "manager")


class Agent(Base):
    """A person who works call lists. ``teams`` (a JSON list such as ["renewals",
    "escalations"]) decides which call tasks they are served; ``daily_target``,
    ``weekly_target`` and ``monthly_target`` are their outbound calling plan (a weekly or
    monthly target left NULL is the daily one times the business days of the period)."""

    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("login"),
        CheckConstraint(_in("role", AGENT_ROLES), name="role"),
        CheckConstraint("weekly_target >= 0", name="weekly_target"),
        CheckConstraint("monthly_target >= 0", name="monthly_target"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    timezone: Mapped[str] = mapped_column(String(64))
    daily_target: Mapped[int] = mapped_column(default=0)
    weekly_target: Mapped[int | None] = mapped_column(default=None)
    monthly_target: Mapped[int | None] = mapped_column(default=None)
    teams: Mapped[list[str]] = mapped_column(JSONDict, default=list)
    # Languages they speak (["zh", "en"]): a member's task goes first to an agent who speaks
    # the member's language (engine/calls/language_routing.py); [] = served as before.
    languages: Mapped[list[str]] = mapped_column(
        JSONDict, default=list, server_default=text("'[]'")
    )
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AgentPause(Base):
    """An agent away from the phone with a reason code (break, training, meeting...): from
    ``started_at`` to ``ended_at`` (NULL while it lasts; at most one open pause per agent).
    Paused time is neither talk (handle) time nor idle time (engine/calls/pauses.py)."""

    __tablename__ = "agent_pauses"
    __table_args__ = (
        Index(None, "agent", "started_at"),
        Index(
            "uq_agent_pauses_open",
            "agent",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    agent: Mapped[str] = mapped_column(String(64))  # the agent's login
    code: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # resumed, next call, signed out
    end_reason: Mapped[str | None] = mapped_column(String(32))
    started_by: Mapped[str] = mapped_column(String(64))  # the agent, or "cli"
    ended_by: Mapped[str | None] = mapped_column(String(64))


class CallerLogEntry(Base):
    """The caller log: one row per documented call, append-only and chained with a keyed MAC.

    ``hash`` = HMAC(key, prev_hash + canonical JSON of the other columns, in which the personal
    columns appear only as ``personal_digest`` = HMAC(key, their canonical JSON)); the key is
    never in the database (engine/calls/log_key.py). Erasure empties the personal columns and
    sets ``erased_at``; the chain still verifies. ``chain``: 'hmac', or 'sha256' for entries
    written before migration 0020 (unkeyed). ``seq`` is the position in the chain (UNIQUE: two
    appenders can never both write entry n, so the chain cannot fork). No foreign keys on
    purpose: the audit trail outlives the tasks and participants it names, and on PostgreSQL a
    trigger refuses UPDATE (but erasure's) and DELETE (a cascade would be one).
    """

    __tablename__ = "caller_log"
    __table_args__ = (
        UniqueConstraint("seq"),
        Index(None, "agent", "logged_at"),
        Index(None, "participant_id", "logged_at"),
        Index(None, "task_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    seq: Mapped[int] = mapped_column()
    task_id: Mapped[int | None] = mapped_column()
    participant_id: Mapped[int] = mapped_column()
    external_id: Mapped[str | None] = mapped_column(String(128))
    program: Mapped[str] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column()
    task_kind: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str] = mapped_column(String(64))
    number_dialled: Mapped[str | None] = mapped_column(String(20))
    disposition: Mapped[str] = mapped_column(String(32))
    human_contact: Mapped[bool] = mapped_column()
    verified: Mapped[bool | None] = mapped_column()
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSONDict, default=dict)
    notes: Mapped[str | None] = mapped_column(Text)
    # the standard call record rendered from the template (NULL once erased)
    record: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    handle_seconds: Mapped[int | None] = mapped_column()
    attempt: Mapped[int] = mapped_column()
    source: Mapped[str] = mapped_column(String(16))  # 'agent' (calls log) or 'dialer' (import)
    chain: Mapped[str] = mapped_column(String(8), default="hmac", server_default="sha256")
    personal_digest: Mapped[str | None] = mapped_column(String(64))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class CallerLogCheckpoint(Base):
    """A signed (seq, head) of the caller log, written with every append: a log whose tail or
    whole content was deleted no longer reaches its newest checkpoint. Append-only like the log
    (a PostgreSQL trigger); ``signature`` = HMAC(key, "checkpoint:seq:head:at")."""

    __tablename__ = "caller_log_checkpoints"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    seq: Mapped[int] = mapped_column(index=True)
    head: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str] = mapped_column(String(64))


# --------------------------------------------------------------------------- cases (0023)

CASE_STATUSES = ("open", "waiting_on_member", "waiting_on_us", "resolved", "closed")
# Statuses of a case still being worked (one such case per member and category).
CASE_ACTIVE_STATUSES = ("open", "waiting_on_member", "waiting_on_us")


class Case(Base):
    """A complaint, escalation or request followed through several contacts until it is
    closed (engine/cases). One active case per (participant, category): a partial unique
    index, so a second complaint joins the first even when two agents log at once. ``due_at``
    comes from the program's service level for the category; ``root_cause`` is set when it is
    resolved, from the program's list."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
        CheckConstraint(
            "status NOT IN ('resolved', 'closed') OR root_cause IS NOT NULL", name="root_cause"
        ),
        Index(
            "uq_cases_active_per_category",
            "participant_id",
            "category",
            unique=True,
            sqlite_where=text(f"status IN {CASE_ACTIVE_STATUSES!r}"),
            postgresql_where=text(f"status IN {CASE_ACTIVE_STATUSES!r}"),
        ),
        Index(None, "status", "due_at"),
        Index(None, "program_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), default="open")
    source: Mapped[str] = mapped_column(String(16))  # call / sms / manual
    owner_agent: Mapped[str | None] = mapped_column(String(64))
    owner_team: Mapped[str | None] = mapped_column(String(64))
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    root_cause: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reopened: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseEvent(Base):
    """A case's history, in order: opened, call (linked to its caller log entry), note,
    message (the member's SMS), assigned, status changes, resolved, reopened, closed; each
    with who (an agent's login, ``member`` or ``system``) and when."""

    __tablename__ = "case_events"
    __table_args__ = (Index(None, "case_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(64))
    status_from: Mapped[str | None] = mapped_column(String(24))
    status_to: Mapped[str | None] = mapped_column(String(24))
    # The call's caller log entry; no foreign key, as none points into the audit trail (a
    # TRUNCATE of it must meet its trigger, not a constraint).
    caller_log_id: Mapped[int | None] = mapped_column(BigInteger)
    call_task_id: Mapped[int | None] = mapped_column()
    text: Mapped[str | None] = mapped_column(Text)


# ------------------------------------------------------------- report subscriptions (0028)

REPORT_DELIVERY_STATUSES = (
    "pending",
    "sending",
    "retrying",
    "sent",
    "failed",
    "unknown",
    "skipped",
)


class ReportSchedule(Base):
    """When the engine first saw each schedule of a report subscription: a new or edited
    schedule delivers from its next fire time on (like ``campaign_schedules``)."""

    __tablename__ = "report_schedules"
    __table_args__ = (UniqueConstraint("subscription", "schedule_hash"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subscription: Mapped[str] = mapped_column(String(64))
    schedule_hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReportDelivery(Base):
    """One delivery of a report subscription: one row per (subscription, fire key), so two
    ticks or a tick beside the daemon deliver a fire once (engine/subscriptions/deliveries.py).
    ``fire_key`` is the fire's UTC ISO time, or ``send:<time>:<n>`` for `campaign reports
    send`. A retryable failure goes back to ``retrying`` with ``next_attempt_at``; ``failed``
    and ``unknown`` are listed by `campaign reports deliveries`, never retried blindly."""

    __tablename__ = "report_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription", "fire_key"),
        CheckConstraint(_in("status", REPORT_DELIVERY_STATUSES), name="status"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subscription: Mapped[str] = mapped_column(String(64))
    fire_key: Mapped[str] = mapped_column(String(96))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime())
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    period_label: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[str] = mapped_column(Text)  # comma-separated
    delivered_to: Mapped[str] = mapped_column(Text, default="")  # those sent so far
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


CONSOLE_ROLES = ("agent", "supervisor", "manager", "coordinator")


class ConsoleUser(Base):
    """A person who signs in to the browser console (engine/web). ``agent_id`` links an
    agent's user to their row in ``agents`` (their queue, teams, zone); other roles need none.
    ``session_version`` is in every session cookie: raising it (disable, new password, role
    change) signs the person out everywhere at once."""

    __tablename__ = "console_users"
    __table_args__ = (
        UniqueConstraint("login"),
        CheckConstraint(_in("role", CONSOLE_ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_set_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleAuditEvent(Base):
    """Who signed in, failed to, was added, disabled, given a new password or a new role, and
    from which address. Failed sign-ins here also drive the sign-in rate limit
    (engine/web/audit.py), so the limit and the record can never disagree."""

    __tablename__ = "console_audit"
    __table_args__ = (
        Index(None, "login", "event", "at"),
        Index(None, "address", "event", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(32))
    login: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))  # who did it (a CLI user: "cli")
    detail: Mapped[str | None] = mapped_column(Text)

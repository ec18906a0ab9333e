"""Campaign runs and what they did: schedules, skipped fires, enrollments, contacts,
conversions.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from engine.db.tables.base import PartialIndex, is_one_of, metadata
from engine.db.tables.members import CHANNELS
from engine.db.types import BigIntId, JSONDict, UTCDateTime

RUN_STATUSES = ("active", "paused", "cancelled", "completed")
ENROLLMENT_GROUPS = ("treatment", "holdout")
ENROLLMENT_STATES = ("active", "converted", "exited", "completed")
CONTACT_KINDS = ("message", "call")
CONVERSION_SOURCES = ("import", "webhook", "call")

# One launch of a campaign: a one-off launch, or one fire time of a recurring campaign.
#
# ``status`` is what the sequencer obeys: ``active`` runs advance their enrollments;
# ``paused`` runs keep their enrollments but nothing is sent or called until resumed;
# ``cancelled`` runs are over for good (their open enrollments are exited) and cannot be
# resumed; ``completed`` runs have no work left: no treatment enrollment with steps left, no
# pending message, no open call task (engine/run_work.py). UNIQUE(campaign, fire_key) makes
# a repeated or concurrent launch of the same one-off campaign (fire_key ``once``) or of the
# same cron fire time (fire_key = the fire time in ISO 8601 UTC) create one run only.
# The definition's source text and hash are kept so that editing the file later never
# changes what an old run did.
campaign_runs = Table(
    "campaign_runs",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("program_id", BigIntId, ForeignKey("programs.id"), nullable=False),
    Column("definition_hash", String(64), nullable=False),
    Column("definition_source", Text, nullable=False),
    Column("fire_key", String(64), nullable=False),
    Column("status", String(16), default="active", nullable=False),
    Column("status_reason", Text),
    Column("status_changed_at", UTCDateTime()),
    Column("launched_at", UTCDateTime(), nullable=False),
    # Filled once by the launch: every enrollment (both groups), and the holdout share of it.
    Column("enrolled_count", Integer, default=0, nullable=False),
    Column("holdout_count", Integer, default=0, nullable=False),
    # What claiming a call reads of the definition, worked out at launch (#18):
    # engine/calls/claim_form.py. NULL for a run inserted without it (read from the text then).
    Column("claim_form", JSONDict, nullable=True),
    UniqueConstraint("campaign", "fire_key"),
    CheckConstraint(is_one_of("status", RUN_STATUSES), name="status"),
    Index(None, "program_id"),
)


# When the engine first saw each schedule of a campaign (``schedule_hash``: sha256 of its
# cron and zone, or its one-off start). A new or edited schedule launches from its next fire
# time on: an older fire of the same crontab was never this schedule's (engine/schedules.py).
campaign_schedules = Table(
    "campaign_schedules",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("schedule_hash", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    UniqueConstraint("campaign", "schedule_hash"),
)


# A cron fire time that was not launched, and why: later than the misfire grace, or
# before its schedule was first seen. One row per (campaign, fire key), so a tick reports a
# skip once; ``campaign runs skipped`` lists them.
skipped_fires = Table(
    "skipped_fires",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("campaign", String(64), nullable=False),
    Column("fire_key", String(64), nullable=False),
    Column("fire_at", UTCDateTime(), nullable=False),
    Column("skipped_at", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("campaign", "fire_key"),
)


# A participant in one run, in the treatment or the holdout group.
#
# Treatment enrollments start with ``next_action_at = enrolled_at`` and step 0; the
# sequencer advances them. Holdout enrollments are never contacted: they start with
# ``next_action_at`` NULL and exist so conversions can be compared against them.
enrollments = Table(
    "enrollments",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("run_id", BigIntId, ForeignKey("campaign_runs.id", ondelete="CASCADE"), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("group", String(16), nullable=False),
    Column("enrolled_at", UTCDateTime(), nullable=False),
    Column("state", String(16), default="active", nullable=False),
    Column("exit_reason", Text),
    Column("next_action_at", UTCDateTime()),
    Column("next_step_index", Integer, default=0, nullable=False),
    UniqueConstraint("run_id", "participant_id"),
    CheckConstraint(is_one_of('"group"', ENROLLMENT_GROUPS), name="group"),
    CheckConstraint(is_one_of("state", ENROLLMENT_STATES), name="state"),
    # "Is this participant in (or was ever in / recently in) this campaign?"
    Index(None, "campaign", "participant_id", "enrolled_at"),
    # The sequencer's "what is due now" scan, resumable after (next_action_at, id) (0010), of
    # the enrollments that can fall due only: one that ends leaves it (0033).
    PartialIndex(
        "ix_enrollments_due",
        "next_action_at",
        "id",
        where="state = 'active' AND \"group\" = 'treatment'",
    ),
    Index(None, "participant_id"),
    # "Has this run an enrollment with steps left?" (engine/run_work.py; 0014).
    PartialIndex(
        "ix_enrollments_open_by_run",
        "run_id",
        where="state = 'active' AND \"group\" = 'treatment'",
    ),
)


# The contact ledger: every message sent and call made, across all campaigns.
#
# Frequency caps count rows here in a rolling window; the sending and calling work append
# to it. ``run_id`` is NULL for contacts outside a campaign run.
contacts = Table(
    "contacts",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("channel", String(8), nullable=False),
    Column("run_id", BigIntId, ForeignKey("campaign_runs.id", ondelete="SET NULL")),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    # The outbox message this contact is (NULL for calls): one contact per message however
    # many writers record it (the dispatcher, a provider event, `outbox resolve --sent`),
    # whose inserts skip a message that has one (engine/sending/contact_ledger.py; 0011).
    Column("message_id", BigIntId, ForeignKey("outbox_messages.id", ondelete="SET NULL")),
    CheckConstraint(is_one_of("channel", CHANNELS), name="channel"),
    CheckConstraint(is_one_of("kind", CONTACT_KINDS), name="kind"),
    Index(None, "participant_id", "occurred_at"),
    PartialIndex(
        None,
        "message_id",
        unique=True,
        where="message_id IS NOT NULL",
    ),
)


# A goal event of an enrolled participant inside the campaign's attribution window.
#
# One per enrollment (the earliest goal event counts), in either group: holdout conversions
# are the baseline of the lift. One per event and campaign: an event inside the windows of
# several runs converts the member's most recent enrollment only (engine/conversions.py).
# ``first_touch``/``last_touch`` are the contacts before the event
# (channel, step, variant, agent, message or call task id, when); NULL when none was made.
conversions = Table(
    "conversions",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column(
        "enrollment_id",
        BigIntId,
        ForeignKey("enrollments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("run_id", BigIntId, ForeignKey("campaign_runs.id", ondelete="CASCADE"), nullable=False),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("campaign", String(64), nullable=False),
    Column("group", String(16), nullable=False),
    Column("event_id", BigIntId, ForeignKey("activity_events.id", ondelete="SET NULL")),
    Column("event_type", String(64), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("points", Integer),
    Column("amount", Numeric(14, 2)),
    Column("source", String(16), nullable=False),
    Column("first_touch", JSONDict),
    Column("last_touch", JSONDict),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("enrollment_id"),
    # One event converts one enrollment of a campaign, however many runs overlap (0018).
    UniqueConstraint("campaign", "event_id"),
    CheckConstraint(is_one_of("source", CONVERSION_SOURCES), name="source"),
    Index(None, "run_id", "group"),
    Index(None, "participant_id"),
)

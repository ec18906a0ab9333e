"""Programs and their members: participants, consents, suppressions, activity.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from engine.db.tables.base import PartialIndex, is_one_of, metadata
from engine.db.types import BigIntId, JSONDict, UTCDateTime

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
# An unsubscribe from a group we cannot name (see email_group_unsubscribes).
NO_GROUP = -1

# A client loyalty or membership program; every participant belongs to one.
programs = Table(
    "programs",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("key", String(64), unique=True, nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("region", String(2), nullable=False),
    Column("help_text", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    # Off: the first SMS of a campaign goes without " Reply STOP to opt out." (#4).
    Column("sms_opt_out_notice", Boolean, default=True, server_default=true(), nullable=False),
    # A public-holiday calendar of the holidays library ("US", "US-CA", "CN", "GB-SCT"): its
    # holidays are not business days (engine/calls/business_days.py). NULL: Monday to Friday.
    Column("holidays", String(16)),
    # The account fields an agent sees before recording that the member's identity was
    # verified (0030; a comma list of engine/calls/verification.py's names). NULL: its default.
    Column("shown_before_verification", String(200)),
    # The program states consent (`programs set --consent-default sms=yes`): since this instant
    # a member whose consent on SMS / calls is not stated counts as opted in; a stated no, an
    # opt-out or a suppression still wins (engine/consent/defaults.py). NULL: not stated is no.
    Column("consent_default_sms_at", UTCDateTime()),
    Column("consent_default_call_at", UTCDateTime()),
)


participants = Table(
    "participants",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("program_id", BigIntId, ForeignKey("programs.id"), nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("email", String(320)),
    Column("phone", String(20)),  # E.164
    Column("timezone", String(64)),  # IANA
    Column("locale", String(16)),
    Column("status", String(16), default="active", nullable=False),
    Column("enrolled_at", UTCDateTime()),
    Column("last_activity_at", UTCDateTime()),
    Column("points_balance", Integer, default=0, nullable=False),
    Column("points_expiring", Integer, default=0, nullable=False),
    Column("points_expire_at", Date),
    Column("tier", String(64)),
    Column("renewal_date", Date),
    Column("account_manager", String(128)),
    Column("attributes", JSONDict, default=dict, nullable=False),
    # engine.sampling.sample_key(program key, external id): deterministic holdout / A/B groups.
    Column("sample_key", Integer, nullable=False),
    # Digest of the source row as last imported: an unchanged row in a daily feed is
    # recognised by this alone, without validating it again.
    Column("source_digest", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("program_id", "external_id"),
    CheckConstraint(is_one_of("status", PARTICIPANT_STATUSES), name="status"),
    Index(None, "email"),
    Index(None, "phone"),
    # The members an agent manages, whom claim-next serves them whatever the team (0034).
    PartialIndex(
        "ix_participants_account_manager",
        "account_manager",
        where="account_manager IS NOT NULL",
    ),
)


# The participant's current consent on one channel, with when and where it came from.
participant_consents = Table(
    "participant_consents",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("channel", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("source", String(64), nullable=False),
    UniqueConstraint("participant_id", "channel"),
    CheckConstraint(is_one_of("channel", CHANNELS), name="channel"),
    CheckConstraint(is_one_of("status", CONSENT_STATUSES), name="status"),
)


# An address or number that must not be contacted on a channel, across all programs.
#
# Keyed by the SHA-256 of the normalised address so that an erased participant's entry still
# blocks a re-import after the address itself has been removed.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("channel", String(8), nullable=False),
    Column("address", String(320)),
    Column("address_hash", String(64), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("source", String(64), nullable=False),
    Column("note", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("channel", "address_hash"),
    CheckConstraint(is_one_of("channel", SUPPRESSION_CHANNELS), name="channel"),
    CheckConstraint(is_one_of("reason", SUPPRESSION_REASONS), name="reason"),
    # Audience and send-time checks join on the plain address.
    Index(None, "address"),
)


# A SendGrid suppression group an email address left, and when: what lets a
# ``group_resubscribe`` lift the suppression that group unsubscribes made, and no other
# (engine/webhooks/sendgrid_groups.py).
#
# Keyed by the address's hash, as suppressions are, and the group (SendGrid's
# ``asm_group_id``). ``left_at`` is SendGrid's event time, the latest on replay;
# ``recorded_at`` is when we recorded that. Group ``NO_GROUP`` (-1) is one we cannot name: an
# event without ``asm_group_id``, or a group entry written before groups were recorded
# (migration 0012). No resubscribe names it, so its address stays suppressed. An erasure
# deletes the address's rows.
email_group_unsubscribes = Table(
    "email_group_unsubscribes",
    metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("group_id", BigInteger, primary_key=True, autoincrement=False),
    Column("left_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    CheckConstraint(f"group_id >= {NO_GROUP}", name="group_id"),
)


# Something a participant did: login, redemption, renewal, activation, payment...
activity_events = Table(
    "activity_events",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("program_id", BigIntId, ForeignKey("programs.id"), nullable=False),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("type", String(64), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("points", Integer),
    Column("amount", Numeric(14, 2)),
    # The source system's reference; when a feed has none, a digest of the event's content,
    # so re-importing the same file is still idempotent.
    Column("reference", String(128), nullable=False),
    Column("source", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("program_id", "reference"),
    # Audience conditions ask "was there a <type> for this participant since <t>?".
    Index(None, "participant_id", "type", "occurred_at"),
)

"""The outbox: messages, dispatch claims, the report tallies, provider events.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from engine.db.tables.base import PartialIndex, is_one_of, metadata
from engine.db.types import BigIntId, JSONDict, UTCDateTime

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
DISPATCH_CLAIM_STATES = ("claimed", "handed", "lapsed")
# The messages whose content the retention purge empties (engine/retention.py): settled (not
# queued, sending or unknown: those may still go, or be settled by hand) and not purged yet.
# Literal SQL, the same text in the purge's query as in its partial index: a partial index
# serves a query that names its condition (PostgreSQL cannot prove it from parameters).
SETTLED_STATUSES = ("sent", "delivered", "bounced", "failed", "skipped")
UNPURGED = "to_address IS NOT NULL AND status IN ({})".format(
    ", ".join(f"'{status}'" for status in SETTLED_STATUSES)
)

# One email or SMS of one step for one enrollment, from rendering to its last provider event.
#
# UNIQUE(enrollment_id, step_id) is what makes "never sent twice" hold however many
# sequencers race. ``uid`` is our message id: it travels in SendGrid ``custom_args`` and in
# the Twilio status callback URL, so provider events find their row. ``content`` holds the
# rendered message exactly as it will be sent (subject/html/text/headers, or the SMS body).
# ``not_before`` is the earliest instant it may go (the step's due time, later when the
# send window or the cap says wait, or a retry's backoff). A dispatcher's claim is a lease:
# ``claimed_by`` until ``claimed_until``, of the batch ``claim_id`` (DispatchClaim).
outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("uid", String(32), nullable=False),
    # The enrollment's run and participant. No keys of their own (migration 0032): the
    # enrollment's key covers them (deleting a run or a participant deletes its enrollments,
    # and so their messages), and each key cost a parent lookup per message made.
    Column("run_id", BigIntId, nullable=False),
    Column(
        "enrollment_id",
        BigIntId,
        ForeignKey("enrollments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("participant_id", BigIntId, nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("variant", String(64)),
    Column("channel", String(8), nullable=False),
    Column("template", String(128), nullable=False),
    Column("locale", String(16)),
    Column("to_address", String(320)),
    Column("content", JSONDict, default=dict, nullable=False),
    Column("status", String(16), default="queued", nullable=False),
    Column("status_reason", Text),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_until", UTCDateTime()),
    # The claim (DispatchClaim) that holds it while ``sending``; stale otherwise.
    Column("claim_id", BigInteger),
    Column("provider", String(16)),
    Column("provider_message_id", String(128)),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("opened_at", UTCDateTime()),
    Column("clicked_at", UTCDateTime()),
    # The deadline (0016): past it the message is skipped as ``expired``, never sent late.
    Column("expires_at", UTCDateTime()),
    UniqueConstraint("enrollment_id", "step_id"),
    UniqueConstraint("uid"),
    CheckConstraint(is_one_of("channel", MESSAGE_CHANNELS), name="channel"),
    CheckConstraint(is_one_of("status", OUTBOX_STATUSES), name="status"),
    # The dispatcher's "what may go now" scan.
    Index(None, "status", "not_before"),
    # Provider events find their message (only messages a provider answered: 0032).
    PartialIndex(
        None,
        "provider_message_id",
        where="provider_message_id IS NOT NULL",
    ),
    # A run's messages, and its pending ones ("has this run a pending message?",
    # engine/run_work.py: a probe per pending status) in one index (0035: it replaces the
    # (run_id, step_id, status) index and the partial one of pending messages, one entry
    # fewer for each message made and each change of status).
    Index(None, "run_id", "status"),
    # The campaign report's A/B results: a conversion's variant, without the table (0005).
    PartialIndex(
        "ix_outbox_messages_variants",
        "enrollment_id",
        "step_id",
        "status",
        "variant",
        "sent_at",
        where="variant IS NOT NULL",
    ),
    Index(None, "participant_id", "created_at"),
    # The caps count a member's unknown messages (engine/sending/contact_ledger.py; 0009).
    # Settled messages whose content has not been purged yet, by age (engine/retention.py;
    # 0021): only those are ever purged, so a new (queued) message adds no entry (0035).
    PartialIndex(
        "ix_outbox_messages_unpurged",
        "created_at",
        where=UNPURGED,
    ),
    PartialIndex(
        "ix_outbox_messages_unknown",
        "participant_id",
        where="status = 'unknown'",
    ),
)


# One batch a dispatcher claimed, while any of its messages is ``sending``: whether the
# batch was handed to the thread that sends (engine/sending/dispatch.py, the hand-off mark).
#
# ``claimed`` (written with the claim): nothing of it has gone; ``handed`` (committed just
# before the first request): its messages may have gone, so a lease that runs out makes them
# ``unknown``; ``lapsed`` (its lease ran out first): its messages went back to the queue and
# this claim never sends. A hand-off and a lapse each move ``claimed`` on with one
# conditional UPDATE of this row, so only one of them ever happens. The id is random, and
# is written into the messages it claims (``outbox_messages.claim_id``, no foreign key: the
# row is dropped once none of its messages is ``sending``, and a message keeps the id).
# UNLOGGED on PostgreSQL (migration 0011): a hand-off's commit waits for no WAL flush, and
# a server crash, which empties the table, makes every lease of a missing claim end
# ``unknown``, as a handed one does.
dispatch_claims = Table(
    "dispatch_claims",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=False),
    Column("state", String(8), nullable=False),
    # Moved on every few seconds by the live dispatcher (migration 0017): a claim whose
    # heartbeat is a minute old is a dead dispatcher's. NULL: only the lease counts.
    Column("heartbeat_at", UTCDateTime()),
    CheckConstraint(is_one_of("state", DISPATCH_CLAIM_STATES), name="state"),
)


# Outbox messages counted per (run, step, channel, variant, status, skip reason): what the
# campaign report's funnel reads instead of counting 10,000,000 outbox rows.
#
# Database triggers (migration 0005) write it, so no code path can miss a change: +1 for an
# outbox row inserted, -1 for one deleted, and -1 for the old key with +1 for the new one
# when a row's status, skip reason, variant, open or click changes (PostgreSQL: one row
# per key per statement, net; SQLite: rows per outbox row). Except SQLite's inserts
# (migration 0007: a row trigger there cost a quarter of a large step's write time): the
# sequencer's bulk insert counts its rows (engine.reports.tallies: tally_counted, or
# tally_inserted when the unique key refused some) and an ORM insert is counted by
# ``_tally_orm_insert`` in engine/db/models.py; nothing else inserts outbox rows.
# Writers only INSERT, so concurrent dispatchers never wait on a shared counter. The tick
# folds each run's rows into one per key (engine.reports.tallies.fold_tallies); ``state``
# tells the rows the triggers added (0) from folded ones (1) and ones being folded (2).
outbox_tallies = Table(
    "outbox_tallies",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("run_id", BigIntId, nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("variant", String(64)),
    Column("status", String(16), nullable=False),
    Column("reason", Text),  # status_reason of skipped messages only
    Column("messages", Integer, nullable=False),
    Column("opened", Integer, nullable=False),
    Column("clicked", Integer, nullable=False),
    Column("state", Integer, default=0, server_default="0", nullable=False),
    Index(None, "run_id"),
    Index(None, "state", "run_id"),
)


# What a provider told us: a delivery event, an open or click, an opt-out, an inbound reply.
#
# UNIQUE(provider, provider_event_id) makes a replayed webhook batch change nothing.
# ``outbox_id`` is NULL for events about no message of ours (an inbound SMS, say);
# ``participant_id`` is set whenever the sender or recipient is known.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("outbox_id", BigIntId, ForeignKey("outbox_messages.id", ondelete="SET NULL")),
    Column("participant_id", BigIntId, ForeignKey("participants.id", ondelete="CASCADE")),
    Column("provider", String(16), nullable=False),
    Column("provider_event_id", String(128), nullable=False),
    Column("event", String(32), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("detail", JSONDict, default=dict, nullable=False),
    UniqueConstraint("provider", "provider_event_id"),
    Index(None, "outbox_id"),
    # Sequence conditions ask "did this participant reply/open since <t>?".
    Index(None, "participant_id", "event", "occurred_at"),
)


# An event a webhook received and could not store (a lone surrogate, a number of
# thousands of digits...): kept with the reason, while the good events of the same batch
# are applied and the provider gets a 2xx (a 5xx would make it retry the whole batch, bad
# event included, for a day). ``payload`` is the event as JSON text with every non-ASCII
# character escaped, cut at 16 KB; UNIQUE(source, payload_digest) keeps a replay from
# adding it twice.
rejected_webhook_events = Table(
    "rejected_webhook_events",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("source", String(16), nullable=False),  # sendgrid | twilio | events
    Column("reason", String(1000), nullable=False),
    Column("payload", Text, nullable=False),
    Column("payload_digest", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "payload_digest"),
)

"""Conversions: goal events of enrolled participants inside the campaign's attribution window.

An activity event of one of the run's goal types (``definition.goal.events``) is a conversion
of an enrollment, in either group, when

    enrolled_at <= occurred_at <= enrolled_at + goal.window   and   occurred_at <= at

The first such event counts (earliest ``occurred_at``, then lowest id); an enrollment converts
at most once (UNIQUE(enrollment_id) on ``conversions``). Holdout members are measured from the
same moment as treatment members (their ``enrolled_at``), so the two groups compare fairly.
The event's path decides ``source``: an event whose source is ``call`` (a CONVERTED call
disposition) is ``call``, one that came from a webhook is ``webhook``, everything else
(file imports) is ``import``.

Attribution: ``first_touch`` and ``last_touch`` are the earliest and latest contacts of the
enrollment made at or before the event: email/SMS that the provider accepted (``sent_at`` set,
not bounced or failed) and calls in which an agent reached the participant: every caller-log
entry with a human contact is a touch of its agent at its time (so an escalated task that
another agent converts is that agent's touch, at that call), of the step the task came from
(a callback, follow-up or recycled attempt carries its step as ``source_step_id``). A task
marked reached with no such entry on the log counts at ``reached_at``.
Each is ``{"channel", "step", "variant", "agent", "message_id", "call_task_id", "at"}``; NULL
when nobody contacted the member (always so for the holdout).

Effects of a new conversion, in the same transaction: an ``active`` enrollment becomes
``converted`` (its sequence stops: ``next_action_at`` NULL); its open call tasks are closed
(``close_reason`` 'converted'); its queued messages are skipped (``status_reason``
'converted'). Enrollments that had already completed or exited keep their state: the
conversion row alone records that they converted.

Everything is set-based SQL, one statement per run and effect; running it again changes
nothing (the unique key decides), so ticks and event imports may both call it, concurrently.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from engine import outbox_status
from engine.app import App
from engine.clock import ensure_utc
from engine.db.models import CampaignRun
from engine.db.types import UTCDateTime
from engine.definitions.loader import parse_stored_definition
from engine.errors import DefinitionError, DefinitionErrors

CONVERTED = "converted"
# A conversion skips the messages still waiting to go; the state machine must allow it.
assert outbox_status.can_move(outbox_status.QUEUED, outbox_status.SKIPPED)

# Participant ids are passed to the database in slices of this size (bound-parameter limits).
_ID_CHUNK = 5000


@dataclass(frozen=True)
class RunGoal:
    run_id: int
    events: tuple[str, ...]
    window: timedelta


def run_goals(session: Session) -> list[RunGoal]:
    """The goal of every run, read from the definition each run was launched with.

    Definitions are parsed once per distinct hash (recurring campaigns share one text)."""
    parsed: dict[str, tuple[tuple[str, ...], timedelta] | None] = {}
    goals = []
    rows = session.execute(
        select(CampaignRun.id, CampaignRun.definition_hash, CampaignRun.definition_source).order_by(
            CampaignRun.id
        )
    ).all()
    for run_id, digest, source in rows:
        if digest not in parsed:
            try:
                definition = parse_stored_definition(source, f"run {run_id}").definition
                parsed[digest] = (tuple(definition.goal.events), definition.goal.window)
            except (DefinitionError, DefinitionErrors):
                # A stored definition that no longer validates (the schema grew stricter):
                # it has no goal we can trust, so it produces no conversions.
                parsed[digest] = None
        goal = parsed[digest]
        if goal is not None:
            goals.append(RunGoal(run_id, goal[0], goal[1]))
    return goals


def match_conversions(
    session: Session, *, at: datetime, participant_ids: Collection[int] | None = None
) -> int:
    """Record the conversions that the events up to ``at`` make; return how many were added.

    ``participant_ids`` limits the work to those participants (e.g. the ones whose events just
    arrived); None looks at every enrollment. Idempotent. The caller owns the transaction."""
    at = ensure_utc(at)
    if participant_ids is not None:
        ids = sorted(set(participant_ids))
        if not ids:
            return 0
        chunks: list[list[int] | None] = [
            ids[i : i + _ID_CHUNK] for i in range(0, len(ids), _ID_CHUNK)
        ]
    else:
        chunks = [None]
    dialect = session.get_bind().dialect.name
    since = session.scalar(text("SELECT coalesce(max(id), 0) FROM conversions")) or 0
    added = 0
    for goal in run_goals(session):
        for chunk in chunks:
            added += _insert_conversions(session, dialect, goal, at, chunk)
    if added:
        _attribute(session, dialect, since)
        _apply_effects(session, since, at)
    return added


# --------------------------------------------------------------------------- SQL


def _window_end(dialect: str) -> str:
    """SQL for enrolled_at + :window_s seconds, comparable with stored timestamps.

    SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' text; datetime() drops the fraction, so the
    enrollment's own fraction is appended back (exact, unlike julianday arithmetic)."""
    if dialect == "sqlite":
        return (
            "(datetime(e.enrolled_at, '+' || :window_s || ' seconds') || substr(e.enrolled_at, 20))"
        )
    return "(e.enrolled_at + make_interval(secs => :window_s))"


# The conversion's source from the event's: 'call' for call dispositions, 'webhook' for
# provider/webhook events, 'import' for file feeds (source 'import:<file>') and the rest.
_SOURCE = (
    "CASE WHEN ev.source = 'call' OR ev.source LIKE 'call:%' THEN 'call'"
    " WHEN ev.source LIKE 'webhook%' THEN 'webhook' ELSE 'import' END"
)


def _insert_conversions(
    session: Session, dialect: str, goal: RunGoal, at: datetime, chunk: list[int] | None
) -> int:
    """INSERT ... SELECT the first goal event inside the window of each unconverted
    enrollment of one run."""
    only = "AND e.participant_id IN :pids" if chunk is not None else ""
    statement = text(
        f"""
        INSERT INTO conversions (enrollment_id, run_id, participant_id, campaign, "group",
                                 event_id, event_type, occurred_at, points, amount, source,
                                 created_at)
        SELECT e.id, e.run_id, e.participant_id, e.campaign, e."group",
               ev.id, ev.type, ev.occurred_at, ev.points, ev.amount, {_SOURCE}, :at
        FROM enrollments e
        JOIN activity_events ev ON ev.participant_id = e.participant_id
        WHERE e.run_id = :run_id {only}
          AND ev.type IN :types
          AND ev.occurred_at >= e.enrolled_at
          AND ev.occurred_at <= {_window_end(dialect)}
          AND ev.occurred_at <= :at
          AND NOT EXISTS (SELECT 1 FROM conversions c WHERE c.enrollment_id = e.id)
          AND NOT EXISTS (
              SELECT 1 FROM activity_events ev2
              WHERE ev2.participant_id = e.participant_id
                AND ev2.type IN :types
                AND ev2.occurred_at >= e.enrolled_at
                AND (ev2.occurred_at < ev.occurred_at
                     OR (ev2.occurred_at = ev.occurred_at AND ev2.id < ev.id)))
        ON CONFLICT (enrollment_id) DO NOTHING
        """
    ).bindparams(
        bindparam("at", type_=UTCDateTime()),
        bindparam("types", expanding=True),
    )
    params: dict[str, object] = {
        "run_id": goal.run_id,
        "types": list(goal.events),
        "window_s": int(goal.window.total_seconds()),
        "at": at,
    }
    if chunk is not None:
        statement = statement.bindparams(bindparam("pids", expanding=True))
        params["pids"] = chunk
    result = session.execute(statement, params)
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def _touch_json(dialect: str) -> str:
    if dialect == "sqlite":
        when = "strftime('%Y-%m-%dT%H:%M:%S', t.at) || '+00:00'"
        build = "json_object"
    else:
        when = "to_char(t.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00'"
        build = "jsonb_build_object"
    return (
        f"{build}('channel', t.channel, 'step', t.step, 'variant', t.variant,"
        f" 'agent', t.agent, 'message_id', t.message_id, 'call_task_id', t.call_task_id,"
        f" 'at', {when})"
    )


# Every contact of an enrollment that reached (or was accepted for) the participant: messages
# accepted by the provider, each human contact on the caller log (its agent, its time), and
# tasks marked reached that have no such entry (their agent, reached_at).
_TOUCHES = """
    SELECT o.enrollment_id AS enrollment_id, o.sent_at AS at, o.channel AS channel,
           o.step_id AS step, o.variant AS variant, CAST(NULL AS VARCHAR(64)) AS agent,
           o.id AS message_id, CAST(NULL AS BIGINT) AS call_task_id
    FROM outbox_messages o
    WHERE o.sent_at IS NOT NULL AND o.status IN ('sent', 'delivered')
    UNION ALL
    SELECT k.enrollment_id, l.logged_at, 'call', coalesce(k.step_id, k.source_step_id), NULL,
           l.agent, NULL, k.id
    FROM caller_log l JOIN call_tasks k ON k.id = l.task_id
    WHERE l.human_contact AND k.enrollment_id IS NOT NULL
    UNION ALL
    SELECT k.enrollment_id, k.reached_at, 'call', coalesce(k.step_id, k.source_step_id), NULL,
           coalesce(k.assigned_agent, k.claimed_by), NULL, k.id
    FROM call_tasks k
    WHERE k.reached_at IS NOT NULL AND k.enrollment_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM caller_log l WHERE l.task_id = k.id AND l.human_contact)
"""


def _attribute(session: Session, dialect: str, since: int) -> None:
    """Fill first_touch / last_touch of the conversions added after id ``since``."""
    touch = _touch_json(dialect)

    def pick(order: str) -> str:
        return f"""(
            SELECT {touch} FROM ({_TOUCHES}) t
            WHERE t.enrollment_id = conversions.enrollment_id
              AND t.at <= conversions.occurred_at
            ORDER BY t.at {order}, coalesce(t.message_id, t.call_task_id) {order}
            LIMIT 1)"""

    session.execute(
        text(
            f"UPDATE conversions SET first_touch = {pick('ASC')}, last_touch = {pick('DESC')}"
            " WHERE id > :since"
        ),
        {"since": since},
    )


def _apply_effects(session: Session, since: int, at: datetime) -> None:
    """End the sequences of the enrollments that just converted."""
    new = "SELECT enrollment_id FROM conversions WHERE id > :since"
    at_param = bindparam("at", type_=UTCDateTime())
    session.execute(
        text(
            "UPDATE enrollments SET state = 'converted', next_action_at = NULL"
            f" WHERE state = 'active' AND id IN ({new})"
        ),
        {"since": since},
    )
    session.execute(
        text(
            "UPDATE call_tasks SET status = 'closed', close_reason = 'converted',"
            " claimed_by = NULL, claimed_until = NULL, updated_at = :at"
            f" WHERE status = 'open' AND enrollment_id IN ({new})"
        ).bindparams(at_param),
        {"since": since, "at": at},
    )
    session.execute(
        text(
            f"UPDATE outbox_messages SET status = '{outbox_status.SKIPPED}',"
            " status_reason = 'converted', updated_at = :at"
            f" WHERE status = '{outbox_status.QUEUED}' AND enrollment_id IN ({new})"
        ).bindparams(at_param),
        {"since": since, "at": at},
    )


def match_after_import(session: Session, *, imported_at: datetime, at: datetime) -> int:
    """Match conversions for the participants whose events an import stamped ``imported_at``
    (the import's ``at``: activity_events.created_at)."""
    ids = session.scalars(
        text(
            "SELECT DISTINCT participant_id FROM activity_events WHERE created_at = :created"
        ).bindparams(bindparam("created", type_=UTCDateTime())),
        {"created": ensure_utc(imported_at)},
    ).all()
    return match_conversions(session, at=at, participant_ids=[int(i) for i in ids])


def match_imported(app: App, *, imported_at: datetime, at: datetime) -> int:
    """After `campaign events import` committed: match the new events, in one transaction."""
    with app.sessions() as session, session.begin():
        return match_after_import(session, imported_at=imported_at, at=at)

"""Conversions: goal events of enrolled participants inside the campaign's attribution window.

An activity event of one of the run's goal types (``definition.goal.events``) is a conversion
of an enrollment, in either group, when

    enrolled_at <= occurred_at <= enrolled_at + goal.window   and   occurred_at <= at

One event is one conversion of a campaign (UNIQUE(campaign, event_id)): when the windows of
several runs hold it (a weekly campaign with a 30-day window), it is credited to the member's
most recent enrollment whose window holds it, and the older runs do not count it. An
enrollment converts once (UNIQUE(enrollment_id)), with the earliest event it is credited
(earliest ``occurred_at``, then lowest id), whatever the order the events arrived in: an
earlier event imported after a later one replaces the conversion's event, amounts and
attribution (the enrollment's effects happened already and stay). Holdout members are measured
from the same moment as treatment members (their ``enrolled_at``), so the two groups compare
fairly. Each campaign measures its own conversions (its lift is against its own holdout), so
one event may convert one enrollment in each of two campaigns.
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

Everything is set-based SQL, one statement for all runs per kind of change and effect; running
it again changes nothing (the unique keys decide), so ticks and event imports may both call
it, concurrently.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from engine.app import App
from engine.clock import ensure_utc
from engine.db.models import CampaignRun
from engine.db.session import writing
from engine.db.types import UTCDateTime
from engine.definitions.loader import parse_stored_definition
from engine.errors import DefinitionError, DefinitionErrors
from engine.sending import outbox_status

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
    goals = run_goals(session)
    added = 0
    moved: list[int] = []
    for chunk in chunks:
        new, changed = _convert(session, dialect, goals, at, chunk)
        added += new
        moved.extend(changed)
    if added or moved:
        _attribute(session, dialect, since, moved)
    if added:
        _apply_effects(session, since, at)
    return added


# --------------------------------------------------------------------------- SQL


def _window_end(dialect: str, enrollment: str, goal: str) -> str:
    """SQL for ``enrollment``.enrolled_at + ``goal``.window_s seconds, comparable with stored
    timestamps.

    SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' text; datetime() drops the fraction, so the
    enrollment's own fraction is appended back (exact, unlike julianday arithmetic)."""
    e, g = enrollment, goal
    if dialect == "sqlite":
        return (
            f"(datetime({e}.enrolled_at, '+' || {g}.window_s || ' seconds')"
            f" || substr({e}.enrolled_at, 20))"
        )
    return f"({e}.enrolled_at + make_interval(secs => {g}.window_s))"


# The conversion's source from the event's: 'call' for call dispositions, 'webhook' for
# provider/webhook events, 'import' for file feeds (source 'import:<file>') and the rest.
_SOURCE = (
    "CASE WHEN ev.source = 'call' OR ev.source LIKE 'call:%' THEN 'call'"
    " WHEN ev.source LIKE 'webhook%' THEN 'webhook' ELSE 'import' END"
)


def _goals_cte(goals: list[RunGoal]) -> tuple[str, dict[str, object]]:
    """``goals(run_id, window_s, type)``: every run's goal, one row per event type."""
    rows: list[str] = []
    params: dict[str, object] = {}
    for goal in goals:
        for event_type in goal.events:
            i = len(rows)
            rows.append(
                f"(CAST(:g_run_{i} AS BIGINT), CAST(:g_win_{i} AS BIGINT),"
                f" CAST(:g_type_{i} AS VARCHAR(64)))"
            )
            params[f"g_run_{i}"] = goal.run_id
            params[f"g_win_{i}"] = int(goal.window.total_seconds())
            params[f"g_type_{i}"] = event_type
    return f"goals(run_id, window_s, type) AS (VALUES {', '.join(rows)})", params


def _best_events(dialect: str, goals_cte: str, *, replacing: bool, only: str) -> str:
    """WITH ... best: for each enrollment, the earliest goal event it owns and has not
    counted yet (``replacing``: earlier than its conversion's; else: it has none).

    An enrollment owns the goal events inside its window that no more recent enrollment of
    the same member and campaign also holds in its window; an event credited to the campaign
    already (UNIQUE(campaign, event_id)) stays where it is. The cheap filters come first, in a
    MATERIALIZED step, so the ownership probe runs only on the few pairs left (PostgreSQL
    would otherwise probe every pair in every window, every tick)."""
    if replacing:
        # Driven from the conversions: only events before each one's can replace it.
        conversion_id = "c.id"
        source = "conversions c JOIN enrollments e ON e.id = c.enrollment_id"
        converted = (
            "(ev.occurred_at < c.occurred_at"
            " OR (ev.occurred_at = c.occurred_at AND ev.id < c.event_id))"
        )
    else:
        conversion_id = "CAST(NULL AS BIGINT)"
        source = "enrollments e"
        converted = "NOT EXISTS (SELECT 1 FROM conversions c WHERE c.enrollment_id = e.id)"
    return f"""
        WITH {goals_cte},
        pairs AS MATERIALIZED (
            SELECT e.id AS enrollment_id, e.run_id, e.participant_id, e.campaign,
                   e."group" AS grp, e.enrolled_at, {conversion_id} AS conversion_id,
                   ev.id AS event_id, ev.type AS event_type, ev.occurred_at, ev.points,
                   ev.amount, {_SOURCE} AS source
            FROM {source}
            JOIN goals g ON g.run_id = e.run_id
            JOIN activity_events ev ON ev.participant_id = e.participant_id AND ev.type = g.type
            WHERE {converted}
              AND ev.occurred_at >= e.enrolled_at
              AND ev.occurred_at <= {_window_end(dialect, "e", "g")}
              AND ev.occurred_at <= :at {only}
              AND NOT EXISTS (SELECT 1 FROM conversions c3
                              WHERE c3.campaign = e.campaign AND c3.event_id = ev.id)
        ),
        candidates AS (
            SELECT p.*, ROW_NUMBER() OVER (PARTITION BY p.enrollment_id
                                           ORDER BY p.occurred_at, p.event_id) AS rn
            FROM pairs p
            WHERE NOT EXISTS (
                SELECT 1 FROM enrollments e2
                JOIN goals g2 ON g2.run_id = e2.run_id AND g2.type = p.event_type
                WHERE e2.campaign = p.campaign AND e2.participant_id = p.participant_id
                  AND (e2.enrolled_at > p.enrolled_at
                       OR (e2.enrolled_at = p.enrolled_at AND e2.id > p.enrollment_id))
                  AND e2.enrolled_at <= p.occurred_at
                  AND p.occurred_at <= {_window_end(dialect, "e2", "g2")})
        ),
        best AS (SELECT * FROM candidates WHERE rn = 1)
    """


def _convert(
    session: Session, dialect: str, goals: list[RunGoal], at: datetime, chunk: list[int] | None
) -> tuple[int, list[int]]:
    """Insert the new conversions, and move the ones an earlier event now wins to it:
    (added, ids of the conversions moved)."""
    if not goals:
        return 0, []
    goals_cte, params = _goals_cte(goals)
    params["at"] = at
    only = "AND e.participant_id IN :pids" if chunk is not None else ""
    binds = [bindparam("at", type_=UTCDateTime())]
    if chunk is not None:
        binds.append(bindparam("pids", expanding=True))
        params["pids"] = chunk
    # An earlier event that arrived late replaces the conversion's event (first one counts).
    moved = (
        session.execute(
            text(
                _best_events(dialect, goals_cte, replacing=True, only=only)
                + """
            UPDATE conversions SET event_id = best.event_id, event_type = best.event_type,
                   occurred_at = best.occurred_at, points = best.points, amount = best.amount,
                   source = best.source
            FROM best WHERE conversions.id = best.conversion_id
            RETURNING conversions.id
            """
            ).bindparams(*binds),
            params,
        )
        .scalars()
        .all()
    )
    result = session.execute(
        text(
            """
            INSERT INTO conversions (enrollment_id, run_id, participant_id, campaign, "group",
                                     event_id, event_type, occurred_at, points, amount,
                                     source, created_at)
            """
            + _best_events(dialect, goals_cte, replacing=False, only=only)
            + """
            SELECT enrollment_id, run_id, participant_id, campaign, grp, event_id, event_type,
                   occurred_at, points, amount, source, :at
            FROM best WHERE true
            ON CONFLICT DO NOTHING
            """
        ).bindparams(*binds),
        params,
    )
    return max(int(getattr(result, "rowcount", 0) or 0), 0), [int(i) for i in moved]


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


def _attribute(session: Session, dialect: str, since: int, moved: list[int]) -> None:
    """Fill first_touch / last_touch of the conversions added after id ``since`` and of the
    ``moved`` ones (their event changed)."""
    touch = _touch_json(dialect)

    def pick(order: str) -> str:
        return f"""(
            SELECT {touch} FROM ({_TOUCHES}) t
            WHERE t.enrollment_id = conversions.enrollment_id
              AND t.at <= conversions.occurred_at
            ORDER BY t.at {order}, coalesce(t.message_id, t.call_task_id) {order}
            LIMIT 1)"""

    statement = text(
        f"UPDATE conversions SET first_touch = {pick('ASC')}, last_touch = {pick('DESC')}"
        " WHERE id > :since OR id IN :moved"
    ).bindparams(bindparam("moved", expanding=True))
    for start in range(0, max(len(moved), 1), _ID_CHUNK):
        session.execute(statement, {"since": since, "moved": moved[start : start + _ID_CHUNK]})
        since = 2**62  # the new ones are done; later slices only move


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
    with writing(app.sessions) as session:  # it reads the new events, then writes
        return match_after_import(session, imported_at=imported_at, at=at)

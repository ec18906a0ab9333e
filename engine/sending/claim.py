"""Claim: lease a batch of due messages to one worker, cut in hand-off groups.

:func:`claim_batch` is the claiming thread's job: it leaves a channel whose circuit is open
alone until its probe is due, takes the batch's share of the ``max_messages`` quota, claims up
to about ten seconds of the channel's rate (PostgreSQL: one statement under SKIP LOCKED, claims
taking turns on an advisory lock; SQLite: the same in SQLAlchemy, one dispatcher at a time),
and reads what the batch's gate needs (engine/sending/gate.py) while the worker's previous
batch is being sent. A claim skips the participants with a message ``sending``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    Update,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import aliased

from engine.clock import ensure_utc
from engine.db.models import CampaignRun, DispatchClaim, Enrollment, OutboxMessage, Participant
from engine.db.tables.outbox import dispatch_claims
from engine.sending import gate
from engine.sending import outbox_status as st
from engine.sending.circuits import Circuit, circuit_of
from engine.sending.gate import Facts
from engine.sending.record import CLAIMED, ClaimedRow, new_claim_base, released
from engine.sending.shared import Shared, now, record_now, rowcount, writing

# Runs whose queued messages go out. A run with a pending message is active (or paused, or
# cancelled): it completes only once none is left (engine/run_work.py).
SENDABLE_RUNS = ("active",)
# pg_advisory_xact_lock key taken by every claim (see _claim).
CLAIM_LOCK = 0x636C61696D  # "claim"


# PostgreSQL's claim in one statement (one round trip, the claimed rows read once): walk the
# (status, not_before) index in order under SKIP LOCKED, skip the participants in flight
# (%(busy)s, see _claim) and runs that may not send, lease what was found in groups of
# %(group)s in sending order, claims %(claim)s + 0, + 1, ... (their dispatch_claims rows;
# engine/sending/record.py), and return it with what the gate needs of its enrollment and
# participant. The CTE's rows are locked by FOR UPDATE, so the
# UPDATE sees each exactly once.
_PG_CLAIM = """
WITH due AS (
    SELECT o.id, o.not_before FROM outbox_messages AS o
    JOIN campaign_runs AS r ON r.id = o.run_id
    WHERE o.status = 'queued' AND o.not_before <= %(at)s AND o.channel = %(channel)s
      AND r.status = ANY(%(runs)s::text[]) AND NOT (o.participant_id = ANY(%(busy)s::bigint[]))
    ORDER BY o.not_before
    LIMIT %(count)s
    FOR UPDATE OF o SKIP LOCKED
), grouped AS (
    SELECT id, %(claim)s::bigint
        + (row_number() OVER (ORDER BY not_before, id) - 1) / %(group)s AS claim_id
    FROM due
), claimed AS (
    UPDATE outbox_messages AS m
    SET status = 'sending', claimed_by = %(worker)s, claimed_until = %(until)s,
        claim_id = grouped.claim_id, updated_at = %(at)s
    FROM grouped WHERE m.id = grouped.id
    RETURNING m.id, m.uid, m.run_id, m.participant_id, m.campaign, m.channel, m.to_address,
        m.content, m.attempts, m.not_before, m.enrollment_id, m.claim_id
), registered AS (
    INSERT INTO dispatch_claims (id, state, heartbeat_at)
    SELECT g.claim_id, 'claimed', %(at)s FROM (SELECT DISTINCT claim_id FROM claimed) AS g
)
SELECT c.id, c.uid, c.run_id, c.participant_id, c.campaign, c.channel, c.to_address,
    c.content, c.attempts, c.not_before, e.state, p.email, p.phone, p.timezone, p.program_id,
    p.first_name, p.last_name, c.claim_id
FROM claimed AS c
JOIN enrollments AS e ON e.id = c.enrollment_id
JOIN participants AS p ON p.id = c.participant_id
"""


def _claim(shared: Shared, channel: str, count: int, worker: str) -> list[ClaimedRow]:
    """Claim up to ``count`` due messages, none of them to a participant who has a message in
    ``sending`` (claimed by anyone, on any channel): the gate reads the contacts ledger, and a
    message in flight is not in it until its outcome is recorded, so two claims for one person
    would each pass a cap of one. Messages to one person within a batch are counted by
    :func:`decide_batch`.

    The batch is cut in groups of ``dispatch_max_in_flight`` in sending order, each a claim
    of its own (engine/sending/record.py): a random base id plus the group's number, written
    with the rows and as its own ``dispatch_claims`` row (``claimed``), whose primary key
    keeps it unique among the claims alive: a collision (one in 2**53) fails the claim, which
    then claims nothing."""
    at = now(shared)
    until = at + shared.settings.dispatch_lease
    claim = new_claim_base()
    group = shared.group_size
    if shared.sqlite:
        rows = _claim_sqlite(shared, channel, count, worker, at, until, claim, group)
    else:
        rows = _claim_postgres(shared, channel, count, worker, at, until, claim, group)
    return [
        ClaimedRow(
            id=r[0],
            uid=r[1],
            run_id=r[2],
            participant_id=r[3],
            campaign=r[4],
            channel=r[5],
            to_address=r[6],
            content=dict(r[7] or {}),
            attempts=r[8],
            not_before=ensure_utc(r[9]),
            enrollment_state=r[10],
            email=r[11],
            phone=r[12],
            timezone=r[13],
            program_id=r[14],
            name=" ".join(part for part in (r[15], r[16]) if part) or None,
            claim=r[17],
        )
        for r in rows
    ]


def _claim_postgres(
    shared: Shared,
    channel: str,
    count: int,
    worker: str,
    at: datetime,
    until: datetime,
    claim: int,
    group: int,
) -> Sequence[Any]:
    """PostgreSQL's claim: one statement (_PG_CLAIM) under SKIP LOCKED."""
    with shared.app.sessions() as session, session.begin():
        connection = session.connection()
        # Claims one at a time, so that each sees the claims committed before it (READ
        # COMMITTED: each statement's snapshot is taken after this lock). The claim walks
        # the (status, not_before) index in order and stops after `count` rows; without
        # statistics (a fresh or never analysed table) the planner would rather read every
        # queued row of the run and sort them (18 ms a claim in the 20k-message bench,
        # against 3 ms), hence no sorts in this transaction; and no JIT, whose compiling
        # (0.3 s) a disabled sort's cost estimate would otherwise set off.
        connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%s), set_config('enable_sort', 'off', true), "
            "set_config('jit', 'off', true)",
            (CLAIM_LOCK,),
        )
        # The busy people (at most workers x 2 batches of rows, by the (status, not_before)
        # index) as one array parameter: with a correlated NOT EXISTS instead, the
        # 20k-message bench (fresh, unanalysed tables) ran 5x slower.
        busy = sorted(
            {
                pid
                for (pid,) in connection.exec_driver_sql(
                    "SELECT participant_id FROM outbox_messages WHERE status = 'sending'"
                )
            }
        )
        found = connection.exec_driver_sql(
            _PG_CLAIM,
            {
                "at": at,
                "until": until,
                "channel": channel,
                "runs": list(SENDABLE_RUNS),
                "busy": busy,
                "count": count,
                "worker": worker,
                "claim": claim,
                "group": group,
            },
        ).all()
    # In the index's order (sorted here: see the lock above).
    return sorted(found, key=lambda r: (r[9], r[0]))


def _claim_sqlite(
    shared: Shared,
    channel: str,
    count: int,
    worker: str,
    at: datetime,
    until: datetime,
    claim: int,
    group: int,
) -> Sequence[Any]:
    """SQLite's claim: one dispatcher at a time (the file lock), so no SKIP LOCKED. The
    writing transaction holds the database (and the dispatcher's write lock, which the
    writing thread's hand-offs wait for) only to lease the rows and register their groups,
    two statements of one step each (pysqlite gives the GIL up at each step: a RETURNING of
    1,000 rows would wait for it 1,000 times, lock held, while the sending thread runs);
    what the gate and the requests need of them is read after it commits (they are this
    worker's by then)."""
    with writing(shared), shared.app.sessions() as session, session.begin():
        leased = rowcount(
            session.execute(
                _SQLITE_LEASE,
                {
                    "b_at": at,
                    "b_until": until,
                    "b_channel": channel,
                    "b_count": count,
                    "b_worker": worker,
                    "b_claim": claim,
                    "b_group": group,
                },
            )
        )
        if not leased:
            return []
        # The rows' positions are 0 .. leased - 1: their groups are claim + 0, + 1, ...
        groups = [claim + number for number in range(-(-leased // group))]
        session.execute(_SQLITE_REGISTER, {"ids": json.dumps(groups), "b_at": at})
    with shared.app.sessions() as session:
        return session.execute(
            _SQLITE_CLAIMED_ROWS, {"first": claim, "last": claim + len(groups) - 1}
        ).all()


def _sqlite_lease() -> Update:
    """The lease of SQLite's claim in one statement, which holds the database write lock from
    its start (a read before it could not then write if another dispatcher thread wrote in
    between): the due rows, in groups of ``b_group`` in sending order, claims ``b_claim``
    + 0, + 1, .... Built once (building it costs more than running it)."""
    in_flight = aliased(OutboxMessage)
    busy_participant: ColumnElement[bool] = (
        select(in_flight.id)
        .where(
            in_flight.participant_id == OutboxMessage.participant_id,
            in_flight.status == st.SENDING,
        )
        .exists()
    )
    due = (
        select(OutboxMessage.id, OutboxMessage.not_before)
        .join(CampaignRun, CampaignRun.id == OutboxMessage.run_id)
        .where(
            OutboxMessage.status == st.QUEUED,
            OutboxMessage.not_before <= bindparam("b_at", type_=OutboxMessage.not_before.type),
            OutboxMessage.channel == bindparam("b_channel", type_=String),
            CampaignRun.status.in_(SENDABLE_RUNS),
            ~busy_participant,
        )
        # not_before alone: the (status, not_before) index yields that order and the scan
        # stops after `count` rows; a tie-break on id made both databases sort every queued
        # row on each claim (a million of them after a big step).
        .order_by(OutboxMessage.not_before)
        .limit(bindparam("b_count", type_=Integer))
        .subquery("due")
    )
    # The groups, in sending order (not_before, id) among the rows found.
    position = func.row_number().over(order_by=(due.c.not_before, due.c.id)) - 1
    claim_id = bindparam("b_claim", type_=BigInteger) + position // bindparam(
        "b_group", type_=Integer
    )
    grouped = select(due.c.id, claim_id.label("claim_id")).subquery("grouped")
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == grouped.c.id)
        .values(
            status=st.SENDING,
            claimed_by=bindparam("b_worker", type_=String),
            claimed_until=bindparam("b_until", type_=OutboxMessage.claimed_until.type),
            claim_id=grouped.c.claim_id,
            updated_at=bindparam("b_at", type_=OutboxMessage.updated_at.type),
        )
        .execution_options(synchronize_session=False)
    )


_SQLITE_LEASE = _sqlite_lease()

# SQLite: the ids of a JSON array parameter (one parameter, not one per id).
_JSON_IDS = select(func.json_each(bindparam("ids", type_=String)).table_valued("value").c.value)

# A claim's groups, each its dispatch_claims row (engine/sending/record.py); the table's
# insert, not the ORM's (which would take the parameters for rows to insert).
_SQLITE_REGISTER = insert(dispatch_claims).from_select(
    ["id", "state", "heartbeat_at"],
    select(
        _JSON_IDS.selected_columns.value,
        literal(CLAIMED),
        bindparam("b_at", type_=DispatchClaim.heartbeat_at.type),
    ),
)

# What the gate and the requests need of the rows claimed (those of its groups, claims
# ``first`` to ``last``: by the (status, not_before) index, among the few rows sending), in
# sending order.
_SQLITE_CLAIMED_ROWS = (
    select(
        OutboxMessage.id,
        OutboxMessage.uid,
        OutboxMessage.run_id,
        OutboxMessage.participant_id,
        OutboxMessage.campaign,
        OutboxMessage.channel,
        OutboxMessage.to_address,
        OutboxMessage.content,
        OutboxMessage.attempts,
        OutboxMessage.not_before,
        Enrollment.state,
        Participant.email,
        Participant.phone,
        Participant.timezone,
        Participant.program_id,
        Participant.first_name,
        Participant.last_name,
        OutboxMessage.claim_id,
    )
    .join(Enrollment, Enrollment.id == OutboxMessage.enrollment_id)
    .join(Participant, Participant.id == OutboxMessage.participant_id)
    .where(
        OutboxMessage.status == st.SENDING,
        OutboxMessage.claim_id.between(
            bindparam("first", type_=BigInteger), bindparam("last", type_=BigInteger)
        ),
    )
    .order_by(OutboxMessage.not_before, OutboxMessage.id)
)


@dataclass
class Claimed:
    """A batch claimed by the database thread, with the facts its gate needs."""

    kind: str
    rows: list[ClaimedRow]
    facts: Facts | None
    overlapped: bool  # claimed while the worker's previous batch was still in flight
    read_at: float = field(default_factory=time.monotonic)  # when ``facts`` were read
    # The channel's circuit, open but due for a probe (None: closed).
    circuit: Circuit | None = None


def claim_batch(shared: Shared, worker: str, kind: str, overlapped: bool) -> Claimed | None:
    """Claim the next batch of ``kind`` and read its gate's facts (the claiming thread's job).
    None when stopping or when the ``max_messages`` quota is used up."""
    if shared.stop_reason() is not None:
        return None
    with shared.app.sessions() as session:
        circuit = circuit_of(session, shared.circuit_keys[kind])
    if circuit is not None and circuit.retry_at > now(shared):
        return Claimed(kind, [], None, overlapped=False)  # waiting for the provider
    quota = shared.take(shared.claim_size(kind))
    if quota == 0:
        return None
    rows = _claim(shared, kind, quota, worker)
    shared.give_back(quota - len(rows))
    if not rows:
        return Claimed(kind, [], None, overlapped)
    try:
        facts = gate.load_facts(shared, rows, kind)
    except BaseException:
        # Nothing of this batch went out: give it back rather than leave it claimed until its
        # lease runs out.
        shared.give_back(len(rows))
        record_now(shared, released(rows), "")
        raise
    return Claimed(kind, rows, facts, overlapped, circuit=circuit)


def halted_runs(shared: Shared, run_ids: set[int]) -> set[int]:
    """Those of ``run_ids`` that may not send any more (paused, cancelled...)."""
    with shared.app.sessions() as session:
        sendable = set(
            session.scalars(
                select(CampaignRun.id).where(
                    CampaignRun.id.in_(sorted(run_ids)), CampaignRun.status.in_(SENDABLE_RUNS)
                )
            )
        )
    return run_ids - sendable

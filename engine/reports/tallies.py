"""The outbox tallies (engine.db.models.OutboxTally): read them summed, fold them, and (SQLite)
count a bulk insert.

Triggers append rows per outbox change (migration 0005; on SQLite, inserts are counted by
their writers since 0007: ``tally_counted`` or ``tally_inserted`` here for engine.sequencing's
bulk insert, a mapper event for the ORM's); a report sums the rows of its runs
per key, which is exact whether or not they have been folded. Folding (every tick) replaces
the rows of each run that has new ones by one row per key, so a run's tallies stay a few
hundred rows however many messages it sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from engine.db.models import OutboxTally

ADDED, FOLDED, FOLDING = 0, 1, 2
# pg_advisory_xact_lock key: one folder at a time (two would fold the same rows twice).
FOLD_LOCK = 0x6F7574626F78  # "outbox"


KEY_COLUMNS = ("run_id", "step_id", "channel", "variant", "status", "reason")


@dataclass(frozen=True)
class Tally:
    step: str
    channel: str
    variant: str | None
    status: str
    reason: str | None  # why, for skipped messages
    messages: int
    opened: int
    clicked: int


def _key() -> tuple[Any, ...]:
    t = OutboxTally
    return (t.step_id, t.channel, t.variant, t.status, t.reason)


def read_tallies(session: Session, runs: list[int]) -> list[Tally]:
    """The outbox of these runs counted per (step, channel, variant, status, skip reason)."""
    t = OutboxTally
    rows = session.execute(
        select(*_key(), func.sum(t.messages), func.sum(t.opened), func.sum(t.clicked))
        .where(t.run_id.in_(runs))
        .group_by(*_key())
    ).all()
    return [
        Tally(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]))
        for r in rows
        if r[5] or r[6] or r[7]
    ]


_INSERT_TALLIES = (
    "INSERT INTO outbox_tallies (run_id, step_id, channel, variant, status, reason, "
    "messages, opened, clicked) "
)


def tally_inserted(connection: Connection, after_id: int) -> None:
    """SQLite: count the outbox rows this transaction inserted, those with an id above
    ``after_id`` (read before inserting, under the write lock this transaction holds: SQLite
    numbers new rows past the largest id, and no other writer runs meanwhile), as one tally
    row per key. PostgreSQL's insert trigger counts them there, so this does nothing."""
    if connection.dialect.name != "sqlite":
        return
    connection.exec_driver_sql(
        _INSERT_TALLIES + "SELECT run_id, step_id, channel, variant, status, "
        "CASE WHEN status = 'skipped' THEN status_reason END AS reason, "
        "count(*), count(opened_at), count(clicked_at) FROM outbox_messages WHERE id > ? "
        "GROUP BY run_id, step_id, channel, variant, status, reason",
        (int(after_id),),
    )


def tally_counted(connection: Connection, counts: Mapping[tuple[Any, ...], int]) -> None:
    """SQLite: add the tally rows of outbox rows their writer counted itself, ``{(run_id,
    step_id, channel, variant, status, reason): messages}``, none opened or clicked yet.
    Cheaper than :func:`tally_inserted`, which reads the new rows back (14 µs a message in
    the sequencer's write, which SQLite runs one writer at a time)."""
    if connection.dialect.name != "sqlite" or not counts:
        return
    connection.exec_driver_sql(
        _INSERT_TALLIES + "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)",
        [(*key, messages) for key, messages in counts.items()],
    )


def largest_outbox_id(connection: Connection) -> int:
    return int(connection.exec_driver_sql("SELECT max(id) FROM outbox_messages").scalar() or 0)


def fold_tallies(session: Session) -> int:
    """Fold the tallies of every run with rows the triggers added since the last fold into
    one row per key (keys that add up to nothing disappear). Returns how many rows it
    removed. Runs in the caller's transaction; concurrent outbox writes go on meanwhile
    (their new rows are folded next time)."""
    t = OutboxTally
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(FOLD_LOCK)))
    marked = _rowcount(
        session.execute(
            update(t)
            .where(t.run_id.in_(select(t.run_id).where(t.state == ADDED).distinct()))
            .values(state=FOLDING)
            .execution_options(synchronize_session=False)
        )
    )
    if not marked:
        return 0
    sums = (func.sum(t.messages), func.sum(t.opened), func.sum(t.clicked))
    added = len(
        session.execute(
            insert(t)
            .from_select(
                [*KEY_COLUMNS, "messages", "opened", "clicked", "state"],
                select(t.run_id, *_key(), *sums, literal(FOLDED))
                .where(t.state == FOLDING)
                .group_by(t.run_id, *_key())
                .having(or_(*(s != 0 for s in sums))),
            )
            # RETURNING to count them: INSERT ... SELECT reports no row count on PostgreSQL.
            .returning(t.id)
        ).all()
    )
    session.execute(
        delete(t).where(t.state == FOLDING).execution_options(synchronize_session=False)
    )
    return marked - added


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)

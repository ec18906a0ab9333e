"""The caller log: append-only and hash-chained.

Each entry's ``hash`` is sha256(previous entry's hash + canonical JSON of the entry), where the
canonical JSON holds every column but ``id`` and ``hash`` (keys sorted, no spaces, UTC times in
ISO 8601). Editing, deleting or reordering any entry breaks the chain from that entry on, and
:func:`verify` names the first broken one.

Appends are serialised so concurrent agents never fork the chain: on PostgreSQL a
transaction-level advisory lock, on SQLite the database write lock the caller's transaction
took first (engine.calls.tasks.write_lock); UNIQUE(seq) backs both. On PostgreSQL a trigger
refuses UPDATE, DELETE and TRUNCATE (migration 0004).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import CallerLogEntry
from engine.sampling import salt

GENESIS = "0" * 64
HASHED_COLUMNS = (
    "seq",
    "task_id",
    "participant_id",
    "external_id",
    "program",
    "campaign",
    "run_id",
    "task_kind",
    "agent",
    "number_dialled",
    "disposition",
    "human_contact",
    "verified",
    "fields",
    "notes",
    "record",
    "claimed_at",
    "logged_at",
    "handle_seconds",
    "attempt",
    "source",
    "prev_hash",
)
_LOCK_KEY = salt("caller_log")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(values: dict[str, Any]) -> str:
    return json.dumps(
        {name: _plain(values.get(name)) for name in HASHED_COLUMNS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def entry_hash(prev_hash: str, values: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(values)).encode("utf-8")).hexdigest()


def serialise(session: Session) -> None:
    """PostgreSQL: take the caller log's transaction-level advisory lock (held to commit; taking
    it again is free). SQLite: nothing, the caller's write lock already serialises."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))


def append(session: Session, *, locked: bool = False, **values: Any) -> CallerLogEntry:
    """Append one entry at the head of the chain (the caller owns the transaction;
    ``locked``: it has called :func:`serialise` already)."""
    if not locked:
        serialise(session)
    head = session.execute(
        select(CallerLogEntry.seq, CallerLogEntry.hash).order_by(CallerLogEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head is not None else (1, GENESIS)
    values = {**values, "seq": seq, "prev_hash": prev}
    for name in ("claimed_at", "logged_at"):
        if values.get(name) is not None:
            values[name] = values[name].astimezone(UTC)
    entry = CallerLogEntry(**values, hash=entry_hash(prev, values))
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    ok: bool
    first_broken_seq: int | None = None
    first_broken_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None


def verify(session: Session) -> VerifyResult:
    """Recompute the chain from the start; report the first entry that does not match."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    rows = session.execute(
        select(CallerLogEntry).order_by(CallerLogEntry.seq, CallerLogEntry.id)
    ).scalars()
    for entry in rows.yield_per(1000):
        count += 1
        values = {name: getattr(entry, name) for name in HASHED_COLUMNS}
        problem = None
        if entry.seq != expected_seq:
            problem = f"expected entry {expected_seq} here, found {entry.seq} (entry missing?)"
        elif entry.prev_hash != prev:
            problem = "prev_hash does not match the previous entry's hash"
        elif entry_hash(prev, values) != entry.hash:
            problem = "the entry's content does not match its hash (edited)"
        if problem is not None:
            return VerifyResult(count, False, entry.seq, entry.id, problem, prev)
        prev = entry.hash
        expected_seq += 1
    return VerifyResult(count, True, head_hash=prev)

"""The caller log: append-only, chained with a keyed MAC, anchored by signed checkpoints.

Each entry's ``hash`` is HMAC-SHA256(key, previous entry's hash + canonical JSON of the entry),
where the canonical JSON holds every column but ``id``, ``hash``, ``erased_at`` and the
personal columns (keys sorted, no spaces, UTC times in ISO 8601); the personal columns
(``PERSONAL_COLUMNS``: the member's id, the number dialled, the template fields, notes, the
call record) enter only through ``personal_digest`` = HMAC(key, their canonical JSON). The key
is never in the database (engine/calls/log_key.py), so whoever can write the database cannot
edit an entry and recompute the chain, nor append a forged one.

- Editing, deleting, reordering or forging any entry breaks the chain from that entry on, and
  :func:`verify` names the first broken one.
- Every append also writes a signed checkpoint (seq, head) in ``caller_log_checkpoints``: a log
  whose tail was deleted, or that was emptied, no longer reaches its newest checkpoint.
- Deleting both tails is caught by a head kept outside the database: :func:`signed_head`
  (``campaign calls log-head``, from cron) and ``verify(..., saved_head=...)``
  (``calls verify-log --head FILE``).
- Erasure (:func:`erase_personal`) empties the personal columns and stamps ``erased_at``; the
  digest stays, so the chain still verifies and still proves the call happened.

Entries written before the keyed chain (``chain`` = 'sha256') verify with the old unkeyed
formula; an erased one of them can no longer be recomputed and is counted apart.

Appends are serialised so concurrent agents never fork the chain: on PostgreSQL a
transaction-level advisory lock, on SQLite the database write lock the caller's transaction
took first (engine.db.session.take_write_lock); UNIQUE(seq) backs both. On PostgreSQL triggers
refuse UPDATE (but erasure's), DELETE and TRUNCATE on both tables (migrations 0004, 0020).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, null, select, update
from sqlalchemy.orm import Session

from engine.calls.log_key import SESSION_INFO_KEY, CallerLogKey
from engine.db.bulk import insert_rows
from engine.db.models import CallerLogCheckpoint, CallerLogEntry
from engine.errors import ConfigError, InputError
from engine.sampling import salt

GENESIS = "0" * 64
PERSONAL_COLUMNS = ("external_id", "number_dialled", "fields", "notes", "record")
CHAINED_COLUMNS = (
    "seq",
    "task_id",
    "participant_id",
    "program",
    "campaign",
    "run_id",
    "task_kind",
    "agent",
    "disposition",
    "human_contact",
    "verified",
    "claimed_at",
    "logged_at",
    "handle_seconds",
    "attempt",
    "source",
    "personal_digest",
    "prev_hash",
)
# The unkeyed formula of entries written before migration 0020.
LEGACY_COLUMNS = (
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


_SCALARS = frozenset({str, int, float, bool, type(None)})
# json.dumps with these arguments builds this encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# The types orjson writes exactly as _CANONICAL does (sorted keys, compact, UTF-8); it
# refuses the rest of what json takes or writes it otherwise (floats: "1e16" for "1e+16").
_ORJSON_SAME = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:  # most values: kept as they are (the checks below say so)
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _orjson_same(value: Any) -> bool:
    """Whether orjson writes this plain value as _CANONICAL does (bar what it refuses)."""
    kind = type(value)
    if kind in _ORJSON_SAME:
        return True
    if kind is dict:
        return all(_orjson_same(v) for v in value.values())
    if kind is list:
        return all(_orjson_same(v) for v in value)
    return False


def canonical(values: dict[str, Any], columns: tuple[str, ...] = CHAINED_COLUMNS) -> str:
    return _CANONICAL.encode({name: _plain(values.get(name)) for name in columns})


def _canonical_utf8(values: dict[str, Any], columns: tuple[str, ...]) -> bytes:
    """``canonical(values, columns).encode("utf-8")``, by orjson (a sixth of the cost) when
    it writes the same bytes: every chained entry's MAC is over these."""
    plain = {}
    for name in columns:
        value = values.get(name)
        plain[name] = value if type(value) in _ORJSON_SAME else _plain(value)
    if all(_orjson_same(value) for value in plain.values()):
        try:
            return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # an int beyond 64 bits, a lone surrogate
            pass
    return _CANONICAL.encode(plain).encode("utf-8")


def _mac(key: bytes, text: str) -> str:
    return _mac_utf8(key, text.encode("utf-8"))


def _mac_utf8(key: bytes, data: bytes) -> str:
    return hmac.digest(key, data, "sha256").hex()


def personal_digest(key: bytes, values: dict[str, Any]) -> str:
    return _mac_utf8(key, b"personal:" + _canonical_utf8(values, PERSONAL_COLUMNS))


def entry_hash(key: bytes, prev_hash: str, values: dict[str, Any]) -> str:
    return _mac_utf8(key, prev_hash.encode("utf-8") + _canonical_utf8(values, CHAINED_COLUMNS))


def legacy_entry_hash(prev_hash: str, values: dict[str, Any]) -> str:
    text = prev_hash + canonical(values, LEGACY_COLUMNS)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _checkpoint_signature(key: bytes, seq: int, head: str, at: datetime) -> str:
    return _mac(key, f"checkpoint:{seq}:{head}:{_plain(at)}")


def _head_signature(key: bytes, seq: int, head: str, at: str) -> str:
    return _mac(key, f"head:{seq}:{head}:{at}")


def log_key(session: Session, *, create: bool = True) -> bytes:
    provider = session.info.get(SESSION_INFO_KEY)
    if not isinstance(provider, CallerLogKey):
        raise ConfigError("this session has no caller log key (build sessions with build_app)")
    return provider.get(create=create)


def serialise(session: Session) -> None:
    """PostgreSQL: take the caller log's transaction-level advisory lock (held to commit; taking
    it again is free). SQLite: nothing, the caller's write lock already serialises."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))


def _head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest entry; (0, GENESIS) for an empty log."""
    head = session.execute(
        select(CallerLogEntry.seq, CallerLogEntry.hash).order_by(CallerLogEntry.seq.desc()).limit(1)
    ).first()
    return (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)


def _chained(
    key: bytes, seq: int, prev: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row of entry ``seq`` after ``prev`` (its MAC computed) and its checkpoint's row: the
    one rule both :func:`append` and :class:`ChainWriter` write by."""
    values = {**values, "seq": seq, "prev_hash": prev}
    for name in ("claimed_at", "logged_at"):
        if values.get(name) is not None:
            values[name] = values[name].astimezone(UTC)
    values["personal_digest"] = personal_digest(key, values)
    mac = entry_hash(key, prev, values)
    at = values["logged_at"]
    checkpoint = {
        "seq": seq,
        "head": mac,
        "at": at,
        "signature": _checkpoint_signature(key, seq, mac, at),
    }
    return {**values, "chain": "hmac", "hash": mac}, checkpoint


def append(session: Session, *, locked: bool = False, **values: Any) -> CallerLogEntry:
    """Append one entry at the head of the chain and its checkpoint (the caller owns the
    transaction; ``locked``: it has called :func:`serialise` already)."""
    key = log_key(session)
    if not locked:
        serialise(session)
    seq, prev = _head(session)
    row, checkpoint = _chained(key, seq + 1, prev, values)
    entry = CallerLogEntry(**row)
    session.add(entry)
    session.add(CallerLogCheckpoint(**checkpoint))
    session.flush()
    return entry


def ids_by_seq(session: Session, seqs: list[int]) -> dict[int, int]:
    """Entry ids by seq (written entries: a batch that wrote many looks them up at once)."""
    if not seqs:
        return {}
    rows = session.execute(
        select(CallerLogEntry.seq, CallerLogEntry.id).where(CallerLogEntry.seq.in_(seqs))
    )
    return {int(seq): int(ident) for seq, ident in rows}


class PendingEntry:
    """An entry a :class:`ChainWriter` has chained but may not have written yet: its seq and
    MAC are known at once; asking for its ``id`` writes the pending entries first."""

    __slots__ = ("_id", "_writer", "hash", "seq")

    def __init__(self, writer: ChainWriter, seq: int, mac: str) -> None:
        self._writer, self.seq, self.hash = writer, seq, mac
        self._id: int | None = None

    @property
    def id(self) -> int:
        if self._id is None:
            self._writer.write_pending()
            self._id = self._writer.session.scalar(
                select(CallerLogEntry.id).where(CallerLogEntry.seq == self.seq)
            )
        assert self._id is not None
        return self._id


class ChainWriter:
    """Many appends in one transaction (a dialer import chunk): the head is read once, each
    entry is chained in memory by the same rule as :func:`append`, and the entries and their
    checkpoints are written together at :meth:`flush` (engine/db/bulk.py: COPY on
    PostgreSQL). The caller holds the caller log's lock (:func:`serialise`; on SQLite the
    write lock) from before it made the writer until it commits, so no other appender can slip
    in between."""

    def __init__(self, session: Session, write_pending: Callable[[], None] | None = None) -> None:
        """``write_pending``: what writes this writer's entries and whatever the caller keeps
        pending with them (default :meth:`flush`), run before an entry's id is looked up."""
        self.session = session
        self.write_pending = write_pending or self.flush
        self._key = log_key(session)
        self._seq, self._prev = _head(session)
        self._rows: list[dict[str, Any]] = []
        self._checkpoints: list[dict[str, Any]] = []

    def append(self, **values: Any) -> PendingEntry:
        row, checkpoint = _chained(self._key, self._seq + 1, self._prev, values)
        self._seq, self._prev = row["seq"], row["hash"]
        self._rows.append(row)
        self._checkpoints.append(checkpoint)
        return PendingEntry(self, row["seq"], row["hash"])

    def flush(self) -> None:
        """Write the pending entries and checkpoints (one COPY or executemany each; no ids:
        an entry whose id is asked for looks it up by its seq)."""
        if not self._rows:
            return
        connection = self.session.connection()
        insert_rows(connection, CallerLogEntry.__table__, self._rows)
        insert_rows(connection, CallerLogCheckpoint.__table__, self._checkpoints)
        self._rows, self._checkpoints = [], []


def erase_personal(session: Session, participant_id: int, *, at: datetime) -> int:
    """Empty the personal columns of a member's entries (erasure); returns how many. The chain
    and the fact that each call happened stay verifiable."""
    result = session.execute(
        update(CallerLogEntry)
        .where(CallerLogEntry.participant_id == participant_id, CallerLogEntry.erased_at.is_(None))
        .values(
            external_id=None,
            number_dialled=None,
            fields=null(),  # SQL NULL, not the JSON value null
            notes=None,
            record=None,
            erased_at=at.astimezone(UTC),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    ok: bool
    first_broken_seq: int | None = None
    first_broken_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None
    erased: int = 0  # entries whose personal data was erased (still verified)
    unkeyed: int = 0  # entries written before the keyed chain (verified with plain SHA-256)
    checkpoints: int = 0


def _broken(count: int, entry: CallerLogEntry | None, problem: str, prev: str) -> VerifyResult:
    seq = entry.seq if entry is not None else None
    ident = entry.id if entry is not None else None
    return VerifyResult(count, False, seq, ident, problem, prev)


def verify(session: Session, *, saved_head: dict[str, Any] | None = None) -> VerifyResult:
    """Recompute the chain from the start and check it reaches the newest checkpoint (and the
    saved head, when given); report the first thing that does not match."""
    key = log_key(session, create=False) if _has_any(session) or saved_head else b""
    prev = GENESIS
    expected_seq = 1
    count = erased = unkeyed = 0
    keyed_seen = False
    rows = session.execute(
        select(CallerLogEntry).order_by(CallerLogEntry.seq, CallerLogEntry.id)
    ).scalars()
    for entry in rows.yield_per(1000):
        count += 1
        problem = None
        if entry.seq != expected_seq:
            problem = f"expected entry {expected_seq} here, found {entry.seq} (entry missing?)"
        elif entry.prev_hash != prev:
            problem = "prev_hash does not match the previous entry's hash"
        elif keyed_seen and entry.chain != "hmac":
            # Unkeyed entries predate keyed chaining; one after a keyed entry is a forgery
            # that tries to pass with the formula anyone can compute.
            problem = "an unkeyed entry after keyed ones (forged)"
        else:
            problem = _entry_problem(key, entry)
        if problem is not None:
            return _broken(count, entry, problem, prev)
        erased += entry.erased_at is not None
        unkeyed += entry.chain != "hmac"
        keyed_seen = keyed_seen or entry.chain == "hmac"
        prev = entry.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    checkpoint = session.scalars(
        select(CallerLogCheckpoint).order_by(CallerLogCheckpoint.seq.desc()).limit(1)
    ).first()
    checkpoints = session.scalar(select(func.count()).select_from(CallerLogCheckpoint)) or 0
    if checkpoint is not None:
        signed = _checkpoint_signature(key, checkpoint.seq, checkpoint.head, checkpoint.at)
        if not hmac.compare_digest(signed, checkpoint.signature):
            return _broken(count, None, f"checkpoint of entry {checkpoint.seq} is forged", prev)
        problem = _reaches(session, checkpoint.seq, checkpoint.head, last_seq, "checkpoint")
        if problem is not None:
            return _broken(count, None, problem, prev)
    if saved_head is not None:
        problem = _saved_head_problem(session, key, saved_head, last_seq)
        if problem is not None:
            return _broken(count, None, problem, prev)
    return VerifyResult(
        count, True, head_hash=prev, erased=erased, unkeyed=unkeyed, checkpoints=checkpoints
    )


def _has_any(session: Session) -> bool:
    return (
        session.scalar(select(CallerLogEntry.id).limit(1)) is not None
        or session.scalar(select(CallerLogCheckpoint.id).limit(1)) is not None
    )


def _entry_problem(key: bytes, entry: CallerLogEntry) -> str | None:
    values = {name: getattr(entry, name) for name in (*LEGACY_COLUMNS, "personal_digest")}
    if entry.chain != "hmac":
        if entry.erased_at is not None:
            return None  # erased before keyed chaining: nothing left to recompute
        if legacy_entry_hash(entry.prev_hash, values) != entry.hash:
            return "the entry's content does not match its hash (edited)"
        return None
    if entry.erased_at is None and not hmac.compare_digest(
        personal_digest(key, values), entry.personal_digest or ""
    ):
        return "the entry's personal fields do not match their digest (edited)"
    if not hmac.compare_digest(entry_hash(key, entry.prev_hash, values), entry.hash):
        return "the entry does not match its MAC (edited, forged, or another key)"
    return None


def _reaches(session: Session, seq: int, head: str, last_seq: int, what: str) -> str | None:
    if seq > last_seq:
        missing = f"entries {last_seq + 1}-{seq}" if seq > last_seq + 1 else f"entry {seq}"
        emptied = " (the log was emptied)" if last_seq == 0 else " (the tail was deleted)"
        return (
            f"the {what} names entry {seq} but the log ends at {last_seq}: "
            f"{missing} missing{emptied}"
        )
    stored = session.scalar(select(CallerLogEntry.hash).where(CallerLogEntry.seq == seq))
    if stored != head:
        return f"entry {seq} is not the one the {what} signed (the log was rewritten)"
    return None


def signed_head(session: Session, *, at: datetime) -> dict[str, Any]:
    """The log's head (newest seq and MAC), signed, for safekeeping outside the database."""
    key = log_key(session)
    seq, mac = _head(session)
    stamp = _plain(at)
    return {
        "seq": seq,
        "head": mac,
        "at": stamp,
        "signature": _head_signature(key, seq, mac, stamp),
    }


def parse_saved_head(text: str, where: str) -> dict[str, Any]:
    """The newest head in a file of saved heads (one JSON line each, as a cron appends them)."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1])
        head = {
            "seq": int(value["seq"]),
            "head": str(value["head"]),
            "at": str(value["at"]),
            "signature": str(value["signature"]),
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{where}: not a saved caller log head (from `campaign calls log-head`)"
        ) from exc
    return head


def _saved_head_problem(
    session: Session, key: bytes, saved: dict[str, Any], last_seq: int
) -> str | None:
    signed = _head_signature(key, saved["seq"], saved["head"], saved["at"])
    if not hmac.compare_digest(signed, saved["signature"]):
        return "the saved head's signature does not match this log's key (forged, or another key)"
    if saved["seq"] == 0:
        return None
    return _reaches(session, saved["seq"], saved["head"], last_seq, f"saved head of {saved['at']}")

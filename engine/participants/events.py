"""Import activity events (logins, redemptions, renewals, payments...) from CSV or JSONL.

Columns: ``external_id`` (the participant), ``type`` (a name like ``login``, ``redemption``,
``points_earned``: lower-case letters, digits and ``_``), ``occurred_at`` (ISO 8601; no offset
= program zone), ``points`` (whole number, may be negative), ``amount`` (decimal, at most 2
places), ``reference`` (the source system's id). Other columns are ignored.

Idempotent: the database holds one event per (program, reference), so re-importing a file
inserts nothing. A feed without references gets a digest of the event's content as its
reference, so its re-import is idempotent too (two identical events without a reference are
one event). After each chunk, each participant's ``last_activity_at`` moves forward to their
newest event. Streams: a 10,000,000-event file never sits in memory.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.app import App
from engine.clock import ensure_utc
from engine.db.session import writer_connection
from engine.participants.reader import (
    UTF8,
    SourceFile,
    SourceRow,
    check_utf8,
    original_text,
    resolve_encoding,
)
from engine.participants.results import (
    ImportSummary,
    Progress,
    RejectsWriter,
    default_rejects_path,
)
from engine.participants.store import ImportStore
from engine.participants.validation import MAX_INT, parse_datetime, text
from engine.programs import get_program

CHUNK_SIZE = 5000
_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
_INTEGER = re.compile(r"^[+-]?\d+$")
# Clocks of source systems drift; an event more than this far in the future is a data error
# (it would make the participant look active for days to come).
FUTURE_TOLERANCE = timedelta(days=1)
MAX_AMOUNT = Decimal("1e12")  # NUMERIC(14, 2)


@dataclass(frozen=True)
class EventRecord:
    external_id: str
    type: str
    occurred_at: datetime
    points: int | None
    amount: Decimal | None
    reference: str


def _unstorable(value: str) -> str | None:
    """Why a text cannot be stored as is (bytes that were not UTF-8, kept by the reader's
    surrogateescape or sent as a JSON escape; NUL, which PostgreSQL text refuses), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains bytes that are not text in the file's encoding"
    return None


def validate_event(
    row: Mapping[str, Any], *, timezone: str, at: datetime
) -> tuple[EventRecord | None, list[str]]:
    """Pure: a raw event row -> (record, []) or (None, every reason it fails)."""
    errors: list[str] = []
    external_id = text(row.get("external_id"))
    if external_id is None:
        errors.append("external_id: required")
    elif len(external_id) > 128:
        errors.append(f"external_id: longer than 128 characters ({len(external_id)})")
    elif (problem := _unstorable(external_id)) is not None:
        errors.append(f"external_id: {problem}")

    event_type = (text(row.get("type")) or "").lower()
    if not event_type:
        errors.append("type: required")
    elif len(event_type) > 64 or not _TYPE.match(event_type):
        errors.append(
            f"type: {event_type!r} is not an event type name (lower-case letters, digits, _)"
        )

    occurred_at: datetime | None = None
    raw_time = text(row.get("occurred_at"))
    if raw_time is None:
        errors.append("occurred_at: required")
    else:
        try:
            occurred_at = parse_datetime(raw_time, timezone)
        except ValueError as exc:
            errors.append(f"occurred_at: {raw_time!r}: {exc}")
        else:
            if occurred_at > at + FUTURE_TOLERANCE:
                errors.append(f"occurred_at: {raw_time!r} is in the future")

    points: int | None = None
    raw_points = text(row.get("points"))
    if raw_points is not None:
        if not _INTEGER.match(raw_points):
            errors.append(f"points: {raw_points[:40]!r} is not a whole number")
        # Length first: int() of thousands of digits is slow, and refused past 4,300.
        elif len(raw_points.lstrip("+-0")) > 10 or abs(int(raw_points)) > MAX_INT:
            errors.append(f"points: {raw_points[:20]} is too large")
        else:
            points = int(raw_points)

    amount: Decimal | None = None
    raw_amount = text(row.get("amount"))
    if raw_amount is not None:
        try:
            amount = Decimal(raw_amount)
        except InvalidOperation:
            errors.append(f"amount: {raw_amount!r} is not a decimal number")
        else:
            if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
                errors.append(f"amount: {raw_amount!r} is out of range")
            elif amount != amount.quantize(Decimal("0.01")):
                errors.append(f"amount: {raw_amount!r} has more than 2 decimal places")

    reference = text(row.get("reference"))
    if reference is not None and len(reference) > 128:
        errors.append(f"reference: longer than 128 characters ({len(reference)})")
    elif reference is not None and (problem := _unstorable(reference)) is not None:
        errors.append(f"reference: {problem}")

    if errors:
        return None, errors
    assert external_id is not None and occurred_at is not None
    if reference is None:
        content = "\x1f".join(
            [
                external_id,
                event_type,
                occurred_at.isoformat(),
                "" if points is None else str(points),
                "" if amount is None else str(amount.normalize()),
            ]
        )
        reference = "digest:" + hashlib.sha256(content.encode()).hexdigest()
    return EventRecord(external_id, event_type, occurred_at, points, amount, reference), []


@dataclass(frozen=True)
class EventProgram:
    """The program a batch of events belongs to."""

    id: int
    key: str
    timezone: str


@dataclass(frozen=True)
class StoredEvents:
    inserted: int
    unchanged: int  # already stored under their (program, reference)
    rejects: list[tuple[int, list[str]]]  # (the row's position, every reason), in order
    participant_ids: frozenset[int]  # whose events were accepted (new or already stored)


def store_events(
    store: ImportStore,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    program: EventProgram,
    source: str,
    at: datetime,
) -> StoredEvents:
    """Validate ``rows`` ((position, raw row) pairs; the position is the caller's line or
    index), find each one's participant and insert the good ones: the one write path of every
    way events arrive (file import, webhook). Idempotent on (program, reference); moves
    ``last_activity_at`` forward. The caller owns the transaction."""
    rejects: list[tuple[int, list[str]]] = []
    valid: list[tuple[int, EventRecord]] = []
    for position, row in rows:
        record, reasons = validate_event(row, timezone=program.timezone, at=at)
        if record is None:
            rejects.append((position, reasons))
        else:
            valid.append((position, record))
    ids = store.participant_ids(program.id, list({r.external_id for _, r in valid}))
    staged: list[tuple[Any, ...]] = []
    participants: set[int] = set()
    for position, record in valid:
        participant_id = ids.get(record.external_id)
        if participant_id is None:
            reason = (
                f"no participant with external_id {record.external_id} in program {program.key}"
            )
            rejects.append((position, [reason]))
            continue
        participants.add(participant_id)
        staged.append(
            (
                program.id,
                participant_id,
                record.type,
                record.occurred_at,
                record.points,
                record.amount,
                record.reference,
                source,
                at,
            )
        )
    new = store.insert_events(staged)
    rejects.sort(key=lambda reject: reject[0])
    return StoredEvents(new, len(staged) - new, rejects, frozenset(participants))


def import_events(
    app: App,
    path: Path | str,
    *,
    program_key: str | None,
    fmt: str | None = None,
    rejects_path: Path | str | None = None,
    at: datetime,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
    encoding: str | None = None,
) -> ImportSummary:
    """Insert the events of ``path``; ``unchanged`` counts events already there.
    ``encoding``: the file's (default UTF-8; a file that is not is refused, naming the line)."""
    at = ensure_utc(at)
    started = time.perf_counter()
    path = Path(path)
    with app.sessions() as session:
        program = get_program(session, program_key)
        program_ref = EventProgram(program.id, program.key, program.timezone)
    encoding = resolve_encoding(encoding)
    if encoding == UTF8:
        check_utf8(path)
    source = SourceFile(
        path, fmt, required=("external_id", "type", "occurred_at"), encoding=encoding
    )
    rejects = RejectsWriter(
        Path(rejects_path) if rejects_path else default_rejects_path(path),
        source.columns if source.fmt == "csv" else ["raw"],
        encoding,
    )
    event_source = f"import:{path.name}"[:32]
    read = inserted = unchanged = 0
    try:
        # SQLite: every chunk's transaction begins as the writer; it reads (lookups) first.
        with writer_connection(app.engine) as connection:
            store = ImportStore(connection)

            def write(rows: list[SourceRow]) -> None:
                nonlocal read, inserted, unchanged
                failures: list[tuple[int, list[str], list[str]]] = []
                readable: list[tuple[int, dict[str, Any]]] = []
                by_line: dict[int, SourceRow] = {}
                for row in rows:
                    if row.error is not None:
                        failures.append((row.line, [row.error], original_text(row)))
                    else:
                        readable.append((row.line, source.mapping(row)))
                        by_line[row.line] = row
                stored = store_events(
                    store, readable, program=program_ref, source=event_source, at=at
                )
                connection.commit()
                read += len(rows)
                inserted += stored.inserted
                unchanged += stored.unchanged
                for line, reasons in stored.rejects:
                    failures.append((line, reasons, original_text(by_line[line])))
                for line, reasons, original in sorted(failures, key=lambda f: f[0]):
                    rejects.write(line, reasons, original)
                if progress is not None:
                    progress(source.bytes_read, source.size)

            batch: list[SourceRow] = []
            for row in source:
                batch.append(row)
                if len(batch) >= chunk_size:
                    write(batch)
                    batch = []
            if batch:
                write(batch)
            store.close()
    finally:
        source.close()
        rejects.close()
    assert read == inserted + unchanged + rejects.count
    return ImportSummary(
        read=read,
        inserted=inserted,
        updated=0,
        unchanged=unchanged,
        rejected=rejects.count,
        rejects_path=rejects.path if rejects.count else None,
        seconds=time.perf_counter() - started,
    )

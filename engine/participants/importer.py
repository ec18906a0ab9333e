"""Import a participant file (CSV or JSONL) into a program: validate, upsert, report.

The daily member file is mostly unchanged from yesterday, may hold a million rows, and may
hold bad rows. So:

- every row ends up counted exactly once: read == inserted + updated + unchanged + rejected;
- a bad row never stops the import: it goes to the rejects file with EVERY reason it fails;
- a row whose raw content has the same digest as at its last import is ``unchanged`` and is
  neither validated nor written again, which makes re-running a file cheap and a no-op;
- rows are processed in chunks: for each chunk, one query finds the stored digests, validation
  runs in worker processes (phonenumbers and email-validator cost tens of microseconds per
  value) while this process writes the previous chunk, and one set-based statement upserts it.
  Each chunk is committed, so an interrupted import keeps its progress and a re-run finishes it.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from engine.app import App
from engine.clock import ensure_utc
from engine.participants.reader import (
    SourceFile,
    SourceRow,
    digest_prefix,
    original_text,
    row_digest,
)
from engine.participants.results import (
    ImportSummary,
    Progress,
    RejectsWriter,
    default_rejects_path,
)
from engine.participants.store import (
    CONSENT_COLUMNS,
    PARTICIPANT_COLUMNS,
    ImportStore,
    RowEncoder,
)
from engine.participants.suppressions import email_hash, hash_normalised
from engine.participants.validation import (
    ParticipantRecord,
    ValidationContext,
    text,
    validate_chunk,
)
from engine.programs import get_program
from engine.sampling import sample_key

# Bump when validation or storage rules change meaning: every row then counts as changed once.
RULES_VERSION = "1"
CHUNK_SIZE = 2000
# Below this many rows to validate, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 5000

# --------------------------------------------------------------------------- seen ids


class SeenIds:
    """external_id -> first line, for every id met in this file.

    A Python dict of a million ids costs ~120 MB. This is a private, temporary on-disk SQLite
    database instead (``connect("")``; deleted when closed): it keeps a few MB of cache in
    memory and leaves the rest to the OS page cache, and it is queried once per chunk. Exact
    (ids are not hashed).
    """

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute("PRAGMA journal_mode=OFF")  # scratch data: nothing to roll back to
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")

    def first_lines(self, ids: Sequence[str]) -> dict[str, int]:
        """Of ``ids``, those seen before, with the line they were first seen on."""
        # A JSON array keeps the statement text constant (see store.ImportStore._in_query).
        query = "SELECT id, line FROM seen WHERE id IN (SELECT value FROM json_each(?))"
        return dict(self._db.execute(query, (json.dumps(list(ids)),)))

    def add(self, items: Sequence[tuple[str, int]]) -> None:
        self._db.executemany("INSERT INTO seen VALUES (?, ?)", items)

    def close(self) -> None:
        self._db.close()


# --------------------------------------------------------------------------- validation


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Target:
    """Where validated rows go: what a worker needs to encode them for the database."""

    program_id: int
    program_key: str
    at: datetime
    postgres: bool
    consent_source: str


Task = tuple[ValidationContext, _Target, list[str], list[tuple[int, Any]], list[str]]
# Per row: (participant row, its consent rows) ready for the driver, or (None, reasons).
Result = list[tuple[tuple[Any, ...] | None, list[Any]]]
_EXTERNAL_ID = PARTICIPANT_COLUMNS.index("external_id")
_EMAIL, _PHONE = PARTICIPANT_COLUMNS.index("email"), PARTICIPANT_COLUMNS.index("phone")


def encode_chunk(task: Task) -> Result:
    """Validate a chunk and encode the good rows for the database. Runs in a worker process:
    validation (phonenumbers, email-validator) and encoding are most of an import's CPU, and
    plain tuples of strings cross the process boundary much faster than records."""
    ctx, target, columns, items, digests = task
    encode_participant = RowEncoder(PARTICIPANT_COLUMNS, postgres=target.postgres)
    encode_consent = RowEncoder(CONSENT_COLUMNS, postgres=target.postgres)
    results: Result = []
    checked = validate_chunk((ctx, columns, items))
    for (record, reasons), digest in zip(checked, digests, strict=True):
        if record is None:
            results.append((None, reasons))
            continue
        consents = [
            encode_consent(
                (
                    target.program_id,
                    record.external_id,
                    channel,
                    status,
                    target.at,
                    target.consent_source,
                )
            )
            for channel, status in record.consents.items()
        ]
        row = _participant_row(target.program_id, target.program_key, record, digest, target.at)
        results.append((encode_participant(row), consents))
    return results


class Validator:
    """Validates chunks in this process until ``threshold`` rows have been asked for, then in a
    pool of worker processes (ordered: results come back in submission order)."""

    def __init__(self, *, workers: int, threshold: int) -> None:
        self.workers = workers
        self.threshold = threshold
        self.requested = 0
        self.pool: Pool | None = None

    @property
    def lookahead(self) -> int:
        """How many chunks may be in flight before the oldest must be written."""
        return self.workers if self.pool is not None else 0

    def submit(self, task: Task) -> Callable[[], Result]:
        items = task[3]
        self.requested += len(items)
        if not items:
            return list
        if self.pool is None and (self.workers < 2 or self.requested < self.threshold):
            result = encode_chunk(task)
            return lambda: result
        if self.pool is None:
            # fork, not spawn: spawn re-imports the caller's __main__, which breaks any script
            # that calls the importer without an `if __name__ == "__main__"` guard. Freezing
            # the garbage collector first keeps the workers' collections from touching (and so
            # copying) every page they share with this process.
            gc.freeze()
            try:
                self.pool = multiprocessing.get_context("fork").Pool(self.workers)
            finally:
                gc.unfreeze()
        return self.pool.apply_async(encode_chunk, (task,)).get

    def close(self, *, failed: bool) -> None:
        if self.pool is not None:
            if failed:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


# --------------------------------------------------------------------------- import


@dataclass
class _Chunk:
    read: int = 0
    unchanged: int = 0
    rejects: list[tuple[int, list[str], list[str]]] = field(default_factory=list)
    rows: list[SourceRow] = field(default_factory=list)  # rows to validate
    digests: list[str] = field(default_factory=list)
    existing: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Totals:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


def import_participants(
    app: App,
    path: Path | str,
    *,
    program_key: str | None,
    fmt: str | None = None,
    rejects_path: Path | str | None = None,
    at: datetime,
    chunk_size: int = CHUNK_SIZE,
    workers: int | None = None,
    parallel_threshold: int = PARALLEL_THRESHOLD,
    progress: Progress | None = None,
) -> ImportSummary:
    """Upsert the participants of ``path`` into the program by (program, external_id)."""
    at = ensure_utc(at)
    started = time.perf_counter()
    path = Path(path)
    with app.sessions() as session:
        program = get_program(session, program_key)
        program_id, key = program.id, program.key
        ctx = ValidationContext(timezone=program.timezone, region=program.region)
    source = SourceFile(path, fmt)
    rejects = RejectsWriter(
        Path(rejects_path) if rejects_path else default_rejects_path(path),
        source.columns if source.fmt == "csv" else ["raw"],
    )
    consent_source = f"import:{path.name}"[:64]
    prefix = digest_prefix(
        f"participants/{RULES_VERSION}/{source.fmt}/{ctx.timezone}/{ctx.region}", source.columns
    )
    id_index = source.columns.index("external_id") if source.fmt == "csv" else -1
    target = _Target(
        program_id=program_id,
        program_key=key,
        at=at,
        postgres=app.engine.dialect.name == "postgresql",
        consent_source=consent_source,
    )
    totals = _Totals()
    seen = SeenIds()
    validator = Validator(workers=workers or default_workers(), threshold=parallel_threshold)
    failed = True
    try:
        with app.engine.connect() as connection:
            store = ImportStore(connection)
            erased = store.erased_hashes()
            connection.commit()

            def prepare(rows: list[SourceRow]) -> _Chunk:
                """Duplicates, unreadable rows and unchanged rows, before any validation."""
                chunk = _Chunk(read=len(rows))
                candidates: list[tuple[SourceRow, str, str]] = []
                first_here: dict[str, int] = {}
                repeats: list[tuple[SourceRow, str]] = []
                for row in rows:
                    if row.error is not None:
                        chunk.rejects.append((row.line, [row.error], original_text(row)))
                        continue
                    try:
                        digest = row_digest(prefix, row)
                    except UnicodeEncodeError:
                        chunk.rejects.append(
                            (row.line, ["contains bytes that are not UTF-8"], original_text(row))
                        )
                        continue
                    if id_index >= 0:
                        external_id = row.original[id_index].strip()
                    else:
                        external_id = text((row.values or {}).get("external_id")) or ""
                    if external_id:
                        if external_id in first_here:
                            repeats.append((row, external_id))
                            continue
                        first_here[external_id] = row.line
                    candidates.append((row, digest, external_id))
                earlier = seen.first_lines(list(first_here))
                seen.add([(i, n) for i, n in first_here.items() if i not in earlier])
                lookup = [i for i in first_here if i not in earlier]
                chunk.existing = store.existing_digests(program_id, lookup)
                for row, external_id in repeats:
                    first = earlier.get(external_id, first_here[external_id])
                    chunk.rejects.append((row.line, [_duplicate(first)], original_text(row)))
                for row, digest, external_id in candidates:
                    if external_id in earlier:
                        reason = _duplicate(earlier[external_id])
                        chunk.rejects.append((row.line, [reason], original_text(row)))
                    elif external_id and chunk.existing.get(external_id) == digest:
                        chunk.unchanged += 1
                    else:
                        chunk.rows.append(row)
                        chunk.digests.append(digest)
                return chunk

            def write(chunk: _Chunk, results: Result) -> None:
                stored: list[tuple[Any, ...]] = []
                consents: list[tuple[Any, ...]] = []
                for row, (encoded, extra) in zip(chunk.rows, results, strict=True):
                    if encoded is not None and erased and _is_erased(encoded, erased):
                        encoded, extra = None, [_ERASED]
                    if encoded is None:
                        chunk.rejects.append((row.line, extra, original_text(row)))
                        continue
                    if encoded[_EXTERNAL_ID] in chunk.existing:
                        totals.updated += 1
                    else:
                        totals.inserted += 1
                    stored.append(encoded)
                    consents.extend(extra)
                store.upsert_participants(stored, encoded=True)
                store.upsert_consents(consents, encoded=True)
                connection.commit()
                totals.read += chunk.read
                totals.unchanged += chunk.unchanged
                totals.rejected += len(chunk.rejects)
                for line, reasons, original in sorted(chunk.rejects, key=lambda r: r[0]):
                    rejects.write(line, reasons, original)
                if progress is not None:
                    progress(source.bytes_read, source.size)

            pending: deque[tuple[_Chunk, Callable[[], Result]]] = deque()

            def enqueue(rows: list[SourceRow]) -> None:
                chunk = prepare(rows)
                task = (ctx, target, source.columns, _payload(chunk), chunk.digests)
                pending.append((chunk, validator.submit(task)))

            batch: list[SourceRow] = []
            for row in source:
                batch.append(row)
                if len(batch) < chunk_size:
                    continue
                enqueue(batch)
                batch = []
                # Write the oldest chunk while the workers validate the newer ones.
                while len(pending) > validator.lookahead:
                    done, result = pending.popleft()
                    write(done, result())
            if batch:
                enqueue(batch)
            while pending:
                done, result = pending.popleft()
                write(done, result())
            store.close()
        failed = False
    finally:
        validator.close(failed=failed)
        source.close()
        seen.close()
        rejects.close()
    assert totals.read == totals.inserted + totals.updated + totals.unchanged + totals.rejected
    return ImportSummary(
        read=totals.read,
        inserted=totals.inserted,
        updated=totals.updated,
        unchanged=totals.unchanged,
        rejected=totals.rejected,
        rejects_path=rejects.path if rejects.count else None,
        seconds=time.perf_counter() - started,
    )


def _duplicate(first_line: int) -> str:
    return f"duplicate external_id in this file (first at line {first_line})"


def _payload(chunk: _Chunk) -> list[tuple[int, Any]]:
    return [
        (row.line, row.values if row.values is not None else row.original) for row in chunk.rows
    ]


_ERASED = (
    "erased participant: their email or phone is under an erasure suppression "
    "(they asked to be forgotten)"
)


def _is_erased(row: tuple[Any, ...], erased: set[str]) -> bool:
    email, phone = row[_EMAIL], row[_PHONE]
    if email is not None and email_hash(email) in erased:
        return True
    return phone is not None and hash_normalised(phone) in erased


def _participant_row(
    program_id: int, program_key: str, record: ParticipantRecord, digest: str, at: datetime
) -> tuple[Any, ...]:
    # Order: engine.participants.store.PARTICIPANT_COLUMNS.
    return (
        program_id,
        record.external_id,
        record.first_name,
        record.last_name,
        record.email,
        record.phone,
        record.timezone,
        record.locale,
        record.status,
        record.enrolled_at,
        record.last_activity_at,
        record.points_balance,
        record.points_expiring,
        record.points_expire_at,
        record.renewal_date,
        record.tier,
        record.account_manager,
        record.attributes,
        sample_key(program_key, record.external_id),
        digest,
        at,
        at,
    )

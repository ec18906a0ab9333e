"""Import a participant file (CSV or JSONL) into a program: validate, upsert, report.

The daily member file is mostly unchanged from yesterday, may hold a million rows, and may
hold bad rows. So:

- every row ends up counted exactly once: read == inserted + updated + unchanged + rejected;
- a bad row never stops the import: it goes to the rejects file with EVERY reason it fails;
- a row whose raw content has the same digest as at its last import is ``unchanged`` and is
  neither validated nor written again, which makes re-running a file cheap and a no-op;
- rows are processed in chunks: for each chunk, one query finds the stored digests (none when
  the program had no participants when the import began), validation runs in worker processes
  (phonenumbers and email-validator cost tens of microseconds per value) while this process
  writes an earlier chunk with set-based statements. Work is committed every COMMIT_ROWS rows,
  so an interrupted import keeps its progress and a re-run finishes it;
- a file carries only what it knows: a column it does not have, or a blank cell, leaves the
  stored value alone (``clear_blank`` makes a blank cell clear it). The digest covers the
  header (and clear_blank), so a partial file never passes for the full one; whichever file
  last wrote a row owns its digest: re-running that file is a no-op, any other file writes.
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
from functools import lru_cache
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from engine.app import App
from engine.clock import ensure_utc
from engine.consent.suppressions import email_hash, hash_normalised
from engine.db.session import make_engine, writer_connection
from engine.participants.reader import (
    UTF8,
    PieceReader,
    SourceFile,
    SourceRow,
    check_utf8,
    count_lines,
    digest_prefix,
    original_text,
    parse_piece,
    resolve_encoding,
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
    copy_line,
    copy_text,
    lookup,
)
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
# Rows written between commits: an interrupted import keeps its progress up to the last one.
# Committing every chunk instead makes SQLite write the same index pages again and again.
COMMIT_ROWS = 20_000
# A file of at least this many rows, and more than twice what the table holds, is loaded
# without the email and phone indexes, which are rebuilt at the end (ImportStore.defer_indexes).
DEFER_INDEXES_ROWS = 100_000
# SQLite page cache of the importing connection (KiB). More buys little once the email and
# phone indexes are deferred, and every MB of it counts against the import's memory budget.
SQLITE_CACHE_KIB = 8 * 1024
# Below this many rows in the file, starting worker processes costs more than they save.
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


# --------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class _Plan:
    """What reading, checking and encoding a piece of the file needs; fixed for one import.
    Handed to the worker processes once, when they start."""

    fmt: str
    encoding: str
    columns: tuple[str, ...]
    digest_context: str
    ctx: ValidationContext
    program_id: int
    program_key: str
    at: datetime
    postgres: bool
    consent_source: str
    erased: frozenset[str]
    # The program had no participants when the import began: nothing to look up, every row
    # is new (the file's own repeats are found by SeenIds).
    first_load: bool
    database_url: str

    @property
    def width(self) -> int:
        return len(self.columns)


@dataclass
class _PieceResult:
    """One piece, read, checked against the stored digests, validated and encoded.

    ``firsts``: (external_id, line) of each id's first row in the piece, in file order, for
    the duplicate check across pieces; ``repeats``: (line, external_id, cells) of later rows
    with an id seen before in the piece; ``unchanged``: lines of rows whose digest is the
    stored one; ``writes``: (line, existed, participant row, consent rows, fields a blank
    clears) encoded for the
    database (COPY text on PostgreSQL, driver tuples on SQLite); ``rejects``: (line, reasons,
    cells).
    """

    read: int = 0
    firsts: list[tuple[str, int]] = field(default_factory=list)
    repeats: list[tuple[int, str, list[str]]] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    writes: list[tuple[int, bool, Any, Any, frozenset[str]]] = field(default_factory=list)
    rejects: list[tuple[int, list[str], list[str]]] = field(default_factory=list)


Lookup = Callable[[list[str]], dict[str, Any]]


def process_piece(plan: _Plan, data: bytes, first_line: int, lookup: Lookup) -> _PieceResult:
    """Everything an import does to a piece of the file before writing it: parse, digest,
    skip the unchanged rows (one query for the stored digests), validate and encode the
    rest. Runs in a worker process for a big file."""
    rows = parse_piece(plan.fmt, plan.width, data, first_line, plan.encoding)
    result = _PieceResult(read=len(rows))
    prefix = _digest_prefix(plan.digest_context, plan.columns)
    id_index = plan.columns.index("external_id") if plan.fmt == "csv" else -1
    first_here: dict[str, int] = {}
    candidates: list[tuple[SourceRow, str, str]] = []
    for row in rows:
        if row.error is not None:
            result.rejects.append((row.line, [row.error], original_text(row)))
            continue
        try:
            digest = row_digest(prefix, row)
        except UnicodeEncodeError:
            reason = f"contains bytes that are not {plan.encoding}"
            result.rejects.append((row.line, [reason], original_text(row)))
            continue
        if id_index >= 0:
            external_id = row.original[id_index].strip()
        else:
            external_id = text((row.values or {}).get("external_id")) or ""
        if external_id:
            if external_id in first_here:
                result.repeats.append((row.line, external_id, original_text(row)))
                continue
            first_here[external_id] = row.line
        candidates.append((row, digest, external_id))
    result.firsts = list(first_here.items())
    existing = {} if plan.first_load else lookup(list(first_here))
    changed: list[tuple[SourceRow, str, str]] = []
    for candidate in candidates:
        _row, digest, external_id = candidate
        if external_id and existing.get(external_id) == digest:
            result.unchanged.append(_row.line)
        else:
            changed.append(candidate)
    if not changed:
        return result
    checked = validate_chunk(
        (plan.ctx, plan.columns, [(row.line, _payload(row)) for row, _, _ in changed])
    )
    encoder = _encoder(plan)
    for (row, digest, external_id), (record, reasons) in zip(changed, checked, strict=True):
        if record is not None and plan.erased and _is_erased(record, plan.erased):
            record, reasons = None, [_ERASED]
        if record is None:
            result.rejects.append((row.line, reasons, original_text(row)))
            continue
        existed = external_id in existing
        participant, consents = encoder.encode(record, digest, existed=existed)
        result.writes.append((row.line, existed, participant, consents, record.clears))
    return result


class _Encoder:
    """A validated record -> its participant row and consent rows as the writing process
    hands them to the database: COPY text on PostgreSQL (the consents of a row as one string),
    driver tuples on SQLite (a list). What is the same on every row is encoded once."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.postgres = plan.postgres
        if plan.postgres:
            self.participant: Callable[[Sequence[Any]], Any] = copy_line
            self.consent_prefix = f"{plan.program_id}\t"
            self.consent_suffix = copy_line((plan.at, plan.consent_source))
        else:
            self.participant = RowEncoder(PARTICIPANT_COLUMNS, postgres=False)
            at, source = RowEncoder(CONSENT_COLUMNS[-2:], postgres=False)(
                (plan.at, plan.consent_source)
            )
            self.consent_tail = (at, source)

    def encode(
        self, record: ParticipantRecord, digest: str, *, existed: bool = False
    ) -> tuple[Any, Any]:
        """A member the lookup found (``existed``) is an update on PostgreSQL, whose
        attributes are the patch (None removes a key); SQLite's statement takes both."""
        plan = self.plan
        row = _participant_row(plan.program_id, plan.program_key, record, digest, plan.at)
        stored = row[_ATTRIBUTES]
        if self.postgres:
            if existed and record.attributes is not stored:
                row = (*row[:_ATTRIBUTES], record.attributes, *row[_ATTRIBUTES + 1 :])
            participant = self.participant(row)
        else:
            # SQLITE_PARTICIPANT_PARAMS: the row, then the attributes patch (usually the
            # stored attributes themselves: encoded once).
            encoded = self.participant(row)
            patch = (
                encoded[_ATTRIBUTES]
                if record.attributes is stored
                else json.dumps(record.attributes)
            )
            participant = (*encoded, patch)
        if self.postgres:
            # CONSENT_COLUMNS order; channel and status are fixed words (nothing to escape).
            head = self.consent_prefix + copy_text(record.external_id) + "\t"
            consents: Any = "".join(
                f"{head}{channel}\t{status}\t{self.consent_suffix}"
                for channel, status in record.consents.items()
            )
        else:
            consents = [
                (plan.program_id, record.external_id, channel, status, *self.consent_tail)
                for channel, status in record.consents.items()
            ]
        return participant, consents


@lru_cache(maxsize=4)
def _encoder(plan: _Plan) -> _Encoder:
    return _Encoder(plan)


@lru_cache(maxsize=4)
def _digest_prefix(context: str, columns: tuple[str, ...]) -> Any:
    return digest_prefix(context, list(columns))


def _payload(row: SourceRow) -> Any:
    return row.values if row.values is not None else row.original


# --------------------------------------------------------------------------- workers

# The plan and database connection of a worker process (set when the pool starts it).
_worker: dict[str, Any] = {}


def _start_worker(plan: _Plan) -> None:
    _worker.clear()
    _worker["plan"] = plan


def _worker_piece(job: tuple[bytes, int]) -> _PieceResult:
    return process_piece(_worker["plan"], job[0], job[1], _worker_lookup)


def _worker_lookup(ids: list[str]) -> dict[str, Any]:
    """The worker's digest lookup, connecting on first use (a first load never uses it)."""
    lookup = _worker.get("lookup")
    if lookup is None:
        lookup = _worker["lookup"] = _own_lookup(_worker["plan"])
    return lookup(ids)


def _own_lookup(plan: _Plan) -> Lookup:
    """A worker's own connection for the digest lookups: an engine made in the parent must
    not be used across fork. Autocommit, so no snapshot is held open while the parent writes."""
    engine = make_engine(plan.database_url, poolclass=NullPool)
    raw = engine.raw_connection()  # kept referenced: the connection closes with it
    driver = raw.driver_connection
    if plan.postgres:
        driver.autocommit = True  # type: ignore[union-attr]

    def existing(ids: list[str]) -> dict[str, Any]:
        assert raw.driver_connection is driver
        return dict(lookup(driver, plan.postgres, plan.program_id, ids, "source_digest"))

    return existing


class Pieces:
    """Processes pieces in this process, or, once ``start_workers`` was called, in a pool of
    worker processes (results come back in submission order)."""

    def __init__(self, plan: _Plan, local: Lookup, *, workers: int) -> None:
        self.plan = plan
        self.local = local
        self.workers = workers
        self.pool: Pool | None = None

    @property
    def lookahead(self) -> int:
        """How many pieces may be in flight before the oldest must be written. On SQLite one
        per worker and one queued keeps the workers busy (this process writes a piece in a
        fraction of the time a worker takes to make it); more would only hold more results in
        memory. On PostgreSQL this process waits on the server, which shares the cores with
        the workers: a deeper queue lets them work through those waits (~10% faster)."""
        if self.pool is None:
            return 0
        return 2 * self.workers if self.plan.postgres else self.workers + 1

    def start_workers(self) -> None:
        """Start the worker processes. Called before the first piece is processed, while this
        process is still small: each worker is a fork of it, and its resident memory counts
        what it shares with this process (e.g. the validation metadata and the SQLite page
        cache would be copied into every worker's count had this process loaded them first).
        """
        if self.pool is not None or self.workers < 2:
            return
        # fork, not spawn: spawn re-imports the caller's __main__, which breaks any script
        # that calls the importer without an `if __name__ == "__main__"` guard. Freezing
        # the garbage collector first keeps the workers' collections from touching (and so
        # copying) every page they share with this process.
        gc.freeze()
        try:
            self.pool = multiprocessing.get_context("fork").Pool(
                self.workers, initializer=_start_worker, initargs=(self.plan,)
            )
        finally:
            gc.unfreeze()

    def submit(self, data: bytes, first_line: int) -> Callable[[], _PieceResult]:
        if self.pool is None:
            result = process_piece(self.plan, data, first_line, self.local)
            return lambda: result
        return self.pool.apply_async(_worker_piece, ((data, first_line),)).get

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
    clear_blank: bool = False,
    encoding: str | None = None,
) -> ImportSummary:
    """Upsert the participants of ``path`` into the program by (program, external_id).

    A column the file does not carry, and a blank cell, keep the stored value; with
    ``clear_blank`` a blank cell of a column the file carries clears it. ``encoding`` is the
    file's (default UTF-8, BOM or not)."""
    at = ensure_utc(at)
    started = time.perf_counter()
    path = Path(path)
    with app.sessions() as session:
        program = get_program(session, program_key)
        program_id, key = program.id, program.key
        ctx = ValidationContext(
            timezone=program.timezone, region=program.region, clear_blank=clear_blank
        )
    encoding = resolve_encoding(encoding)
    with SourceFile(path, fmt, encoding=encoding) as source:  # the header, a readable file
        fmt, columns, header_lines = source.fmt, source.columns, source.header_lines
    if encoding == UTF8:
        check_utf8(path)
    size = path.stat().st_size
    rejects = RejectsWriter(
        Path(rejects_path) if rejects_path else default_rejects_path(path),
        columns if fmt == "csv" else ["raw"],
        encoding,
    )
    pieces = PieceReader(path, fmt, skip_lines=header_lines, records=chunk_size)
    url = app.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        workers = 1  # a worker could not open this database for its lookups
    totals = _Totals()
    seen = SeenIds()
    runner: Pieces | None = None
    failed = True
    try:
        # SQLite: every chunk's transaction begins as the writer; it reads (lookups) first.
        with writer_connection(app.engine) as connection:
            store = ImportStore(connection)
            postgres = store.postgres
            plan = _Plan(
                fmt=fmt,
                encoding=encoding,
                columns=tuple(columns),
                # A file imported with clear_blank means something else than without.
                digest_context=(
                    f"participants/{RULES_VERSION}/{fmt}/{ctx.timezone}/{ctx.region}"
                    + ("/clear-blank" if clear_blank else "")
                ),
                ctx=ctx,
                program_id=program_id,
                program_key=key,
                at=at,
                postgres=postgres,
                consent_source=f"import:{path.name}"[:64],
                erased=frozenset(store.erased_hashes()),
                first_load=not store.has_participants(program_id),
                database_url=url.render_as_string(hide_password=False),
            )
            store.lookups = not plan.first_load
            store.restore_indexes()  # any a killed import left dropped
            connection.commit()
            cache = _bigger_cache(connection, postgres)
            deferred: list[Any] = []
            runner = Pieces(
                plan,
                lambda ids: store.existing_digests(program_id, ids),
                workers=workers or default_workers(),
            )
            uncommitted = 0

            def write(data: bytes, first_line: int, result: _PieceResult) -> None:
                nonlocal uncommitted
                rejected = list(result.rejects)
                writes, unchanged = result.writes, len(result.unchanged)
                earlier = seen.first_lines([i for i, _ in result.firsts])
                if earlier:
                    # Ids first met in an earlier piece: every row of theirs here is a
                    # duplicate, whatever the worker made of it (rare: re-read the piece for
                    # the original cells).
                    dropped = {line: earlier[i] for i, line in result.firsts if i in earlier}
                    cells = {
                        row.line: original_text(row)
                        for row in parse_piece(fmt, len(columns), data, first_line, encoding)
                        if row.line in dropped
                    }
                    rejected = [r for r in rejected if r[0] not in dropped]
                    rejected.extend((n, [_duplicate(f)], cells[n]) for n, f in dropped.items())
                    writes = [w for w in writes if w[0] not in dropped]
                    unchanged -= sum(1 for line in result.unchanged if line in dropped)
                seen.add([(i, n) for i, n in result.firsts if i not in earlier])
                firsts = dict(result.firsts)
                for line, external_id, original in result.repeats:
                    first = earlier.get(external_id, firsts[external_id])
                    rejected.append((line, [_duplicate(first)], original))
                _write_groups(store, writes)
                inserted = sum(1 for w in writes if not w[1])
                totals.inserted += inserted
                totals.updated += len(writes) - inserted
                totals.read += result.read
                totals.unchanged += unchanged
                totals.rejected += len(rejected)
                uncommitted += len(writes)
                if uncommitted >= COMMIT_ROWS:
                    connection.commit()
                    uncommitted = 0
                for line, reasons, original in sorted(rejected, key=lambda r: r[0]):
                    rejects.write(line, reasons, original)
                if progress is not None:
                    progress(min(pieces.bytes_read, size), size)

            pending: deque[tuple[bytes, int, Callable[[], _PieceResult]]] = deque()
            try:
                for data, first_line in pieces:
                    if first_line == pieces.first_line:
                        estimate = _estimate_rows(data, size)
                        deferred = _maybe_defer_indexes(store, estimate)
                        if deferred:
                            # Commit the DROP at once: on PostgreSQL it locks the table, and
                            # the workers' lookups (their own connections) would wait for
                            # this transaction while it waits for their results.
                            connection.commit()
                        if estimate >= parallel_threshold:
                            runner.start_workers()
                    pending.append((data, first_line, runner.submit(data, first_line)))
                    # Write the oldest piece while the workers work on the newer ones.
                    while len(pending) > runner.lookahead:
                        data, first_line, result = pending.popleft()
                        write(data, first_line, result())
                while pending:
                    data, first_line, result = pending.popleft()
                    write(data, first_line, result())
                store.restore_indexes(deferred)
                connection.commit()
            except BaseException:
                if deferred:  # dropped in a committed chunk: put them back, then fail
                    connection.rollback()
                    store.restore_indexes(deferred)
                    connection.commit()
                raise
            _restore_cache(connection, cache)
            store.close()
        failed = False
    finally:
        if runner is not None:
            runner.close(failed=failed)
        pieces.close()
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


def _write_groups(
    store: ImportStore, writes: list[tuple[int, bool, Any, Any, frozenset[str]]]
) -> None:
    """Write a piece's rows: one statement per group of rows that share what a blank clears
    (one group unless the import clears blanks of a JSONL file whose rows carry different
    keys) and, on PostgreSQL, whether they are new or updates."""
    groups: dict[tuple[bool, frozenset[str]], list[tuple[Any, Any]]] = {}
    for _line, existed, participant, row_consents, clears in writes:
        key = (existed and store.postgres, clears)
        groups.setdefault(key, []).append((participant, row_consents))
    for (existing, clears), rows in groups.items():
        participants = [r[0] for r in rows]
        if store.postgres:
            consents: list[Any] = [r[1] for r in rows]
        else:
            consents = [c for r in rows for c in r[1]]
        store.upsert_lines(participants, consents, existing=existing, clears=clears)


def _estimate_rows(first_piece: bytes, size: int) -> int:
    """Rows in the file, estimated from its first piece."""
    return count_lines(first_piece) * size // max(1, len(first_piece))


def _maybe_defer_indexes(store: ImportStore, estimate: int) -> list[Any]:
    """Drop the email/phone indexes for a bulk load: when the file holds many rows and more
    than twice what the table does, i.e. mostly new people (a first load, not a daily feed,
    whose re-import would otherwise rebuild both indexes for nothing)."""
    if estimate < DEFER_INDEXES_ROWS or estimate <= 2 * store.participant_count():
        return []
    return store.defer_indexes()


def _bigger_cache(connection: Connection, postgres: bool) -> int | None:
    """SQLite: a bigger page cache for this connection while it imports (the email and phone
    indexes take rows in random order); returns the setting to restore."""
    if postgres:
        return None
    previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    return int(previous) if previous is not None else None


def _restore_cache(connection: Connection, previous: int | None) -> None:
    if previous is not None:
        connection.exec_driver_sql(f"PRAGMA cache_size = {previous}")


def _duplicate(first_line: int) -> str:
    return f"duplicate external_id in this file (first at line {first_line})"


_ERASED = (
    "erased participant: their email or phone is under an erasure suppression "
    "(they asked to be forgotten)"
)


def _is_erased(record: ParticipantRecord, erased: frozenset[str]) -> bool:
    email, phone = record.email, record.phone
    if email is not None and email_hash(email) in erased:
        return True
    return phone is not None and hash_normalised(phone) in erased


_ATTRIBUTES = PARTICIPANT_COLUMNS.index("attributes")


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
        record.stored_attributes,
        sample_key(program_key, record.external_id),
        digest,
        at,
        at,
    )

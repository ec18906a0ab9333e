"""All SQL of the participant and event imports, for SQLite and PostgreSQL.

A chunk of participants is written with set-based statements: on PostgreSQL, COPY into TEMP
staging tables and ONE statement that writes the participants and their consents (new
members: INSERT ... SELECT ... ON CONFLICT ... RETURNING; members the import's lookup found:
UPDATE ... FROM ... RETURNING; either feeding the consents' upsert); on SQLite, one
executemany per table of an upsert with VALUES (no staging). A NULL field (a blank cell, a
column the file lacks) keeps the stored value: COALESCE(new, stored), except for the fields
the import clears on purpose; attributes are merged key by key. Events go through a staging
table on both. Values are written in the exact form the SQLAlchemy column types use (UTC;
SQLite's datetime text format), so ORM queries read imported rows like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Index

from engine.db.models import Participant
from engine.participants.validation import CLEARABLE

PARTICIPANT_COLUMNS = (
    "program_id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "locale",
    "status",
    "enrolled_at",
    "last_activity_at",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "renewal_date",
    "tier",
    "account_manager",
    "attributes",
    "sample_key",
    "source_digest",
    "created_at",
    "updated_at",
)
# Fields a blank or absent cell leaves as stored (engine.participants.validation.CLEARABLE,
# in PARTICIPANT_COLUMNS order), and what a new member gets for a NOT NULL one left blank.
KEPT_COLUMNS = tuple(name for name in PARTICIPANT_COLUMNS if name in CLEARABLE)
_DEFAULTS = {"status": "'active'", "points_balance": "0", "points_expiring": "0"}
CONSENT_COLUMNS = ("program_id", "external_id", "channel", "status", "recorded_at", "source")
EVENT_COLUMNS = (
    "program_id",
    "participant_id",
    "type",
    "occurred_at",
    "points",
    "amount",
    "reference",
    "source",
    "created_at",
)

_STAGES = {
    "_import_participants": "SELECT {cols} FROM participants WHERE 1 = 0",
    # Members that existed: blank cells are NULL here (CREATE TABLE AS copies no NOT NULL)
    # and ``attributes`` is the patch (a removed attribute is a JSON null).
    "_import_updates": "SELECT {cols} FROM participants WHERE 1 = 0",
    "_import_consents": (
        "SELECT p.program_id, p.external_id, c.channel, c.status, c.recorded_at, c.source "
        "FROM participant_consents c JOIN participants p ON p.id = c.participant_id WHERE 1 = 0"
    ),
    "_import_events": "SELECT {event_cols} FROM activity_events WHERE 1 = 0",
}


def _update_sets(
    clears: frozenset[str], new: Callable[[str], str], old: Callable[[str], str], attributes: str
) -> str:
    """The SET list of an import's update of a stored member: a field the row leaves blank
    (or does not carry) keeps its stored value, unless it is in ``clears``; the attributes
    are merged (``attributes``: the expression of the merge); last_activity_at only moves
    forward (events may know of newer activity than the file)."""
    sets = []
    for column in KEPT_COLUMNS:
        if column not in clears:
            value = f"COALESCE({new(column)}, {old(column)})"
        elif column in _DEFAULTS:
            value = f"COALESCE({new(column)}, {_DEFAULTS[column]})"
        else:
            value = new(column)
        sets.append(f"{column} = {value}")
    newest, stored = new("last_activity_at"), old("last_activity_at")
    sets.append(
        f"last_activity_at = CASE WHEN {stored} IS NULL OR {newest} > {stored} "
        f"THEN {newest} ELSE {stored} END"
    )
    sets.append(f"attributes = {attributes}")
    sets.extend(f"{c} = {new(c)}" for c in ("source_digest", "updated_at"))
    return ", ".join(sets)


def _inserted(column: str, value: str) -> str:
    """What a new member gets: the default for a NOT NULL field left blank."""
    return f"COALESCE({value}, {_DEFAULTS[column]})" if column in _DEFAULTS else value


# Only a consent that differs from the stored one is written, so recorded_at/source keep
# saying when and where the CURRENT value came from.
_CONSENT_CONFLICT = (
    "ON CONFLICT (participant_id, channel) DO UPDATE SET status = excluded.status, "
    "recorded_at = excluded.recorded_at, source = excluded.source "
    "WHERE participant_consents.status <> excluded.status"
)
_INSERT_CONSENTS = (
    "INSERT INTO participant_consents (participant_id, channel, status, recorded_at, source) "
    "SELECT written.id, s.channel, s.status, s.recorded_at, s.source "
    "FROM _import_consents s JOIN written ON written.external_id = s.external_id "
    f"{_CONSENT_CONFLICT}"
)
# PostgreSQL merge of the stored attributes with a patch: a key of the patch replaces the
# stored one, a JSON null removes it. Skipped when the patch is empty (the usual file).
_PG_MERGE = (
    "CASE WHEN {new} = '{{}}'::jsonb THEN {old} ELSE ({old} || {new}) - ARRAY("
    "SELECT key FROM jsonb_each({new}) WHERE jsonb_typeof(value) = 'null') END"
)
# The same on SQLite (json_patch would merge nested objects, not replace them). json_each
# gives true/false as 1/0 and objects as text: json() gives them back their JSON type.
_SQLITE_MERGE = (
    "CASE WHEN {new} = '{{}}' THEN {old} ELSE (SELECT json_group_object(key, CASE type "
    "WHEN 'true' THEN json('true') WHEN 'false' THEN json('false') "
    "WHEN 'object' THEN json(value) WHEN 'array' THEN json(value) ELSE value END) FROM ("
    "SELECT key, value, type FROM json_each({old}) "
    "WHERE key NOT IN (SELECT key FROM json_each({new})) "
    "UNION ALL SELECT key, value, type FROM json_each({new}) WHERE type <> 'null')) END"
)


@lru_cache(maxsize=64)
def pg_insert_statement(clears: frozenset[str]) -> str:
    """PostgreSQL: the staged NEW members and their consents in ONE statement. The
    participant ids come from the upsert's RETURNING (every staged row: the upsert has no
    WHERE), joined to the staged consents, which costs neither an index probe per consent
    nor statistics on the staging tables (so they are never analyzed: ANALYZE per chunk cost
    more than the join). ON CONFLICT only for a member another import added meanwhile."""
    values = ", ".join(_inserted(c, c) for c in PARTICIPANT_COLUMNS)
    sets = _update_sets(
        clears,
        lambda c: f"excluded.{c}",
        lambda c: f"participants.{c}",
        _PG_MERGE.format(new="excluded.attributes", old="participants.attributes"),
    )
    return (
        f"WITH written AS (INSERT INTO participants ({', '.join(PARTICIPANT_COLUMNS)}) "
        f"SELECT {values} FROM _import_participants "
        f"ON CONFLICT (program_id, external_id) DO UPDATE SET {sets} "
        f"RETURNING id, external_id) {_INSERT_CONSENTS}"
    )


@lru_cache(maxsize=64)
def pg_update_statement(clears: frozenset[str]) -> str:
    """PostgreSQL: the staged members that EXISTED, and their consents, in ONE statement."""
    sets = _update_sets(
        clears,
        lambda c: f"s.{c}",
        lambda c: f"p.{c}",
        _PG_MERGE.format(new="s.attributes", old="p.attributes"),
    )
    return (
        f"WITH written AS (UPDATE participants AS p SET {sets} FROM _import_updates AS s "
        "WHERE p.program_id = s.program_id AND p.external_id = s.external_id "
        f"RETURNING p.id, p.external_id) {_INSERT_CONSENTS}"
    )


# SQLite: the row's values are numbered parameters (?1 = program_id ...; the last one is the
# attributes patch), so the upsert's UPDATE reads the row's own blanks (excluded.* already
# holds the new-member defaults) in one statement for new and existing members alike.
SQLITE_PARTICIPANT_PARAMS = (*PARTICIPANT_COLUMNS, "attributes_patch")
_SQLITE_PARAM = {c: f"?{i}" for i, c in enumerate(SQLITE_PARTICIPANT_PARAMS, start=1)}


@lru_cache(maxsize=64)
def sqlite_upsert_statement(clears: frozenset[str]) -> str:
    values = ", ".join(_inserted(c, _SQLITE_PARAM[c]) for c in PARTICIPANT_COLUMNS)
    sets = _update_sets(
        clears,
        _SQLITE_PARAM.__getitem__,
        lambda c: f"participants.{c}",
        _SQLITE_MERGE.format(new=_SQLITE_PARAM["attributes_patch"], old="participants.attributes"),
    )
    return (
        f"INSERT INTO participants ({', '.join(PARTICIPANT_COLUMNS)}) VALUES ({values}) "
        f"ON CONFLICT (program_id, external_id) DO UPDATE SET {sets}"
    )


_UPSERT_CONSENTS_VALUES = (
    "INSERT INTO participant_consents (participant_id, channel, status, recorded_at, source) "
    "VALUES ((SELECT p.id FROM participants p WHERE p.program_id = ? AND p.external_id = ?), "
    f"?, ?, ?, ?) {_CONSENT_CONFLICT}"
)

_INSERT_EVENTS = (
    f"INSERT INTO activity_events ({', '.join(EVENT_COLUMNS)}) "
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM _import_events WHERE true "
    "ON CONFLICT (program_id, reference) DO NOTHING"
)

# One UPDATE per chunk: last_activity_at only ever moves forward.
_TOUCH_LAST_ACTIVITY = (
    "UPDATE participants SET last_activity_at = s.newest "
    "FROM (SELECT participant_id, max(occurred_at) AS newest FROM _import_events "
    "GROUP BY participant_id) AS s "
    "WHERE participants.id = s.participant_id "
    "AND (participants.last_activity_at IS NULL OR participants.last_activity_at < s.newest)"
)


def _sqlite_datetime(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime type writes (UTC, as UTCDateTime stores it).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@lru_cache(maxsize=4)
def _sqlite_instant(value: datetime) -> str:
    """The import's own time (created_at, recorded_at...): the same value on every row."""
    return _sqlite_datetime(value)


def _sqlite_date(value: date) -> str:
    return value.isoformat()


def _sqlite_decimal(value: Decimal) -> float:
    return float(value)  # what SQLAlchemy's Numeric binds on SQLite


_SQLITE_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "enrolled_at": _sqlite_datetime,
    "last_activity_at": _sqlite_datetime,
    "created_at": _sqlite_instant,
    "updated_at": _sqlite_instant,
    "recorded_at": _sqlite_instant,
    "occurred_at": _sqlite_datetime,
    "points_expire_at": _sqlite_date,
    "renewal_date": _sqlite_date,
    "attributes": json.dumps,
    "attributes_patch": json.dumps,
    "amount": _sqlite_decimal,
}


def _converters(
    columns: Sequence[str], table: dict[str, Callable[[Any], Any]]
) -> list[tuple[int, Callable[[Any], Any]]]:
    # Only the columns whose type needs it: a type check on every value of 20+ columns would
    # cost more than the INSERT itself.
    return [(i, table[c]) for i, c in enumerate(columns) if c in table]


def _convert(
    row: Sequence[Any], converters: list[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(row)
    for index, convert in converters:
        value = values[index]
        if value is not None:
            values[index] = convert(value)
    return tuple(values)


_POSTGRES_CONVERTERS: dict[str, Callable[[Any], Any]] = {"attributes": json.dumps}


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def copy_text(value: str) -> str:
    # One C-level search first: almost no value needs escaping, and translate() costs more.
    return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def _copy_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _copy_json(value: Any) -> str:
    return copy_text(json.dumps(value))


# By exact type: one dict lookup per value instead of a chain of isinstance checks (a third of
# the cost of a validation worker, before). Other types take the general path.
_COPY_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: copy_text,
    int: str,
    bool: str,
    type(None): lambda _value: "\\N",
    datetime: _copy_datetime,
    date: date.isoformat,
    dict: _copy_json,
    list: _copy_json,
    Decimal: str,
}


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return copy_text(value)
    if isinstance(value, dict | list):
        return _copy_json(value)
    if isinstance(value, datetime):
        return _copy_datetime(value)
    return str(value)  # int, date, Decimal


def copy_line(row: Sequence[Any]) -> str:
    """One row in PostgreSQL's COPY text format (tab-separated, \\N for NULL, newline-ended);
    built in the importer's workers so the writing process only joins lines."""
    by_type = _COPY_BY_TYPE
    return "\t".join([by_type.get(type(value), _copy_value)(value) for value in row]) + "\n"


class RowEncoder:
    """Python values -> what the driver is given, for one table's columns on one backend.

    Rows can be encoded ahead (e.g. in the importer's validation workers, for
    ImportStore.upsert_lines), which keeps that work off the process that writes.
    """

    def __init__(self, columns: Sequence[str], *, postgres: bool) -> None:
        table = _POSTGRES_CONVERTERS if postgres else _SQLITE_CONVERTERS
        self.converters = _converters(columns, table)

    def __call__(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return _convert(row, self.converters)


def lookup(
    driver: Any, postgres: bool, program_id: int, keys: Sequence[str], column: str
) -> list[Any]:
    """(external_id, ``column``) of those ``keys`` that are participants of the program, on a
    driver (DBAPI) connection."""
    if not keys:
        return []
    cursor = driver.cursor()
    try:
        if postgres:
            # One index probe per key (LATERAL) rather than `external_id = ANY(...)`: with
            # the statistics of a table that is still filling, PostgreSQL chose to read
            # the whole program and filter it against the array (0.4 s a chunk at 1M rows).
            # prepare=False: no generic plan made while the table was small is reused.
            query = (
                f"SELECT p.external_id, p.{column} FROM unnest(%s::text[]) AS k(id) "
                f"CROSS JOIN LATERAL (SELECT external_id, {column} FROM participants "
                "WHERE program_id = %s AND external_id = k.id) AS p"
            )
            cursor.execute(query, (list(keys), program_id), prepare=False)
        else:
            # One JSON array parameter rather than thousands of `?`: the statement text
            # stays the same for every chunk, so SQLite compiles and caches it once (an IN
            # list of a new length each time fills the statement cache with big programs).
            query = (
                f"SELECT external_id, {column} FROM participants WHERE program_id = ? "
                "AND external_id IN (SELECT value FROM json_each(?))"
            )
            cursor.execute(query, (program_id, json.dumps(list(keys))))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _plain_indexes() -> list[Index]:
    return sorted(
        (ix for ix in Participant.__table__.indexes if not ix.unique),
        key=lambda ix: str(ix.name),
    )


class ImportStore:
    """A connection with the staging tables of an import. Commit per chunk is the caller's."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.postgres = connection.dialect.name == "postgresql"
        self._analyzed_rows: int | None = None  # rows PostgreSQL's statistics know of
        self._written = 0
        # False while the import looks nothing up (a first load): the statistics are then
        # brought up to date once, at close, instead of during the load.
        self.lookups = True
        cols = ", ".join(PARTICIPANT_COLUMNS)
        event_cols = ", ".join(EVENT_COLUMNS)
        for name, query in _STAGES.items():
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            connection.exec_driver_sql(
                f"CREATE TEMP TABLE {name} AS {query.format(cols=cols, event_cols=event_cols)}"
            )
        self._analyze_if_stale(0)

    def _analyze_if_stale(self, written: int) -> None:
        """Keep PostgreSQL's statistics of participants roughly current during a big import.

        Autovacuum may be off, or lag far behind a bulk load; a planner that believes the
        table is still empty hashes all of it for every chunk's lookup (seen: 0.8 s a chunk at
        1M rows). So: ANALYZE when the table was never analyzed, and again each time the rows
        written since the last ANALYZE outnumber those it saw (a handful of times per import).
        """
        if not self.postgres:
            return
        self._written += written
        if self._analyzed_rows is None:
            reltuples = self.connection.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'participants'::regclass"
            ).scalar()
            self._analyzed_rows = -1 if reltuples is None or reltuples < 0 else int(reltuples)
        if not self.lookups:
            return
        if self._analyzed_rows < 0 or self._written > max(10_000, self._analyzed_rows):
            self.connection.exec_driver_sql("ANALYZE participants")
            self._analyzed_rows = max(self._analyzed_rows, 0) + self._written
            self._written = 0

    # ----------------------------------------------------------------- indexes

    def defer_indexes(self) -> list[Index]:
        """Drop the participants' plain indexes (email, phone) for a bulk load; give the list
        to restore_indexes at the end. Rows arrive in random email and phone order, so keeping
        those indexes current costs more than building them afterwards, which is one sort
        (SQLite: more than all the rest of writing a row; PostgreSQL: about a tenth of the
        server's work). PostgreSQL locks the table for the rest of the first chunk's
        transaction: the importer only does this for a first load (see importer)."""
        if self.postgres:
            query = (
                "SELECT indexname FROM pg_indexes "
                "WHERE tablename = 'participants' AND schemaname = current_schema()"
            )
        else:
            query = (
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'participants'"
            )
        present = {row[0] for row in self.connection.exec_driver_sql(query)}
        dropped = [ix for ix in _plain_indexes() if ix.name in present]
        for index in dropped:
            self.connection.exec_driver_sql(f"DROP INDEX {index.name}")
        return dropped

    def restore_indexes(self, indexes: Sequence[Index] | None = None) -> None:
        """Create those of ``indexes`` (default: all the participants' plain indexes) that are
        missing, e.g. after an import that was killed before it could rebuild them."""
        for index in _plain_indexes() if indexes is None else indexes:
            index.create(self.connection, checkfirst=True)

    def participant_count(self) -> int:
        return int(
            self.connection.exec_driver_sql("SELECT count(*) FROM participants").scalar() or 0
        )

    def drop_staging(self) -> None:
        """Drop the staging tables inside the caller's transaction (``close`` also commits)."""
        for name in _STAGES:
            self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        self.drop_staging()
        if self.postgres and not self.lookups and self._written:
            self.connection.exec_driver_sql("ANALYZE participants")
        self.connection.commit()

    def _driver(self) -> Any:
        """The driver (DBAPI) connection, inside the SQLAlchemy connection's transaction.

        Used directly because SQLAlchemy's per-statement parameter handling costs more than
        SQLite's executemany itself. The transaction is begun first: on SQLite the engine
        emits BEGIN only when SQLAlchemy begins one (engine.db.session), and a driver
        statement run after a commit would otherwise commit every row on its own (a WAL
        frame write per row, ten times slower).
        """
        if not self.connection.in_transaction():
            self.connection.begin()
        return self.connection.connection.driver_connection

    # ----------------------------------------------------------------- reads

    def _lookup(self, program_id: int, keys: Sequence[str], column: str) -> list[Any]:
        """(external_id, ``column``) of those ``keys`` that are participants of the program."""
        return lookup(self._driver(), self.postgres, program_id, keys, column)

    def existing_digests(self, program_id: int, external_ids: Sequence[str]) -> dict[str, Any]:
        """{external_id: source_digest} of those ids already in the program."""
        return dict(self._lookup(program_id, external_ids, "source_digest"))

    def participant_ids(self, program_id: int, external_ids: Sequence[str]) -> dict[str, int]:
        return dict(self._lookup(program_id, external_ids, "id"))

    def has_participants(self, program_id: int) -> bool:
        query = "SELECT 1 FROM participants WHERE program_id = %s LIMIT 1"
        if not self.postgres:
            query = query.replace("%s", "?")
        return self.connection.exec_driver_sql(query, (program_id,)).first() is not None

    def erased_hashes(self) -> set[str]:
        rows = self.connection.exec_driver_sql(
            "SELECT address_hash FROM suppressions WHERE reason = 'erasure'"
        )
        return {row[0] for row in rows}

    # ----------------------------------------------------------------- writes

    def _stage(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        encode = RowEncoder(columns, postgres=self.postgres)
        rows = [encode(row) for row in rows]
        cursor = self._driver().cursor()
        try:
            if self.postgres:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                # Temp tables are never auto-analyzed; without statistics the planner may hash
                # the whole participants table to join a few thousand staged rows.
                cursor.execute(f"ANALYZE {table}", prepare=False)
            else:
                marks = ", ".join("?" * len(columns))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
        finally:
            cursor.close()

    def _clear(self, table: str) -> None:
        self.connection.exec_driver_sql(
            f"TRUNCATE {table}" if self.postgres else f"DELETE FROM {table}"
        )

    def upsert_lines(
        self,
        participants: Sequence[Any],
        consents: Sequence[Any],
        *,
        existing: bool = False,
        clears: frozenset[str] = frozenset(),
    ) -> None:
        """Upsert participants and their consents, encoded ahead (e.g. in the importer's
        workers): COPY text lines (``copy_line``) on PostgreSQL, driver tuples (``RowEncoder``
        over SQLITE_PARTICIPANT_PARAMS) on SQLite, in PARTICIPANT_COLUMNS and CONSENT_COLUMNS
        order. Every consent's participant is among ``participants``. A NULL field keeps the
        stored value (a new member gets the default) unless it is in ``clears``.
        PostgreSQL: ``existing`` says the members were found by the import's lookup (they are
        updated: their attributes are a patch); SQLite handles both in one statement."""
        if not participants:
            return
        if not self.postgres:
            # SQLite: straight from executemany, one row at a time inside one statement's
            # prepared plan (no staging table to fill and read back).
            self._executemany(sqlite_upsert_statement(clears), participants)
            if consents:
                self._executemany(_UPSERT_CONSENTS_VALUES, consents)
            return
        stage = "_import_updates" if existing else "_import_participants"
        self._copy(stage, PARTICIPANT_COLUMNS, participants)
        self._copy("_import_consents", CONSENT_COLUMNS, consents)
        statement = pg_update_statement if existing else pg_insert_statement
        self.connection.exec_driver_sql(statement(clears))
        self.connection.exec_driver_sql(f"TRUNCATE {stage}, _import_consents")
        self._analyze_if_stale(len(participants))

    def _executemany(self, statement: str, rows: Sequence[Any]) -> None:
        cursor = self._driver().cursor()
        try:
            cursor.executemany(statement, rows)
        finally:
            cursor.close()

    def _copy(self, table: str, columns: Sequence[str], lines: Sequence[str]) -> None:
        cursor = self._driver().cursor()
        try:
            if lines:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    copy.write("".join(lines))
        finally:
            cursor.close()

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> int:
        """``rows`` in EVENT_COLUMNS order; returns how many were new. Moves each participant's
        last_activity_at forward to their newest event in the chunk."""
        if not rows:
            return 0
        self._stage("_import_events", EVENT_COLUMNS, rows)
        inserted = self.connection.exec_driver_sql(_INSERT_EVENTS).rowcount
        self.connection.exec_driver_sql(_TOUCH_LAST_ACTIVITY)
        self._clear("_import_events")
        return int(inserted)

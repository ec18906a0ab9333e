"""Writing a batch: one transaction moves its enrollments (only those still where they were
read) and inserts their outbox rows (executemany on SQLite, COPY on PostgreSQL) and tallies;
see "Never twice" in the package docstring."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy import Connection, text

from engine.db.queries import int_array
from engine.reports.tallies import largest_outbox_id, tally_counted, tally_inserted
from engine.sequencing.due import DueRow, int_list, sqlite_time
from engine.sequencing.materialise import OUTBOX_COLUMNS, tally_key
from engine.sequencing.rules import Outcome

COLUMN_LIST = ", ".join(OUTBOX_COLUMNS)

# PostgreSQL: a batch moving in more ways than this goes in one UPDATE joined to its arrays
# rather than one UPDATE per way (see BatchWriter.move).
_MOST_GROUPS = 8


# The staging table's columns as outbox_messages takes them (see _insert_staged).
_STAGED_COLUMNS = ", ".join("content::jsonb" if c == "content" else c for c in OUTBOX_COLUMNS)


# PostgreSQL: the per-connection staging table of _insert_staged (content as text: cast once
# on the way into outbox_messages).
_COPY_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS seq_outbox (
    uid varchar(32), run_id bigint, enrollment_id bigint, participant_id bigint,
    campaign varchar(64), step_id varchar(64), step_index integer, variant varchar(64),
    channel varchar(8), template varchar(128), locale varchar(16), to_address varchar(320),
    content text, status varchar(16), status_reason text, not_before timestamptz,
    attempts integer, last_error text, created_at timestamptz, updated_at timestamptz,
    expires_at timestamptz
)
"""


# PostgreSQL: the outbox columns' types in OUTBOX_COLUMNS order, for a binary COPY (each
# value goes in PostgreSQL's own binary form: 2.3 µs a row of the client's, where the text
# form took 6.8). tests/sequencing/test_sequencing_copy.py checks them against the table.
COPY_TYPES = (
    "varchar",  # uid
    "int8",  # run_id
    "int8",  # enrollment_id
    "int8",  # participant_id
    "varchar",  # campaign
    "varchar",  # step_id
    "int4",  # step_index
    "varchar",  # variant
    "varchar",  # channel
    "varchar",  # template
    "varchar",  # locale
    "varchar",  # to_address
    "jsonb",  # content
    "varchar",  # status
    "text",  # status_reason
    "timestamptz",  # not_before
    "int4",  # attempts
    "text",  # last_error
    "timestamptz",  # created_at
    "timestamptz",  # updated_at
    "timestamptz",  # expires_at
)
# The staging table's (content as text).
_STAGED_TYPES = tuple("text" if t == "jsonb" else t for t in COPY_TYPES)


class _JsonTextDumper(Dumper):
    """jsonb in binary COPY from the JSON text the renderer made (psycopg's own jsonb dumper
    would encode the text again, as a JSON string): the format's version byte, then the
    text."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


class BatchWriter:
    """Writes a batch's outbox rows and moves its enrollments, below the ORM (the hot path of a
    large step). One per advance process: it remembers whether its connection has the
    staging table of :meth:`_insert_staged`."""

    def __init__(self, dialect: str, at_text: str | None) -> None:
        self.dialect = dialect
        self.at_text = at_text  # the advance's instant as SQLite stores it
        self._copy_table = False

    def insert_messages(self, conn: Connection, messages: list[list[Any]]) -> None:
        """Insert outbox rows, ON CONFLICT (enrollment_id, step_id) DO NOTHING.

        The hot path of a large step, so below the ORM: SQLite gets one executemany of plain
        tuples (datetimes in the text form SQLAlchemy stores); PostgreSQL gets COPY (see
        below). Content arrives as JSON text and is stored as is (jsonb on PostgreSQL).
        """
        if self.dialect != "postgresql":
            for message in messages:
                message[15] = sqlite_time(message[15])
                message[18] = message[19] = self.at_text
                message[20] = sqlite_time(message[20])
            marks = ", ".join("?" * len(OUTBOX_COLUMNS))
            before = largest_outbox_id(conn)
            inserted = conn.exec_driver_sql(
                f"INSERT INTO outbox_messages ({COLUMN_LIST}) VALUES ({marks}) "
                "ON CONFLICT (enrollment_id, step_id) DO NOTHING",
                [tuple(m) for m in messages],
            ).rowcount
            # No insert trigger on SQLite (migration 0007): the tallies are counted here, from
            # the batch when all of it went in, else from the rows the table took.
            if inserted == len(messages):
                tally_counted(conn, Counter(map(tally_key, messages)))
            else:
                tally_inserted(conn, before)
            return
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor:
            # This cursor's COPY takes content as JSON text (only this cursor's adapters).
            cursor.adapters.register_dumper(None, _JsonTextDumper)
            # COPY straight into the outbox: this batch's enrollments were just moved by this
            # transaction, which holds their rows, so no other advance can have made their
            # messages. Should one exist anyway, the unique key refuses the COPY and the batch
            # goes again through the staging table with ON CONFLICT DO NOTHING (the route
            # every batch took before: about 5 µs more of the server's ~49 per message).
            # The enrollment key's check is the largest cost here beyond the floor's (#20,
            # 2026-12-07, batches of 2,000 on a loaded server: the backend's CPU a row 34 µs
            # with it, 24 without; the tallies' trigger 3). It stays: a statement-level check
            # that locks the rows' enrollments, as the key does, saved only 4 of those 10,
            # and the key would have to go on SQLite too.
            cursor.execute("SAVEPOINT seq_copy")
            try:
                self._copy(cursor, "outbox_messages", COPY_TYPES, messages)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT seq_copy")
                self._insert_staged(cursor, messages)
            cursor.execute("RELEASE SAVEPOINT seq_copy")

    @staticmethod
    def _copy(cursor: Any, table: str, types: Sequence[str], messages: list[list[Any]]) -> None:
        with cursor.copy(f"COPY {table} ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for message in messages:
                copy.write_row(message)

    def _insert_staged(self, cursor: Any, messages: list[list[Any]]) -> None:
        """PostgreSQL: COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO
        NOTHING (COPY itself cannot skip conflicts)."""
        if not self._copy_table:
            cursor.execute(_COPY_TABLE)
            self._copy_table = True
        self._copy(cursor, "seq_outbox", _STAGED_TYPES, messages)
        cursor.execute(
            f"INSERT INTO outbox_messages ({COLUMN_LIST}) "
            f"SELECT {_STAGED_COLUMNS} FROM seq_outbox "
            "ON CONFLICT (enrollment_id, step_id) DO NOTHING"
        )
        cursor.execute("TRUNCATE seq_outbox")

    def move(self, conn: Connection, moves: list[tuple[DueRow, Outcome]]) -> set[int]:
        """Move the batch's enrollments, each only if it is still where we
        read it (same step index, still active); returns the ids actually moved."""
        values = [
            (
                row.id,
                row.next_step_index,
                outcome.next_step_index,
                outcome.next_action_at,
                outcome.state,
                outcome.exit_reason,
            )
            for row, outcome in moves
        ]
        # Never a HOT update on PostgreSQL: next_action_at and state are in the due index (its
        # key and its predicate); and a step moves every member of a page, so even with none
        # of those changing, a fillfactor of 90 made 4,211 of 40,000 updates HOT. Most of its
        # cost is the new version's entries in the other four indexes (#20, 2026-12-07,
        # loaded server: 17 of the backend's 30 µs a row); their leaf pages filled to 50%,
        # not 90, cut 30 to 24 on the first move after a launch, for up to twice the pages
        # to read: not done without measuring launch and the re-entry check.
        # Nor is the due state moved to a narrow table of its own (enrollment id, run id,
        # state, step index, next_action_at; its key and the due and open-by-run partial
        # indexes only), measured before any code (#20, 2026-12-07, bench/probe_due_state.py,
        # 100,000-200,000 enrollments, batches of 2,000, server CPU a row, load 7-11, three
        # runs): the move 4.5-4.8 µs instead of 10.7-11.4, the outbox COPY after it the same
        # (14.6-15.7: the outbox's key finds the enrollment either way): 6.5-7.6 µs a
        # message saved. bench_materialise in the same hour (PostgreSQL, sms, 100,000, load
        # 9.5): materialise 70.0 µs of CPU a message (sequencer 37.4, server 32.6), floor
        # 30.8 (25.5 + 5.3), CPU ratio 0.44 (wall 0.685); minus 7 it would be ~0.49. 0.7x
        # needs 44 µs, 26 less: about all the server does beyond the floor's COPY (27), so no
        # schema change alone reaches it (the sequencer's own CPU is 11.9 above the floor's
        # render and COPY: reading due rows, the rules). For ~7 µs every launch would fill
        # two tables, and every reader of state or next_action_at (18 modules: the due scan,
        # run work, exits, conversions, calls, reports, plan/explain, the CLI and console)
        # would join the new table or keep the two in step, with a migration of every row.
        # Enrollments of one launch move alike (same step, same due time): grouped by outcome,
        # a batch is a handful of UPDATEs, each finding its rows through the primary key
        # (SQLite: an IN-list, a seek per id, where UPDATE ... FROM <batch> scans the table
        # per batch row; PostgreSQL: = ANY of one array, where seven arrays of the batch cost
        # the client 7-16 µs a row to send; the array as its text, engine.db.queries.int_array).
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, old, new, next_at, state, reason in values:
            groups.setdefault((old, new, next_at, state, reason), []).append(i)
        if self.dialect == "postgresql":
            if len(groups) > _MOST_GROUPS:
                return self._move_unnest(conn, values)
            return {
                row[0]
                for (old, new, next_at, state, reason), ids in groups.items()
                for row in conn.exec_driver_sql(
                    "UPDATE enrollments SET next_step_index = %s, next_action_at = %s, "
                    "state = %s, exit_reason = %s WHERE id = ANY(%s::bigint[]) "
                    "AND next_step_index = %s AND state = 'active' RETURNING id",
                    (new, next_at, state, reason, int_array(ids), old),
                )
            }
        # The unary + keeps SQLite off the (state, ...) index, which it would otherwise walk
        # through every active enrollment for each statement (21 µs a message at 1M, not 5).
        moved: set[int] = set()
        for (old, new, next_at, state, reason), ids in groups.items():
            for start in range(0, len(ids), 5000):
                moved.update(
                    row[0]
                    for row in conn.exec_driver_sql(
                        "UPDATE enrollments SET next_step_index = ?, next_action_at = ?, "
                        "state = ?, exit_reason = ? WHERE id IN "
                        f"({int_list(ids[start : start + 5000])}) AND +next_step_index = ? "
                        "AND +state = 'active' RETURNING id",
                        (new, sqlite_time(next_at), state, reason, old),
                    )
                )
        return moved

    @staticmethod
    def _move_unnest(conn: Connection, values: list[tuple[Any, ...]]) -> set[int]:
        """PostgreSQL, a batch whose enrollments move many different ways (due times spread
        by time zones or by their previous messages): one UPDATE joined to the batch's
        arrays. The = ANY on the primary key is what the join alone does not give: without
        it the planner hashes every active enrollment of the table for each batch (a
        sequential scan: 40 µs of the server a row at 100,000 enrollments, growing with the
        table; 31 with it, whatever the size)."""
        statement = text(
            """
            UPDATE enrollments AS e
            SET next_step_index = v.new_index, next_action_at = v.next_at,
                state = v.state, exit_reason = v.reason
            FROM unnest(CAST(:ids AS bigint[]), CAST(:old AS integer[]),
                        CAST(:new AS integer[]), CAST(:next_at AS timestamptz[]),
                        CAST(:states AS text[]), CAST(:reasons AS text[]))
                 AS v(id, old_index, new_index, next_at, state, reason)
            WHERE e.id = v.id AND e.next_step_index = v.old_index AND e.state = 'active'
              AND e.id = ANY(CAST(:ids AS bigint[]))
            RETURNING e.id
            """
        )
        columns = list(zip(*values, strict=True))
        params: dict[str, Any] = dict(
            zip(
                ("ids", "old", "new", "next_at", "states", "reasons"),
                map(list, columns),
                strict=True,
            )
        )
        return set(conn.scalars(statement, params).all())

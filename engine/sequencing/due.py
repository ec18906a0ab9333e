"""The due scan: which enrollments are due, read in (next_action_at, id) keyset batches that
forked workers share (:class:`DueCursor`), with their run's stored definition (:class:`Run`)."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import orjson
from psycopg.types.json import set_json_loads
from sqlalchemy import Connection

from engine.definitions.schema import CampaignDefinition, Step


@dataclass(frozen=True)
class Run:
    """A run's definition (from its stored source, never the current file) and program."""

    id: int
    campaign: str
    definition: CampaignDefinition
    program_name: str
    program_zone: str
    program_region: str
    first_sms: int | None
    salts: Mapping[int, int]  # step index -> variant salt
    sms_opt_out_notice: bool = True

    @property
    def steps(self) -> list[Step]:
        return self.definition.steps


class DueRow(NamedTuple):
    id: int
    run_id: int
    participant_id: int
    enrolled_at: datetime
    next_action_at: datetime
    next_step_index: int
    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    status: str | None
    locale: str | None
    tier: str | None
    points_balance: int | None
    points_expiring: int | None
    points_expire_at: Any
    renewal_date: Any
    attributes: dict[str, Any] | None
    timezone: str | None
    sample_key: int


def due_sql(dialect: str, skip_runs: Sequence[int], size: int) -> str:
    """Due treatment enrollments of active runs with their participants, in (next_action_at,
    id) order, after a keyset position.

    The keyset is what lets forked workers share one scan (see DueCursor): each query starts
    at the row after the last one handed out, on the due index of the active treatment
    enrollments (next_action_at, id) (migrations 0010, 0033), instead of at the front of the
    due range stepping over rows other workers hold and, on PostgreSQL, over the index
    entries of rows already moved that no scan may prune while another worker's transaction
    is open (a query of 2,000 rows cost six times as much with two workers). Nothing a batch
    moves comes back into the range: a moved enrollment's next step is due after ``at``, or
    it has none.
    Plain SQL, read with the driver's own types (see due_row): the ORM's result processing cost
    more than the query. Parameters: ``at`` and the keyset position (next_action_at, id).
    """
    mark = "%s" if dialect == "postgresql" else "?"
    sql = (
        "SELECT e.id, e.run_id, e.participant_id, e.enrolled_at, e.next_action_at, "
        "e.next_step_index, p.external_id, p.first_name, p.last_name, p.email, p.phone, "
        "p.status, p.locale, p.tier, p.points_balance, p.points_expiring, "
        "p.points_expire_at, p.renewal_date, p.attributes, p.timezone, p.sample_key "
        "FROM enrollments AS e "
        "JOIN participants AS p ON p.id = e.participant_id "
        "JOIN campaign_runs AS r ON r.id = e.run_id "
        "WHERE e.state = 'active' AND e.\"group\" = 'treatment' "
        f"AND e.next_action_at <= {mark} AND (e.next_action_at, e.id) > ({mark}, {mark}) "
        "AND r.status = 'active'"
    )
    if skip_runs:
        sql += f" AND e.run_id NOT IN ({int_list(skip_runs)})"
    return sql + f" ORDER BY e.next_action_at, e.id LIMIT {int(size)}"


class DueCursor:
    """The keyset position of an advance's scan of due rows: the (next_action_at, id) of the
    last row handed out, as the text the database returned (SQLite) or an ISO timestamp
    (PostgreSQL). Before an advance forks, :meth:`share` moves it into shared memory behind a
    process lock: the workers then take turns reading (``lock``), so every due row goes to
    exactly one worker and no read steps over another's. (An advance that does not fork, a
    minute's tick, needs no semaphore or shared memory of the system's.)"""

    def __init__(self) -> None:
        self.lock: Any = threading.Lock()
        self._time: Any = None  # shared: a char array
        self._id: Any = None  # shared: an int64
        self._local: tuple[bytes, int] = (b"", 0)

    def share(self) -> None:
        context = multiprocessing.get_context("fork")
        raw, enrollment_id = self._local
        self.lock = context.Lock()
        self._time = context.Array("c", 64, lock=False)
        self._id = context.Value("q", enrollment_id, lock=False)
        self._time.value = raw

    def position(self, sqlite_types: bool) -> tuple[Any, int]:
        """Where to start; call under ``lock``."""
        if self._time is None:
            raw, enrollment_id = self._local
        else:
            raw, enrollment_id = self._time.value, self._id.value
        if not raw:
            return ("", 0) if sqlite_types else (datetime.min.replace(tzinfo=UTC), 0)
        value = raw.decode()
        return (value if sqlite_types else datetime.fromisoformat(value)), enrollment_id

    def move_to(self, next_action_at: Any, enrollment_id: int) -> None:
        """Past this row; call under ``lock``."""
        raw = next_action_at if isinstance(next_action_at, str) else next_action_at.isoformat()
        if self._time is None:
            self._local = (raw.encode(), enrollment_id)
        else:
            self._time.value = raw.encode()
            self._id.value = enrollment_id


def fetch_due(
    conn: Connection, sql: str, params: Sequence[Any]
) -> tuple[list[DueRow], tuple[Any, int] | None]:
    """The rows of :func:`due_sql`, and the keyset position of the last one as the database
    returned it (:meth:`DueCursor.move_to`; SQLite compares the stored text). PostgreSQL:
    psycopg makes each DueRow as it reads the row (a row factory on the driver's cursor: no
    tuple per row made first and copied after, 1.5 of the client's ~9 us a row), from the
    values in binary form (numbers and times need no parsing: 1 us a row less); SQLite:
    converted from the text SQLAlchemy's types store."""
    if conn.dialect.name == "postgresql":
        driver: Any = conn.connection.driver_connection
        with driver.cursor(row_factory=_due_rows) as cursor:
            set_json_loads(_attributes, cursor)
            rows: list[DueRow] = cursor.execute(sql, params, binary=True).fetchall()
        return rows, ((rows[-1].next_action_at, rows[-1].id) if rows else None)
    raw = conn.exec_driver_sql(sql, tuple(params)).fetchall()
    return [due_row(r, True) for r in raw], ((raw[-1][4], raw[-1][0]) if raw else None)


def _due_rows(_cursor: Any) -> Any:
    return DueRow._make


def _attributes(data: str | bytes) -> Any:
    """A member's attributes (jsonb) by orjson: json.loads cost 3 of the client's ~6 us a
    due row, even for ``{}``. What orjson refuses (an integer beyond 64 bits, which jsonb
    keeps) goes to json.loads, so the values are the same."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def due_row(raw: Sequence[Any], sqlite_types: bool) -> DueRow:
    """A due row as Python values. psycopg returns them typed; SQLite returns the text that
    SQLAlchemy's types store (naive UTC datetimes, ISO dates, JSON)."""
    if not sqlite_types:
        return DueRow(*raw)
    values = list(raw)
    for i in (3, 4):
        values[i] = from_sqlite_time(values[i])
    for i in (16, 17):
        if values[i] is not None:
            values[i] = date.fromisoformat(values[i])
    if values[18] is not None:
        values[18] = json.loads(values[18])
    return DueRow(*values)


def from_sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def int_list(values: Iterable[int]) -> str:
    """A literal SQL list of integers (refuses anything else)."""
    return ", ".join(str(int(v)) for v in values)


def sqlite_time(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores it in SQLite (naive UTC text), for raw inserts."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

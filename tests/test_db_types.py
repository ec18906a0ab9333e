"""engine/db/types.py: what UTCDateTime writes on SQLite is the text SQLAlchemy's own chain
(process_bind_param, then SQLite's DATETIME) writes, and it reads back the instant written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import TypeDecorator

from engine.db.types import UTCDateTime

DIALECT = sqlite.dialect()
FAST = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
SQLITE_TYPE = cast(UTCDateTime, UTCDateTime().dialect_impl(DIALECT))
CHAINED: Any = TypeDecorator.bind_processor(SQLITE_TYPE, DIALECT)  # SQLAlchemy's own chain
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))]
)


def outcome(process: object, value: object) -> tuple[str, object]:
    try:
        return ("text", process(value))  # type: ignore[operator]
    except Exception as exc:  # the same refusal either way
        return ("refused", type(exc))


@given(st.datetimes(timezones=zones) | st.datetimes() | st.none())
def test_the_text_written_on_sqlite_is_the_chains(value: datetime | None) -> None:
    assert FAST is not None and CHAINED is not None
    assert outcome(FAST, value) == outcome(CHAINED, value)


def test_naive_is_refused() -> None:
    assert FAST is not None
    with pytest.raises(ValueError, match="naive datetime"):
        FAST(datetime(2026, 3, 2, 12, 0))


def test_an_instant_reads_back_in_utc() -> None:
    engine = create_engine("sqlite://")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime())
    )
    table.metadata.create_all(engine)
    written = datetime(2026, 3, 2, 7, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    with engine.begin() as connection:
        connection.execute(insert(table), [{"at": written}, {"at": written.replace(microsecond=7)}])
        rows = connection.execute(select(table.c.at).order_by(table.c.id)).scalars().all()
        stored = connection.exec_driver_sql("SELECT at FROM t ORDER BY id").scalars().all()
    assert rows == [written, written.replace(microsecond=7)]
    assert all(r.tzinfo == UTC for r in rows)
    assert stored == ["2026-03-02 12:00:00.000000", "2026-03-02 12:00:00.000007"]

"""Many rows into one table at once, below Core's per-row work: COPY on PostgreSQL (psycopg's
``cursor.copy``), the driver's executemany on SQLite.

``insert(table)`` with many parameter sets costs SQLAlchemy a parameter dictionary per row
and PostgreSQL a statement per row (psycopg pipelines them, the server still runs each). The
values here go through the columns' own bind processors (UTCDateTime, JSONDict, ...) and the
columns' scalar defaults fill what a row leaves out, so the rows stored are those
``connection.execute(insert(table), rows)`` would store. For append-only tables whose rows
nobody else inserts under the same keys (the caller holds the lock that says so): a conflict
is an error, as it would be with insert().
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Column, Connection, Table
from sqlalchemy.exc import IntegrityError


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dictionaries with the same keys, column names) into ``table``."""
    if not rows:
        return
    dialect = connection.dialect
    names = list(rows[0])
    for row in rows:
        if len(row) != len(names):  # every row names the same columns (checked cheaply)
            raise ValueError(f"rows for {table.name} do not all name the same columns")
    columns: list[Column[Any]] = [table.c[name] for name in names]
    left_out = [c for c in table.columns if c.name not in names and c.default is not None]
    defaults = [c for c in left_out if c.default.is_scalar]  # type: ignore[union-attr]
    if len(defaults) != len(left_out):  # a Python function's default: insert() would call it
        raise ValueError(f"rows for {table.name} leave out a column with a computed default")
    constants = tuple(column.default.arg for column in defaults)  # type: ignore[union-attr]
    processors = [
        column.type.dialect_impl(dialect).bind_processor(dialect)
        for column in (*columns, *defaults)
    ]
    constants = tuple(
        process(value) if process is not None else value
        for process, value in zip(processors[len(names) :], constants, strict=True)
    )
    values = _tuples(rows, names, processors[: len(names)], constants)
    quote = dialect.identifier_preparer.quote
    column_list = ", ".join(quote(column.name) for column in (*columns, *defaults))
    target = dialect.identifier_preparer.format_table(table)
    if dialect.name == "postgresql":
        driver: Any = connection.connection.driver_connection
        statement = f"COPY {target} ({column_list}) FROM STDIN"
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for value in values:
                    copy.write_row(value)
        except psycopg.errors.IntegrityError as exc:  # as insert() would raise it
            raise IntegrityError(statement, None, exc) from exc
        return
    marks = ", ".join("?" * (len(names) + len(defaults)))
    connection.exec_driver_sql(f"INSERT INTO {target} ({column_list}) VALUES ({marks})", values)


def update_rows(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str = "id"
) -> None:
    """Set the columns each of ``rows`` names (the same in every row) on the row of ``table``
    whose ``key`` it gives: one UPDATE ... FROM unnest(arrays) on PostgreSQL (one statement
    for all rows instead of one per row), the driver's executemany on SQLite. A key given
    twice: the last row wins, as with executemany."""
    if not rows:
        return
    dialect = connection.dialect
    names = [name for name in rows[0] if name != key]
    if len(rows[0]) != len(names) + 1 or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(f"rows for {table.name} must all name {key} and the same columns")
    columns = [table.c[key], *(table.c[name] for name in names)]
    processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    quote = dialect.identifier_preparer.quote
    target = dialect.identifier_preparer.format_table(table)
    if dialect.name == "postgresql":
        last = {row[key]: row for row in rows}  # one row per key: UPDATE FROM takes any one
        arrays = [
            [process(row[column.name]) if process else row[column.name] for row in last.values()]
            for column, process in zip(columns, processors, strict=True)
        ]
        given = ", ".join(
            f"%s::{column.type.dialect_impl(dialect).compile(dialect)}[]" for column in columns
        )
        aliases = ", ".join(f"c{n}" for n in range(len(columns)))
        sets = ", ".join(f"{quote(name)} = v.c{n + 1}" for n, name in enumerate(names))
        connection.exec_driver_sql(
            f"UPDATE {target} SET {sets} FROM unnest({given}) AS v({aliases}) "
            f"WHERE {target}.{quote(key)} = v.c0",
            tuple(arrays),
        )
        return
    sets = ", ".join(f"{quote(name)} = ?" for name in names)
    values = _tuples(rows, [*names, key], [*processors[1:], processors[0]])
    connection.exec_driver_sql(f"UPDATE {target} SET {sets} WHERE {quote(key)} = ?", values)


def _tuples(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    processors: Sequence[Any],
    constants: tuple[Any, ...] = (),
) -> list[tuple[Any, ...]]:
    """Each row's values of ``names``, each through its column's processor (None: as is),
    then ``constants``: built a column at a time (a processor mapped over its column), which
    costs about half of building them a row at a time."""
    columns: list[Any] = []
    for name, process in zip(names, processors, strict=True):
        column = [row[name] for row in rows]
        columns.append(list(map(process, column)) if process is not None else column)
    columns.extend([constant] * len(rows) for constant in constants)
    if not columns:
        return [()] * len(rows)
    return list(zip(*columns, strict=True))

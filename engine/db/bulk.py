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

from sqlalchemy import Column, Connection, Table


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
    own = [(name, process) for name, process in zip(names, processors, strict=False) if process]
    values: list[tuple[Any, ...]] = []
    for row in rows:
        if own:
            row = dict(row)
            for name, process in own:
                row[name] = process(row[name])
        values.append((*(row[name] for name in names), *constants))
    quote = dialect.identifier_preparer.quote
    column_list = ", ".join(quote(column.name) for column in (*columns, *defaults))
    target = dialect.identifier_preparer.format_table(table)
    if dialect.name == "postgresql":
        driver: Any = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy,
        ):
            for value in values:
                copy.write_row(value)
        return
    marks = ", ".join("?" * (len(names) + len(defaults)))
    connection.exec_driver_sql(f"INSERT INTO {target} ({column_list}) VALUES ({marks})", values)

"""Another process's SQLite writer, for the tests of the work that writes
(tests/test_cli_writing.py, tests/web/test_console_writing.py): it commits at the moment a
deferred transaction cannot survive, between its first read and its first write; or it holds
the write lock throughout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

# How long the command, between its read and its write, gives the other writer to commit.
# The other writer needs a few milliseconds; a command that holds the write lock makes it
# wait past this (it commits after the command).
OTHER_WRITER_WINDOW = 1.0


class OtherWriter:
    """Another process's writer (a dispatcher, a webhook): its own connection, BEGIN
    IMMEDIATE, one committed write. Started at the command's first read, in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.committed = threading.Event()
        self.errors: list[BaseException] = []
        self.got_in = False
        self.thread = threading.Thread(target=self._commit, daemon=True)

    def _commit(self) -> None:
        try:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")  # waits for the write lock
                connection.execute(
                    "INSERT INTO engine_settings (key, value) VALUES ('other-writer', 'was here')"
                )
                connection.execute("COMMIT")
            finally:
                connection.close()
            self.committed.set()
        except BaseException as exc:  # reported by the test, which asserts there is none
            self.errors.append(exc)

    def commit_now(self) -> None:
        """Start the other writer; give it the window to commit (``got_in``: it did, so the
        work under test did not hold the write lock then)."""
        self.thread.start()
        self.got_in = self.committed.wait(OTHER_WRITER_WINDOW)

    def left_its_mark(self) -> bool:
        connection = sqlite3.connect(self.path)
        try:
            row = connection.execute(
                "SELECT value FROM engine_settings WHERE key = 'other-writer'"
            ).fetchone()
        finally:
            connection.close()
        return row == ("was here",)


@contextmanager
def commit_between_read_and_write(path: Path, reads: str = "") -> Iterator[OtherWriter]:
    """At the first read of the work under test through SQLAlchemy (a SELECT, naming the
    table ``reads`` when given; never the schema check), another writer commits, or, when that
    work holds the write lock already, starts waiting for it. The other writer's own
    statements go through sqlite3, not SQLAlchemy, so they never trigger this."""
    other = OtherWriter(path)

    def first_read(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if other.thread.ident is not None:  # once
            return
        text = statement.lstrip().upper()
        if not text.startswith("SELECT") or "ALEMBIC_VERSION" in text:
            return
        if reads.upper() not in text:
            return
        other.commit_now()

    event.listen(Engine, "after_cursor_execute", first_read)
    try:
        yield other
    finally:
        event.remove(Engine, "after_cursor_execute", first_read)
        if other.thread.ident is not None:
            other.thread.join(timeout=60)


@contextmanager
def write_lock_held_elsewhere(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock (an uncommitted write) throughout."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO engine_settings (key, value) VALUES ('holder', 'busy')")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()

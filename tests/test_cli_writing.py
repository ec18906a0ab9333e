"""A command that writes is SQLite's writer from its first statement; a command that reads
never is.

SQLite fails a deferred transaction's write at once ("database is locked") when another
process committed between that transaction's first read and its first write: its snapshot is
stale and busy_timeout does not help. A running dispatcher, tick or webhook commits all the
time, so every writing command must take the write lock before it reads; a read-only command
must not, or it would wait for (and hold up) the dispatcher. SQLite only: on PostgreSQL a
stale read is not an error (row locks and advisory locks do the work there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlite_writers import OtherWriter, commit_between_read_and_write, write_lock_held_elsewhere

from cli import cli


@pytest.fixture
def db_path(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "campaign.db"
    shutil.copyfile(sqlite_template, path)
    return path


def run(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", f"sqlite:///{path}", *args])
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output + (f"\n{crash!r}" if crash else "")


def ok(path: Path, *args: str) -> str:
    code, output = run(path, *args)
    assert code == 0, output
    return output


# Commands that read (their row, a uniqueness check) before they write, with what they need.
WRITERS = {
    "programs set": (
        [["programs", "add", "gold", "--name", "Gold"]],
        ["programs", "set", "gold", "--no-sms-opt-out-notice"],
    ),
    "agents set": (
        [["agents", "add", "ana", "--name", "Ana"]],
        ["agents", "set", "ana", "--daily-target", "40"],
    ),
    "users disable": (
        [["users", "add", "sam", "--role", "supervisor"]],
        ["users", "disable", "sam"],
    ),
    "suppress add": (
        [],
        ["suppress", "add", "ana@example.com", "--channel", "email", "--reason", "opt_out"],
    ),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_writing_command_waits_for_a_commit_between_its_read_and_its_write(
    db_path: Path, name: str
) -> None:
    setup, command = WRITERS[name]
    for args in setup:
        ok(db_path, *args)

    with commit_between_read_and_write(db_path) as other:
        code, output = run(db_path, *command)

    # Not "the database is busy": the command waited for nobody, it was the writer already.
    assert code == 0, output
    assert not other.errors
    # The other writer waited for the command's commit, then wrote: nothing was lost.
    assert other.thread.ident is not None and not other.got_in
    assert other.committed.is_set() and other.left_its_mark()


def test_a_participants_import_waits_for_a_commit_between_its_lookup_and_its_write(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daily file while the dispatcher runs: a chunk looks its members up (a read through
    the driver, engine/participants/store.py lookup), then writes them; the import's
    transactions begin as the writer."""
    from engine.participants import store

    ok(db_path, "programs", "add", "gold", "--name", "Gold")
    first = tmp_path / "day1.csv"
    first.write_text("external_id,first_name\nM1,Ana\nM2,Bo\n")
    ok(db_path, "participants", "import", str(first), "--program", "gold")
    second = tmp_path / "day2.csv"
    second.write_text("external_id,first_name\nM1,Anna\nM3,Cy\n")

    other = OtherWriter(db_path)
    real_lookup = store.lookup

    def lookup_then_another_commit(*args: Any, **kwargs: Any) -> Any:
        found = real_lookup(*args, **kwargs)
        if other.thread.ident is None:
            other.commit_now()
        return found

    monkeypatch.setattr(store, "lookup", lookup_then_another_commit)
    code, output = run(db_path, "participants", "import", str(second), "--program", "gold")
    other.thread.join(timeout=60)

    assert code == 0, output
    assert not other.errors and other.thread.ident is not None  # the lookup was met
    assert not other.got_in  # it waited for the import's commit
    assert other.committed.is_set() and other.left_its_mark()
    listed = ok(db_path, "participants", "list", "--program", "gold", "--json")
    assert [(p["external_id"], p["first_name"]) for p in json.loads(listed)] == [
        ("M1", "Anna"),
        ("M2", "Bo"),
        ("M3", "Cy"),
    ]


def test_the_other_writer_does_commit_between_a_read_and_a_write(db_path: Path) -> None:
    """The harness itself: a command that only reads lets the other writer commit in the
    window (so the test above would see a commit mid-command were the command deferred)."""
    ok(db_path, "programs", "add", "gold", "--name", "Gold")
    with commit_between_read_and_write(db_path) as other:
        code, output = run(db_path, "programs", "show", "gold")
    assert code == 0, output
    assert other.got_in and other.left_its_mark()


READERS = [
    ["programs", "list"],
    ["programs", "show", "gold"],
    ["agents", "list"],
    ["users", "list"],
    ["suppress", "list"],
    ["outbox", "list"],
    ["runs", "list"],
    ["calls", "list"],
    ["report", "agents"],
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_never_waits_for_the_writer(db_path: Path, command: list[str]) -> None:
    """With the write lock held elsewhere the whole time, a command that only reads answers
    (a command that took the write lock would wait for it, then fail as busy)."""
    ok(db_path, "programs", "add", "gold", "--name", "Gold")
    with write_lock_held_elsewhere(db_path):
        code, output = run(db_path, *command)
    assert code == 0, output


@pytest.mark.parametrize("wrapped", [False, True], ids=["driver", "sqlalchemy"])
def test_a_lock_held_past_the_wait_is_one_line_whichever_layer_raised_it(
    tmp_path: Path, wrapped: bool
) -> None:
    """The imports work on the raw sqlite3 connection, so a lock held past busy_timeout can
    come up as the driver's own error as well as SQLAlchemy's wrapper: one line either way."""
    import sqlite3

    import click
    from sqlalchemy import create_engine, text

    from engine.cli.common import EngineGroup

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    @click.group(cls=EngineGroup)
    def group() -> None:
        pass

    @group.command()
    def write() -> None:
        if wrapped:
            engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
            with engine.connect() as connection:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.execute(text("SELECT 1"))
        else:
            sqlite3.connect(path, timeout=0, isolation_level=None).execute("BEGIN IMMEDIATE")

    try:
        result = CliRunner().invoke(group, ["write"])
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        "Error: the database is busy (another process is writing to it); try again"
    ), result.output

"""The caller log: hash chain, verify, tamper detection, the PostgreSQL trigger, no forks."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine.app import App
from engine.calls import caller_log
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.tasks import claim_next
from engine.db.models import CallerLogEntry
from engine.errors import InputError

D = DispositionSet.standard()


def fill(app: App, n: int) -> None:
    w = make_world(app)
    w.agent("ana")
    for i in range(n):
        w.task(w.member(points_balance=i))
    at = TEST_NOW
    for _ in range(n):
        with unit(app) as s:
            claim = claim_next(s, "ana", at=at)
        assert claim is not None
        task = claim.task_id
        at += timedelta(minutes=3)
        with unit(app) as s:
            log_call(
                s,
                CallInput(
                    task,
                    "ana",
                    "NOT_INTERESTED",
                    {"reason": f"reason {task}"},
                    True,
                    "calm and polite",
                ),
                D,
                at=at,
            )


def verify(app: App) -> caller_log.VerifyResult:
    with app.sessions() as s:
        return caller_log.verify(s)


def test_chain_verifies_and_links(app: App) -> None:
    fill(app, 4)
    result = verify(app)
    assert result.ok and result.entries == 4
    with app.sessions() as s:
        rows = s.scalars(select(CallerLogEntry).order_by(CallerLogEntry.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == caller_log.GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert result.head_hash == rows[-1].hash


TAMPERS = [
    ("notes", "'edited afterwards'"),
    ("disposition", "'CONVERTED'"),
    ("agent", "'mallory'"),
    ("handle_seconds", "handle_seconds + 1"),
    ("logged_at", "logged_at"),  # rewritten below per dialect
    ("verified", "NOT verified"),
    ("number_dialled", "'+15555550100'"),
    ("fields", None),
]


# On SQLite nothing stops a direct edit, so the chain must catch it; on PostgreSQL the trigger
# refuses the edit itself (test_postgres_trigger_refuses_update_delete_truncate).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
@pytest.mark.parametrize(("column", "expression"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_with_any_column_is_detected(
    app: App, database_url: str, column: str, expression: str | None
) -> None:
    fill(app, 5)
    if column == "logged_at":
        expression = "datetime(logged_at, '+1 second')"
    if column == "fields":
        expression = "json_set(fields, '$.reason', 'changed')"
    with app.engine.begin() as conn:
        conn.execute(text(f"UPDATE caller_log SET {column} = {expression} WHERE seq = 3"))
    result = verify(app)
    assert not result.ok
    assert result.first_broken_seq == 3
    assert "edited" in (result.problem or "")


@SQLITE_ONLY
def test_deleting_or_reordering_entries_is_detected(app: App, database_url: str) -> None:
    fill(app, 5)
    with app.engine.begin() as conn:
        conn.execute(text("DELETE FROM caller_log WHERE seq = 2"))
    result = verify(app)
    assert (result.ok, result.first_broken_seq) == (False, 3)
    assert "missing" in (result.problem or "")


@SQLITE_ONLY
def test_rewriting_an_entry_and_its_mac_without_the_key_is_caught_at_that_entry(
    app: App, database_url: str
) -> None:
    fill(app, 4)
    with app.sessions() as s:
        row = s.scalar(select(CallerLogEntry).where(CallerLogEntry.seq == 2))
        assert row is not None
        values = {name: getattr(row, name) for name in caller_log.CHAINED_COLUMNS}
    # The best a database writer can do without the key: a MAC under a key of their own.
    forged = caller_log.entry_hash(b"guessed-key", values["prev_hash"], values)
    with app.engine.begin() as conn:
        conn.execute(
            text("UPDATE caller_log SET notes = 'forged', hash = :h WHERE seq = 2"), {"h": forged}
        )
    result = verify(app)
    assert (result.ok, result.first_broken_seq) == (False, 2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE caller_log SET notes = 'x'", "DELETE FROM caller_log", "TRUNCATE caller_log"],
)
def test_postgres_trigger_refuses_update_delete_truncate(
    app: App, database_url: str, statement: str
) -> None:
    fill(app, 2)
    with pytest.raises(DBAPIError, match="append-only"), app.engine.begin() as conn:
        conn.execute(text(statement))
    assert verify(app).entries == 2


def test_concurrent_agents_never_fork_the_chain(app: App) -> None:
    w = make_world(app)
    agents = [w.agent(f"a{i}") for i in range(4)]
    per_agent = 5
    tasks = {a: [w.task(w.member()) for _ in range(per_agent)] for a in agents}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(agents))

    def work(agent: str) -> None:
        try:
            barrier.wait()
            for i, task in enumerate(tasks[agent]):
                with unit(app) as s:
                    log_call(
                        s,
                        CallInput(task, agent, "NO_ANSWER", {}),
                        D,
                        at=TEST_NOW + timedelta(seconds=i),
                        source="dialer",
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    result = verify(app)
    assert result.ok and result.entries == len(agents) * per_agent


def test_two_logs_of_one_task_at_once_never_both_pass(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def work(reason: str) -> None:
        barrier.wait()
        try:
            with unit(app) as s:
                log_call(
                    s, CallInput(task, "ana", "NOT_INTERESTED", {"reason": reason}, True), D,
                    at=TEST_NOW,
                )  # fmt: skip
            outcomes.append("logged")
        except InputError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=work, args=(r,)) for r in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[0] == "logged"
    assert len(outcomes) == 2 and f"task {task} is closed" in sorted(outcomes)[1]
    assert verify(app).entries == 1

"""`calls import-results` loads, checks and writes a chunk of rows at once: the chunk
boundaries change nothing a user can see (rejects, idempotence, the caller log's chain), and
the caller log's lock serialises an import's chunks with agents logging at the same time."""

from __future__ import annotations

import csv
import io
import itertools
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from calls_helpers import TEST_NOW, campaign_source, make_run, make_world, task_row
from sqlalchemy import func, select, text

from engine.app import App
from engine.calls import caller_log, dialer
from engine.calls.dialer import ImportSummary, import_results
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.cases import bulk
from engine.db.models import (
    CallerLogCheckpoint,
    CallerLogEntry,
    CallTask,
    Case,
    CaseEvent,
    MessageEvent,
)
from engine.errors import InputError
from engine.testing.fakes import unit

HEADER = "call_id,task_id,agent,disposition,verified,field.reason"


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(app: App, path: Path, **kw: object) -> ImportSummary:
    summary = import_results(app, path, at=TEST_NOW, **kw)  # type: ignore[arg-type]
    assert summary.read == summary.applied + summary.unchanged + summary.rejected
    return summary


def rejected(summary: ImportSummary) -> list[tuple[str, str]]:
    assert summary.rejects_path is not None
    rows = csv.DictReader(io.StringIO(summary.rejects_path.read_text(encoding="utf-8")))
    return [(r["line"], r["reasons"]) for r in rows]


def entries(app: App) -> list[CallerLogEntry]:
    with app.sessions() as s:
        return list(s.scalars(select(CallerLogEntry).order_by(CallerLogEntry.seq)))


def test_bad_rows_at_a_chunk_boundary_are_rejected_with_their_line(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    tasks = [w.task(w.member()) for _ in range(7)]
    lines = [HEADER, *(f"c-{t},{t},ana,NO_ANSWER,," for t in tasks)]
    lines[3] = f"c-x,{tasks[2]},ana,NOT_INTERESTED,yes,"  # last row of chunk 1: no reason
    lines[4] = f"c-y,{tasks[3]},nobody,NO_ANSWER,,"  # first row of chunk 2: unknown agent
    lines[6] = "c-z,99999,ana,NO_ANSWER,,"  # last row of chunk 2: no such task
    results = write(tmp_path / "results.csv", *lines)

    summary = load(app, results, chunk_size=3)
    assert (summary.read, summary.applied, summary.rejected) == (7, 4, 3)
    reasons = rejected(summary)
    assert [line for line, _ in reasons] == ["4", "5", "7"]
    assert reasons[0][1].startswith("NOT_INTERESTED requires field reason")  # as `calls log`
    assert reasons[1][1] == "no agent 'nobody'; add one with `campaign agents add`"
    assert reasons[2][1] == "no call task 99999"
    assert [e.task_id for e in entries(app)] == [tasks[0], tasks[1], tasks[4], tasks[6]]
    assert task_row(app, tasks[2]).attempts == 0 and task_row(app, tasks[3]).attempts == 0

    # The rejects file, fixed, imports: the lines it names are the file's.
    fixed = write(
        tmp_path / "fixed.csv",
        HEADER,
        f"c-x,{tasks[2]},ana,NOT_INTERESTED,yes,too expensive",
        f"c-y,{tasks[3]},ana,NO_ANSWER,,",
    )
    again = load(app, fixed, chunk_size=1)
    assert (again.applied, again.rejected) == (2, 0)
    with app.sessions() as s:
        assert caller_log.verify(s).ok


def test_importing_again_with_other_chunk_boundaries_applies_nothing_twice(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    tasks = [w.task(w.member()) for _ in range(9)]
    rows = [f"c-{t},{t},ana,NO_ANSWER,," for t in tasks]
    # The dialer repeated calls: in the same chunk (c-1 twice) and across chunks (c-5 again).
    rows.insert(2, rows[1])
    rows.append(rows[5])
    results = write(tmp_path / "results.csv", HEADER, *rows)

    first = load(app, results, chunk_size=4)
    assert (first.applied, first.unchanged, first.rejected) == (9, 2, 0)
    for size in (1, 3, 1000):
        again = load(app, results, chunk_size=size)
        assert (again.applied, again.unchanged, again.rejected) == (0, 11, 0)
    assert len(entries(app)) == 9
    assert all(task_row(app, t).attempts == 1 for t in tasks)
    with app.sessions() as s:
        keys = s.scalar(
            select(func.count()).select_from(MessageEvent).where(MessageEvent.provider == "dialer")
        )
        assert keys == 9


def test_the_chain_verifies_after_a_batched_import(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    before = w.task(w.member())
    tasks = [w.task(w.member()) for _ in range(25)]
    with unit(app) as s:  # an entry from `calls log` first: the import chains on from it
        log_call(s, CallInput(before, "ana", "BUSY", {}), DispositionSet.standard(), at=TEST_NOW)
    mix = ("NO_ANSWER,,", "VOICEMAIL,,", "NOT_INTERESTED,yes,too expensive", "BUSY,,")
    results = write(
        tmp_path / "results.csv",
        HEADER,
        *(f"c-{t},{t},ana,{mix[i % len(mix)]}" for i, t in enumerate(tasks)),
    )
    summary = load(app, results, chunk_size=10)
    assert summary.applied == len(tasks)

    log = entries(app)
    assert [e.seq for e in log] == list(range(1, len(tasks) + 2))
    assert all(e.prev_hash == p.hash for p, e in itertools.pairwise(log))
    assert [e.task_id for e in log[1:]] == tasks  # in the file's order
    with app.sessions() as s:
        result = caller_log.verify(s)
        assert result.ok and result.entries == len(tasks) + 1
        assert result.checkpoints == len(tasks) + 1  # one signed checkpoint per entry, as ever
        newest = s.scalar(select(func.max(CallerLogCheckpoint.seq)))
        assert newest == len(tasks) + 1


def test_a_do_not_call_closes_the_members_other_task_for_the_rest_of_the_chunk(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    member = w.member()
    first = w.task(member)
    second = w.task(member, run_id=make_run(app, w.program_id, campaign_source("other-calls")))
    results = write(
        tmp_path / "results.csv",
        HEADER,
        f"c-1,{first},ana,DO_NOT_CALL,yes,",
        f"c-2,{second},ana,NO_ANSWER,,",
        f"c-3,{first},ana,NO_ANSWER,,",
    )
    summary = load(app, results, chunk_size=1000)
    assert (summary.applied, summary.rejected) == (1, 2)
    reasons = dict(rejected(summary))
    assert reasons["3"].startswith(f"task {second} is closed")
    assert reasons["4"] == f"task {first} is closed (DO_NOT_CALL)"
    assert task_row(app, second).status == "closed"


def test_a_do_not_call_after_another_call_of_the_member_still_closes_that_task(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    member = w.member()
    first = w.task(member)
    second = w.task(member, run_id=make_run(app, w.program_id, campaign_source("other-calls")))
    results = write(
        tmp_path / "results.csv",
        HEADER,
        f"c-1,{second},ana,NO_ANSWER,,",  # recycled: open again, one attempt
        f"c-2,{first},ana,DO_NOT_CALL,yes,",  # closes the member's other open tasks
    )
    summary = load(app, results, chunk_size=1000)
    assert (summary.applied, summary.rejected) == (2, 0)
    row = task_row(app, second)
    assert (row.status, row.attempts) == ("closed", 1)
    assert row.close_reason == f"DO_NOT_CALL logged on task {first}"


def test_an_error_found_only_while_writing_rejects_its_row_alone(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(app)
    w.agent("ana")
    tasks = [w.task(w.member()) for _ in range(4)]
    real = dialer.log_call

    def failing(session, call, *args, **kw):  # type: ignore[no-untyped-def]
        if call.task_id == tasks[2]:
            raise InputError("the suppression list refused the number")
        return real(session, call, *args, **kw)

    monkeypatch.setattr(dialer, "log_call", failing)
    results = write(
        tmp_path / "results.csv", HEADER, *(f"c-{t},{t},ana,NO_ANSWER,," for t in tasks)
    )
    summary = load(app, results)
    assert (summary.applied, summary.rejected) == (3, 1)
    assert rejected(summary) == [("4", "the suppression list refused the number")]
    assert [e.task_id for e in entries(app)] == [tasks[0], tasks[1], tasks[3]]
    with app.sessions() as s:
        assert caller_log.verify(s).ok


def test_agents_logging_during_an_import_keep_the_chain_valid(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    w.agent("ben")
    imported = [w.task(w.member()) for _ in range(40)]
    by_hand = [w.task(w.member()) for _ in range(8)]
    results = write(
        tmp_path / "results.csv", HEADER, *(f"c-{t},{t},ana,NO_ANSWER,," for t in imported)
    )
    errors: list[BaseException] = []
    summaries: list[ImportSummary] = []
    barrier = threading.Barrier(2)

    def run_import() -> None:
        try:
            barrier.wait()
            summaries.append(load(app, results, chunk_size=5))
        except BaseException as exc:
            errors.append(exc)

    def agent_logs() -> None:
        try:
            barrier.wait()
            for i, task in enumerate(by_hand):
                with unit(app) as s:
                    log_call(
                        s,
                        CallInput(task, "ben", "BUSY", {}),
                        DispositionSet.standard(),
                        at=TEST_NOW + timedelta(seconds=i),
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run_import), threading.Thread(target=agent_logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert summaries[0].applied == len(imported)
    log = entries(app)
    assert sorted(e.task_id for e in log) == sorted(imported + by_hand)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    # Each chunk's entries are contiguous: nobody appended in the middle of a chunk.
    positions = {e.task_id: i for i, e in enumerate(log)}
    for start in range(0, len(imported), 5):
        where = sorted(positions[t] for t in imported[start : start + 5])
        assert where == list(range(where[0], where[0] + 5))
    with app.sessions() as s:
        assert caller_log.verify(s).ok


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_import_waits_for_the_caller_log_lock_held_by_an_agent(app: App, tmp_path: Path) -> None:
    """The lock that serialises appends (PostgreSQL: a transaction-level advisory lock; on
    SQLite the database write lock does it, see the test above): while an agent's log holds
    it, the import waits on it; then the agent's entry comes first and the chain is whole."""
    w = make_world(app)
    w.agent("ana")
    held_task = w.task(w.member())
    tasks = [w.task(w.member()) for _ in range(3)]
    results = write(
        tmp_path / "results.csv", HEADER, *(f"c-{t},{t},ana,NO_ANSWER,," for t in tasks)
    )
    errors: list[BaseException] = []
    done = threading.Event()

    def run_import() -> None:
        try:
            load(app, results)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    waiting_on_the_log_lock = text(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
    )
    with app.sessions() as agent, agent.begin():
        caller_log.serialise(agent)
        log_call(
            agent,
            CallInput(held_task, "ana", "BUSY", {}),
            DispositionSet.standard(),
            at=TEST_NOW,
            lock=False,
        )
        thread = threading.Thread(target=run_import)
        thread.start()
        # Polled until the server shows the import waiting (it does as soon as the import
        # asks for the lock); an import that did not wait would set ``done`` instead.
        waiting = 0
        with app.engine.connect() as watcher:
            while not waiting and not done.is_set():
                waiting = watcher.execute(waiting_on_the_log_lock).scalar_one()
                watcher.rollback()
        assert waiting == 1 and not done.is_set()
    thread.join()
    assert not errors, errors
    assert [e.task_id for e in entries(app)] == [held_task, *tasks]
    with app.sessions() as s:
        assert caller_log.verify(s).ok


def test_a_case_opened_while_a_chunk_opens_cases_sends_the_chunk_row_by_row(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk reads which members have a case being worked once; a case opened after that
    read (by hand, on PostgreSQL) makes the chunk's case INSERT fail on the one-active-case
    index: the chunk is redone one row at a time and the complaint joins that case."""
    w = make_world(app)
    w.agent("ana")
    first, second = w.member(), w.member()
    tasks = [w.task(first), w.task(second)]
    earlier = w.task(first, run_id=make_run(app, w.program_id, campaign_source("other-calls")))
    with unit(app) as s:
        log_call(
            s,
            CallInput(earlier, "ana", "COMPLAINT", {"category": "billing", "summary": "x"}, True),
            DispositionSet.standard(),
            at=TEST_NOW - timedelta(hours=1),
        )
    # As if the case had been opened after the chunk read the members' cases.
    monkeypatch.setattr(bulk, "ACTIVE", frozenset({"no such status"}))
    row_by_row: list[int] = []
    real = dialer._apply

    def one_row(session, row, *args, **kw):  # type: ignore[no-untyped-def]
        row_by_row.append(row.call.task_id)
        return real(session, row, *args, **kw)

    monkeypatch.setattr(dialer, "_apply", one_row)
    results = write(
        tmp_path / "results.csv",
        "call_id,task_id,agent,disposition,verified,field.category,field.summary",
        *(f"c-{t},{t},ana,COMPLAINT,yes,billing,charged twice" for t in tasks),
    )
    summary = load(app, results)
    assert (summary.applied, summary.rejected) == (2, 0)
    assert row_by_row == tasks
    with app.sessions() as s:
        cases = s.execute(select(Case.participant_id, Case.status).order_by(Case.id)).all()
        assert cases == [(first, "waiting_on_us"), (second, "open")]  # one case each
        joined = s.scalars(select(CaseEvent.kind).where(CaseEvent.call_task_id == tasks[0])).all()
        assert joined == ["call"]  # "again (call): charged twice" in the first case
        assert caller_log.verify(s).ok


def test_a_member_placed_by_phone_is_placed_once_per_batch_not_twice_per_call(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members with no zone on record are placed by their number (phonenumbers: more than the
    rest of a call costs); their retries still land in their calling window (#20)."""
    from engine.policy import zones

    w = make_world(app)
    w.agent("ana")
    other_run = make_run(app, w.program_id, campaign_source("other-calls"))
    members = [w.member(timezone=None, phone=f"+1212555{n:04d}") for n in range(3)]
    tasks = [w.task(m, run_id=run) for m in members for run in (w.run_id, other_run)]
    placed: list[str] = []
    place = zones.zones_for_phone

    def counted(phone: str, region: str | None = None) -> tuple[str, ...]:
        placed.append(phone)
        return place(phone, region)

    monkeypatch.setattr(zones, "zones_for_phone", counted)
    lines = [HEADER]
    for n, task in enumerate(tasks):
        lines.append(f"c-{n},{task},ana,NO_ANSWER,,")
    path = tmp_path / "results.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_results(app, path, at=TEST_NOW)
    assert summary.applied == 6
    assert sorted(placed) == sorted(f"+1212555{n:04d}" for n in range(3))
    with app.sessions() as s:
        due = s.scalars(select(CallTask.due_at).where(CallTask.id.in_(tasks))).all()
    # New York (the 212 area) 08:00-21:00: 10:00 + 4 h is inside it, on every task.
    assert due == [TEST_NOW + timedelta(hours=4)] * 6

"""A dialer's results file: every good row logged like `calls log`, every bad row in the
rejects file with its line and every reason, and importing the file again logs nothing twice."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from calls_helpers import TEST_NOW, make_world, task_row
from sqlalchemy import func, select

from engine.app import App
from engine.calls import caller_log
from engine.calls.dialer import ImportSummary, import_results
from engine.db.models import CallerLogEntry
from engine.errors import InputError

HEADER = (
    "call_id,task_id,agent,disposition,verified,duration_seconds,notes,"
    "field.reason,field.category,field.summary"
)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_of(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def log_entries(app: App) -> list[CallerLogEntry]:
    with app.sessions() as s:
        return list(s.scalars(select(CallerLogEntry).order_by(CallerLogEntry.seq)))


def load(app: App, path: Path, **kw: object) -> ImportSummary:
    summary = import_results(app, path, at=TEST_NOW, **kw)  # type: ignore[arg-type]
    assert summary.read == summary.applied + summary.unchanged + summary.rejected
    return summary


def test_good_rows_are_logged_and_bad_rows_rejected_with_every_reason(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    t1, t2, t3, t4 = (w.task(w.member()) for _ in range(4))
    lines = [
        HEADER,
        f"d-1,{t1},ana,NOT_INTERESTED,yes,95,,too expensive,,",
        f"d-2,{t2},ana,COMPLAINT,,60,,,weather,",
        "d-3,99999,ana,NO_ANSWER,,20,,,,",
        f"d-4,{t3},ana,BUSY,maybe,abc,,,,",
        f",{t4},ana,NO_ANSWER,,20,,,,",
        f"d-5,{t4},ana,NO_ANSWER,,20,rang out,,,",
        f"d-5,{t4},ana,NO_ANSWER,,20,rang out,,,",  # the dialer repeated a row
    ]
    results = write(tmp_path / "results.csv", *lines)

    summary = load(app, results)
    assert (summary.read, summary.applied, summary.unchanged, summary.rejected) == (7, 2, 1, 4)
    assert summary.by_disposition == {"NOT_INTERESTED": 1, "NO_ANSWER": 1}
    assert summary.rejects_path == tmp_path / "results.rejects.csv"

    rejected = rows_of(summary.rejects_path)
    assert [r["line"] for r in rejected] == ["3", "4", "5", "6"]
    # The original cells, as they were, after the line and the reasons.
    for r in rejected:
        original = next(csv.reader([lines[int(r["line"]) - 1]]))
        assert [r[c] for c in HEADER.split(",")] == original
    complaint = rejected[0]["reasons"]
    assert "COMPLAINT field category: 'weather' is not allowed" in complaint
    assert "COMPLAINT requires field summary" in complaint
    assert "COMPLAINT requires field verified" in complaint
    assert rejected[1]["reasons"] == "no call task 99999"
    assert "field verified: 'maybe' is not yes or no" in rejected[2]["reasons"]
    assert "duration_seconds 'abc' is not whole seconds" in rejected[2]["reasons"]
    assert "needs a call_id or a called_at" in rejected[3]["reasons"]

    entries = log_entries(app)
    assert [(e.task_id, e.disposition, e.source) for e in entries] == [
        (t1, "NOT_INTERESTED", "dialer"),
        (t4, "NO_ANSWER", "dialer"),
    ]
    assert entries[0].handle_seconds == 95 and entries[0].verified is True
    assert task_row(app, t1).status == "closed"
    assert task_row(app, t2).status == "open" and task_row(app, t2).attempts == 0
    assert task_row(app, t4).attempts == 1

    # Again: nothing is applied twice (the recycled task keeps one attempt), the bad rows are
    # still refused.
    again = load(app, results)
    assert (again.read, again.applied, again.unchanged, again.rejected) == (7, 0, 3, 4)
    assert len(log_entries(app)) == 2
    assert task_row(app, t4).attempts == 1
    with app.sessions() as s:
        assert caller_log.verify(s).ok


def test_the_rejects_file_fixed_imports_and_nothing_is_lost(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    t1, t2 = w.task(w.member()), w.task(w.member())
    results = write(
        tmp_path / "day.csv",
        HEADER,
        f"d-1,{t1},ana,NO_ANSWER,,20,,,,",
        f"d-2,{t2},ana,COMPLAINT,yes,300,,,billing,",
    )
    first = load(app, results, rejects_path=tmp_path / "refused.csv")
    assert (first.applied, first.rejected) == (1, 1)
    assert first.rejects_path == tmp_path / "refused.csv"

    # Fix the refused row in the rejects file itself and import that file: the extra `line`
    # and `reasons` columns are ignored.
    fixed = first.rejects_path.read_text(encoding="utf-8").replace(
        "billing,", "billing,charged twice"
    )
    (tmp_path / "fixed.csv").write_text(fixed, encoding="utf-8")
    second = load(app, tmp_path / "fixed.csv")
    assert (second.read, second.applied, second.rejected) == (1, 1, 0)
    assert second.rejects_path is None
    assert [(e.task_id, e.disposition) for e in log_entries(app)] == [
        (t1, "NO_ANSWER"),
        (t2, "COMPLAINT"),
    ]
    assert log_entries(app)[1].record.endswith("Complaint (billing): charged twice.")


def test_called_at_identifies_the_call_and_is_its_time(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member(), due_at=TEST_NOW - timedelta(days=1))
    morning = "2026-03-02T08:30:00-05:00"  # 13:30 UTC, before TEST_NOW
    header = "task_id,agent,disposition,called_at"
    first = write(tmp_path / "a.csv", header, f"{task},ana,NO_ANSWER,{morning}")
    assert load(app, first).applied == 1
    entry = log_entries(app)[0]
    assert entry.logged_at == TEST_NOW - timedelta(hours=1, minutes=30)
    assert load(app, first).unchanged == 1

    # The same task called again later is another call; a time to come or without an offset
    # is refused.
    later = "2026-03-02T09:45:00-05:00"
    second = write(
        tmp_path / "b.csv",
        header,
        f"{task},ana,NO_ANSWER,{morning}",
        f"{task},ana,NO_ANSWER,{later}",
        f"{task},ana,NO_ANSWER,2026-03-02T12:00:00-05:00",
        f"{task},ana,NO_ANSWER,2026-03-02T09:50:00",
    )
    summary = load(app, second)
    assert (summary.applied, summary.unchanged, summary.rejected) == (1, 1, 2)
    reasons = [r["reasons"] for r in rows_of(tmp_path / "b.rejects.csv")]
    assert "is in the future" in reasons[0] and "has no UTC offset" in reasons[1]
    assert [e.attempt for e in log_entries(app)] == [1, 2]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("task_id,agent,disposition", "needs a call_id or a called_at column"),
        ("call_id,task_id,disposition", "required column agent is missing"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_whole(
    app: App, tmp_path: Path, header: str, message: str
) -> None:
    path = write(tmp_path / "x.csv", header, "1,2,3")
    with pytest.raises(InputError, match=message):
        load(app, path)
    assert log_entries(app) == []


def test_two_imports_of_one_file_at_once_log_each_call_once(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    tasks = [w.task(w.member()) for _ in range(30)]
    results = write(
        tmp_path / "results.csv",
        "call_id,task_id,agent,disposition",
        *(f"c-{t},{t},ana,NO_ANSWER" for t in tasks),
    )
    summaries: list[ImportSummary] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(rejects: str) -> None:
        try:
            barrier.wait()
            summaries.append(
                import_results(
                    app, results, at=TEST_NOW, rejects_path=tmp_path / rejects, chunk_size=7
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"r{i}.csv",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(s.applied for s in summaries) == len(tasks)
    assert sum(s.unchanged for s in summaries) == len(tasks)
    assert all(s.rejected == 0 for s in summaries)
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CallerLogEntry)) == len(tasks)
        assert caller_log.verify(s).ok
    assert all(task_row(app, t).attempts == 1 for t in tasks)


def test_a_row_that_is_not_utf8_or_not_csv_is_rejected_not_fatal(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    t1, t2 = w.task(w.member()), w.task(w.member())
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"call_id,task_id,agent,disposition,notes\n"
        + f"d-1,{t1},ana,NO_ANSWER,caf\xe9\n".encode("latin-1")
        + f"d-2,{t2},ana,NO_ANSWER\n".encode()
        + f"d-3,{t2},ana,BUSY,rang out\n".encode()
    )
    summary = load(app, path)
    assert (summary.applied, summary.rejected) == (1, 2)
    assert summary.rejects_path is not None
    text = summary.rejects_path.read_bytes()
    assert b"notes is not UTF-8 text" in text and b"caf\xe9" in text  # kept byte for byte
    assert b"has 4 cells but the header has 5" in text
    assert [(e.task_id, e.disposition) for e in log_entries(app)] == [(t2, "BUSY")]

"""`calls import-results` writes what `calls log` would: the same file logged one row at a time
(each row through `log_call` in its own transaction, as `calls log` does) and imported in
chunks leaves every table row for row the same (tasks, caller log, checkpoints, cases, case
events, contacts, suppressions, activity), on a copy of one database."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from calls_helpers import TEST_NOW, campaign_source, make_run, make_world
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from engine.app import App, build_app
from engine.calls.dialer import import_results, parse_row
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CONSENT_BASIS, CallInput, log_call
from engine.consent.wording import program_default
from engine.db.models import Base, CallerLogEntry, CallTask, Program
from engine.errors import EngineError
from engine.programs import set_consent_default
from engine.testing.fakes import unit
from engine.testing.statements import statements_of

HEADER = (
    "call_id,called_at,task_id,agent,disposition,verified,duration_seconds,notes,"
    "field.reason,field.category,field.summary,field.team,field.action,field.callback_at"
)
# Written only by the import (the keys that make a re-run change nothing).
IMPORT_ONLY = {"message_events"}


def _copy_database(app: App, admin: str | None) -> str:
    """A copy of ``app``'s database (its engine is disposed first: a template must be idle)."""
    url = app.settings.database_url
    app.engine.dispose()
    if admin is None:
        source = Path(make_url(url).database or "")
        copy = source.with_name(f"twin-{uuid.uuid4().hex[:8]}.db")
        shutil.copyfile(source, copy)
        return f"sqlite:///{copy}"
    name = f"campaign_twin_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(url).database}"'))
    engine.dispose()
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def twin(app: App, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make()``: a second app on a copy of ``app``'s database as it is now."""
    made: list[tuple[App, str]] = []
    postgres = app.engine.dialect.name == "postgresql"
    admin = request.getfixturevalue("postgres_admin") if postgres else None

    def make() -> App:
        url = _copy_database(app, admin)
        other = build_app(app.settings.model_copy(update={"database_url": url}), clock=app.clock)
        made.append((other, url))
        return other

    yield make
    for other, url in made:
        other.close()
        if admin is not None:
            engine = create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
            engine.dispose()


def everything(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but the import's keys), in primary key order."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with app.sessions() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in IMPORT_ONLY:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            tables[table.name] = [tuple(r) for r in s.execute(select(table).order_by(*order))]
    return tables


def one_at_a_time(app: App, lines: list[str]) -> list[int]:
    """Each row as `calls log` takes it: its own transaction; returns the lines refused."""
    refused = []
    columns = HEADER.split(",")
    for line, values in enumerate(lines, start=2):
        row, reasons = parse_row(dict(zip(columns, values.split(","), strict=True)), TEST_NOW)
        assert row is not None, reasons
        try:
            with unit(app) as s:
                log_call(
                    s,
                    row.call,
                    DispositionSet.standard(),
                    at=row.called_at or TEST_NOW,
                    source="dialer",
                )
        except EngineError:
            refused.append(line)
    return refused


def follow_up_task(app: App, participant_id: int) -> int:
    with app.sessions() as s:
        found = s.scalar(
            select(CallTask.id).where(
                CallTask.participant_id == participant_id,
                CallTask.case_id.is_not(None),
                CallTask.status == "open",
            )
        )
        assert found is not None
        return int(found)


@pytest.mark.parametrize("chunk_size", [1000, 3])
def test_an_import_writes_every_row_as_calls_log_does(
    app: App, tmp_path: Path, twin: Any, chunk_size: int
) -> None:
    w = make_world(app)
    w.agent("ana")
    other_run = make_run(app, w.program_id, campaign_source("other-calls"))
    m = [w.member() for _ in range(12)]
    t = [w.task(p) for p in m]
    again = w.task(m[2], run_id=other_run)  # a second task of member 2
    dnc_other = w.task(m[5], run_id=other_run)  # member 5 complains, then asks not to be called
    cancelled_run = make_run(app, w.program_id, campaign_source("gone"), status="cancelled")
    cancelled = w.task(m[11], run_id=cancelled_run)
    promised = w.task(w.member())
    # Member 9 has a case already (a complaint logged before the import): a call on its
    # follow-up task goes into its history, and another complaint joins it.
    with unit(app) as s:
        log_call(
            s,
            CallInput(
                t[9],
                "ana",
                "COMPLAINT",
                {"category": "billing", "summary": "overcharged"},
                verified=True,
            ),
            DispositionSet.standard(),
            at=TEST_NOW - timedelta(days=1),
        )
    case_task = follow_up_task(app, m[9])
    case_member_task = w.task(m[9], run_id=other_run)

    minute = iter(range(60, 0, -1))

    def row(call: str, task: int, disposition: str, verified: str = "", **fields: str) -> str:
        called = (TEST_NOW - timedelta(minutes=next(minute))).isoformat()
        cells = [fields.get(n, "") for n in ("reason", "category", "summary", "team", "action")]
        cells.append(fields.get("callback_at", ""))
        return ",".join([call, called, str(task), "ana", disposition, verified, "42", "", *cells])

    callback_at = (TEST_NOW + timedelta(days=1)).isoformat()
    lines = [
        row("c1", t[0], "NO_ANSWER"),
        row("c2", t[1], "VOICEMAIL"),
        row("c3", t[2], "COMPLAINT", "yes", category="billing", summary="charged twice"),
        row("c4", again, "COMPLAINT", "yes", category="billing", summary="still charged"),
        row("c5", t[3], "COMPLAINT", "yes", category="service", summary="rude"),
        row("c6", t[4], "ESCALATED", "yes", team="retentions", reason="wants a manager"),
        row("c7", t[5], "COMPLAINT", "yes", category="points", summary="points missing"),
        row("c8", dnc_other, "DO_NOT_CALL", "yes"),
        row("c9", t[6], "CONVERTED", "yes", action="renewed"),
        row("c10", t[7], "CALLBACK", "yes", callback_at=callback_at),
        row("c11", t[8], "PROMISED", "yes", action="renew"),
        row("c12", t[10], "WRONG_NUMBER"),
        row("c13", case_task, "NO_ANSWER"),
        row("c14", case_member_task, "COMPLAINT", "yes", category="billing", summary="again"),
        row("c15", t[0], "BUSY"),  # open again after its no answer
        row("c16", t[11], "NOT_INTERESTED", "yes", reason="moved away"),
        row("c17", cancelled, "ESCALATED", "yes", team="retentions", reason="cancelled run"),
        row("c18", t[5], "NO_ANSWER"),  # closed by its complaint: refused
        row("c19", t[1], "COMPLAINT", "yes", category="service", summary="after voicemail"),
        # A task the call makes (a follow-up) after a case's follow-up task of another member.
        row("c20", promised, "PROMISED", "yes", action="renew"),
    ]
    path = tmp_path / "results.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")

    by_hand = twin()
    refused = one_at_a_time(by_hand, lines)
    summary = import_results(app, path, at=TEST_NOW, chunk_size=chunk_size)
    assert summary.rejected == len(refused) == 1
    assert summary.applied == len(lines) - 1

    imported, logged = everything(app), everything(by_hand)
    # 1 before the import; 6 opened by it (c4 and c14 join cases, c13 follows one up).
    assert len(imported["cases"]) == 7 and len(imported["case_events"]) == 10
    for name, rows in logged.items():
        assert imported[name] == rows, name


def test_a_program_taking_call_consent_as_given_is_read_once_a_chunk(
    app: App, tmp_path: Path, twin: Any
) -> None:
    """Members who stated nothing get the entry's consent basis from the program's default,
    as `calls log` writes it, and the import reads the members' consents once a chunk, not
    once a call (the statements do not grow with the rows)."""
    w = make_world(app)
    w.agent("ana")
    with unit(app) as s:
        program = s.get(Program, w.program_id)
        assert program is not None
        set_consent_default(s, program.key, {"call": True}, at=TEST_NOW - timedelta(days=9))
    consents = ["opted_in", None, "opted_out", None, None, "opted_in", None, None]
    tasks = [w.task(w.member(consent=consent)) for consent in consents * 2]

    def results(name: str, chosen: list[int]) -> Path:
        path = tmp_path / name
        lines = [f"{name}-{n},,{task},ana,NO_ANSWER,,30,,,,,,," for n, task in enumerate(chosen)]
        path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
        return path

    first, second = results("a", tasks[:8]), results("b", tasks[8:])
    by_hand = twin()
    one_at_a_time(by_hand, first.read_text().splitlines()[1:])
    one_at_a_time(by_hand, second.read_text().splitlines()[1:])
    with statements_of(app.engine) as eight:
        assert import_results(app, first, at=TEST_NOW).applied == 8
    with statements_of(app.engine) as more:  # the same eight members' other tasks, 4 a chunk
        assert import_results(app, second, at=TEST_NOW, chunk_size=4).applied == 8
    assert len(more) == 2 * len(eight)  # two chunks: two of the first's statements each

    imported, logged = everything(app), everything(by_hand)
    for name, rows in logged.items():
        assert imported[name] == rows, name
    with app.sessions() as s:
        bases = [
            (entry.fields or {}).get(CONSENT_BASIS)
            for entry in s.scalars(select(CallerLogEntry).order_by(CallerLogEntry.seq))
        ]
    expected = [
        None if c else f"call: {program_default(TEST_NOW - timedelta(days=9))}" for c in consents
    ]
    assert bases == expected * 2

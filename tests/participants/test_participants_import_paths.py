"""The import's fast paths give what the plain ones give: worker processes vs this process,
the COPY/driver encoders vs the general ones, writes after a commit, deferred indexes."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import Consent, Participant, Program
from engine.participants import importer
from engine.participants.importer import _Encoder, _participant_row, _Plan, import_participants
from engine.participants.store import (
    CONSENT_COLUMNS,
    SQLITE_PARTICIPANT_PARAMS,
    ImportStore,
    RowEncoder,
    _copy_value,
    copy_line,
)
from engine.participants.validation import ValidationContext, validate_participant
from engine.testing.fakes import make_program

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = [
    "external_id",
    "first_name",
    "email",
    "phone",
    "status",
    "enrolled_at",
    "points_balance",
    "consent_email",
    "consent_sms",
    "note",
]


def _member(i: int) -> list[str]:
    return [
        f"M{i:04d}",
        f"Name {i}",
        f"m{i}@example.com",
        f"+1202555{i % 10_000:04d}",
        ("active", "lapsed", "closed")[i % 3],
        f"2025-0{1 + i % 9}-1{i % 10}T08:30:00",
        str(i * 7),
        ("yes", "no", "")[i % 3],
        ("", "y", "n")[i % 3],
        f"note {i}",
    ]


def _mixed_file(path: Path) -> Path:
    """Good rows with every kind of bad row between them: invalid values, a duplicate id in
    a later piece, a wrong cell count, a quoted cell spanning lines, a NUL character,
    a blank line."""
    rows: list[list[str]] = [_member(i) for i in range(120)]
    rows[10][2] = "not-an-email"
    rows[11][3] = "12"
    rows[11][4] = "zombie"
    rows[25][5] = "2025-02-30"
    rows[40][6] = "-5"
    rows[41][9] = "two\nlines, with a comma"
    rows[70][0] = "M0003"  # the id of an earlier row, several pieces earlier
    rows[71][0] = "M0071"
    rows.insert(72, list(rows[71]))  # a duplicate in the same piece
    rows[90][7] = "maybe"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows[:50])
        handle.write("M9000,too,few\n")
        handle.write("\n")
        writer.writerows(rows[50:])
    with path.open("ab") as handle:
        handle.write(b"M9001,Caf\x00e,,,,,,,,\n")  # a NUL: PostgreSQL refuses it in text
    return path


def _stored(app: App, program_key: str) -> dict[str, tuple[Any, ...]]:
    with app.sessions() as session:
        program_id = session.scalar(select(Program.id).where(Program.key == program_key))
        people = session.scalars(select(Participant).where(Participant.program_id == program_id))
        consents: dict[str, dict[str, str]] = {}
        for external_id, channel, status in session.execute(
            select(Participant.external_id, Consent.channel, Consent.status)
            .join(Participant, Participant.id == Consent.participant_id)
            .where(Participant.program_id == program_id)
        ):
            consents.setdefault(external_id, {})[channel] = status
        return {
            p.external_id: (
                p.first_name,
                p.email,
                p.phone,
                p.status,
                p.enrolled_at,
                p.points_balance,
                p.attributes,
                p.source_digest,
                consents.get(p.external_id, {}),
            )
            for p in people
        }


def test_worker_processes_give_exactly_the_single_process_result(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    """Same summary, same rejects file byte for byte, same rows, on import and re-import."""
    at = clock.now()
    with app.sessions() as session, session.begin():
        make_program(session, at=at, key="alone")
        make_program(session, at=at, key="pooled")
    source = _mixed_file(tmp_path / "members.csv")
    for attempt in ("first", "again"):
        results = {}
        for key, options in (
            ("alone", {"workers": 1}),
            ("pooled", {"workers": 2, "chunk_size": 9, "parallel_threshold": 1}),
        ):
            rejects = tmp_path / f"{key}-{attempt}.rejects.csv"
            summary = import_participants(
                app, source, program_key=key, at=at, rejects_path=rejects, **options
            )
            results[key] = (
                (summary.read, summary.inserted, summary.updated, summary.unchanged),
                summary.rejected,
                rejects.read_bytes(),
            )
        assert results["alone"] == results["pooled"]
        counts, rejected, rejects_file = results["alone"]
        if attempt == "first":
            assert counts == (123, 114, 0, 0) and rejected == 9
        else:
            assert counts == (123, 0, 0, 114) and rejected == 9
        lines = list(csv.reader(rejects_file.decode("utf-8", "surrogateescape").splitlines()))
        assert [row[0] for row in lines[1:]] == sorted((row[0] for row in lines[1:]), key=int)
        assert _stored(app, "alone") == _stored(app, "pooled")
    assert len(_stored(app, "alone")) == 114


def _record_row(values: dict[str, Any]) -> tuple[Any, ...]:
    record, errors = validate_participant(values, ValidationContext("America/New_York", "US"))
    assert record is not None, errors
    return _participant_row(1, "loyalty", record, "digest", AT)


def test_copy_line_is_the_general_encoding_of_every_type() -> None:
    row = (
        7,
        "tab\there, back\\slash, new\nline, return\r",
        None,
        datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
        date(2026, 5, 1),
        {"a": "x\ty", "n": [1, 2]},
        ["l"],
        Decimal("12.50"),
        True,
        "plain",
    )
    assert copy_line(row) == "\t".join(_copy_value(value) for value in row) + "\n"
    assert copy_line(row).split("\t")[1] == "tab\\there, back\\\\slash, new\\nline, return\\r"


@pytest.mark.parametrize("postgres", [True, False])
def test_the_encoder_gives_what_the_general_encoders_give(postgres: bool) -> None:
    plan = _Plan(
        fmt="csv",
        encoding="utf-8",
        columns=("external_id",),
        digest_context="",
        ctx=ValidationContext("America/New_York", "US"),
        program_id=3,
        program_key="loyalty",
        at=AT,
        postgres=postgres,
        consent_source="import:a\tb.csv",
        erased=frozenset(),
        first_load=True,
        database_url="",
    )
    values = {
        "external_id": "X\\1",
        "first_name": "Zoë",
        "enrolled_at": "2026-01-02T03:04:05",
        "consent_email": "yes",
        "consent_call": "no",
        "home": "a\tb",
    }
    record, _ = validate_participant(values, plan.ctx)
    assert record is not None
    participant, consents = _Encoder(plan).encode(record, "d1")
    row = _participant_row(3, "loyalty", record, "d1", AT)
    consent_rows = [
        (3, "X\\1", "email", "opted_in", AT, "import:a\tb.csv"),
        (3, "X\\1", "call", "opted_out", AT, "import:a\tb.csv"),
    ]
    if postgres:
        assert participant == copy_line(row)
        assert consents == "".join(copy_line(c) for c in consent_rows)
    else:
        sqlite_row = (*row, record.attributes)
        assert participant == RowEncoder(SQLITE_PARTICIPANT_PARAMS, postgres=False)(sqlite_row)
        assert consents == [RowEncoder(CONSENT_COLUMNS, postgres=False)(c) for c in consent_rows]


def _encode(store: ImportStore, row: tuple[Any, ...], consents: list[tuple[Any, ...]]) -> Any:
    if store.postgres:
        return [copy_line(row)], [copy_line(c) for c in consents]
    return (
        [RowEncoder(SQLITE_PARTICIPANT_PARAMS, postgres=False)((*row, row[17]))],
        [RowEncoder(CONSENT_COLUMNS, postgres=False)(c) for c in consents],
    )


def test_store_writes_after_a_commit_are_in_a_transaction(app: App, clock: FrozenClock) -> None:
    """SQLite: the engine emits BEGIN only when SQLAlchemy begins a transaction, and the store
    writes through the driver; after a commit, those writes must still be in a transaction
    (not one per row), so a rollback undoes them."""
    with app.sessions() as session, session.begin():
        program = make_program(session, at=clock.now(), key="loyalty")
        program_id = program.id
    first = list(_record_row({"external_id": "A1", "consent_email": "yes"}))
    second = list(_record_row({"external_id": "A2", "consent_sms": "no"}))
    first[0] = second[0] = program_id
    with app.engine.connect() as connection:
        store = ImportStore(connection)
        store.upsert_lines(
            *_encode(store, tuple(first), [(program_id, "A1", "email", "opted_in", AT, "t")])
        )
        connection.commit()
        store.upsert_lines(
            *_encode(store, tuple(second), [(program_id, "A2", "sms", "opted_out", AT, "t")])
        )
        connection.rollback()
        store.close()
    with app.sessions() as session:
        assert session.scalars(select(Participant.external_id)).all() == ["A1"]
        assert session.scalar(select(func.count()).select_from(Consent)) == 1


def _index_names(app: App) -> set[str]:
    return {str(ix["name"]) for ix in inspect(app.engine).get_indexes("participants")}


def test_indexes_are_deferred_for_a_first_load_only(
    app: App, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file into an (almost) empty table drops the email/phone indexes and rebuilds
    them; re-importing it (a daily feed) leaves them alone."""
    at = clock.now()
    with app.sessions() as session, session.begin():
        make_program(session, at=at, key="loyalty")
    before = _index_names(app)
    assert {"ix_participants_email", "ix_participants_phone"} <= before
    dropped: list[list[str]] = []
    defer = ImportStore.defer_indexes

    def spy(self: ImportStore) -> list[Any]:
        result = defer(self)
        dropped.append([str(ix.name) for ix in result])
        return result

    monkeypatch.setattr(ImportStore, "defer_indexes", spy)
    monkeypatch.setattr(importer, "DEFER_INDEXES_ROWS", 20)
    path = tmp_path / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_member(i) for i in range(60))
    # With worker processes, whose lookups must not wait for the DROP's lock (PGOPTIONS: a
    # worker that waits would fail the import after 5 s instead of hanging it).
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=5000")
    first = import_participants(
        app, path, program_key="loyalty", at=at, chunk_size=10, workers=2, parallel_threshold=1
    )
    assert first.inserted == 60
    assert len(dropped) == 1
    again = import_participants(app, path, program_key="loyalty", at=at, chunk_size=10)
    assert again.unchanged == 60
    assert len(dropped) == 1  # not called again: the table already holds the file
    assert _index_names(app) == before
    with app.sessions() as session:
        found = session.scalar(
            select(Participant.external_id).where(Participant.email == "m7@example.com")
        )
    assert found == "M0007"


def test_a_first_load_looks_nothing_up_and_a_second_does(
    app: App, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = clock.now()
    with app.sessions() as session, session.begin():
        make_program(session, at=at, key="loyalty")
        make_program(session, at=at, key="other")
    looked_up: list[int] = []
    existing_digests = ImportStore.existing_digests

    def spy(self: ImportStore, program_id: int, external_ids: Any) -> dict[str, Any]:
        looked_up.append(len(external_ids))
        return existing_digests(self, program_id, external_ids)

    monkeypatch.setattr(ImportStore, "existing_digests", spy)
    path = tmp_path / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_member(i) for i in range(30))
        writer.writerow(_member(4))  # a repeat of this file: still a duplicate
    first = import_participants(app, path, program_key="loyalty", at=at, workers=1)
    assert (first.inserted, first.rejected, looked_up) == (30, 1, [])
    # Another program's members do not make this one's first load look anything up...
    import_participants(app, path, program_key="other", at=at, workers=1)
    assert looked_up == []
    # ...but a program that has members does.
    second = import_participants(app, path, program_key="loyalty", at=at, workers=1)
    assert (second.unchanged, second.rejected, sum(looked_up)) == (30, 1, 30)


# PostgreSQL's planner statistics; SQLite keeps none that the import maintains.
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_first_load_leaves_current_statistics(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    """A first load looks nothing up, so it analyzes once, at the end: the planner then knows
    the table is no longer empty."""
    at = clock.now()
    with app.sessions() as session, session.begin():
        make_program(session, at=at, key="loyalty")
    path = tmp_path / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_member(i) for i in range(40))
    with app.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE participants")
    import_participants(app, path, program_key="loyalty", at=at, chunk_size=10)
    with app.engine.connect() as connection:
        reltuples = connection.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'participants'::regclass"
        ).scalar()
    assert reltuples == 40

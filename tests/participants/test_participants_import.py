"""Participant import against both databases: counts, rejects, upserts, consents, erasure."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from engine.app import App
from engine.clock import FrozenClock
from engine.consent.suppressions import add_suppression
from engine.db.models import Consent, Participant, Program
from engine.errors import InputError, NotFoundError
from engine.participants.importer import ImportSummary, import_participants
from engine.sampling import sample_key
from engine.testing.fakes import make_program

HEADER = ["external_id", "first_name", "email", "phone", "status", "consent_email", "consent_sms"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def check_invariant(summary: ImportSummary) -> None:
    assert summary.read == (
        summary.inserted + summary.updated + summary.unchanged + summary.rejected
    )


def setup_program(app: App, at: datetime, key: str = "loyalty") -> None:
    with app.sessions() as session, session.begin():
        make_program(session, at=at, key=key)


def participants(app: App) -> dict[str, Participant]:
    with app.sessions() as session:
        return {p.external_id: p for p in session.scalars(select(Participant))}


def consents(app: App) -> dict[tuple[str, str], tuple[str, datetime, str]]:
    with app.sessions() as session:
        rows = session.execute(
            select(
                Participant.external_id,
                Consent.channel,
                Consent.status,
                Consent.recorded_at,
                Consent.source,
            ).join(Participant, Participant.id == Consent.participant_id)
        )
        return {(e, c): (s, r, src) for e, c, s, r, src in rows}


def read_rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


GOOD_ROWS = [
    ["M1", "Ana", "ana@example.com", "+12025550143", "active", "yes", ""],
    ["M2", "Bo", "bo@example.com", "(202) 555-0178", "lapsed", "no", "yes"],
]


def test_import_inserts_then_reimport_changes_nothing(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    path = write_csv(tmp_path / "members.csv", GOOD_ROWS)
    first = import_participants(app, path, program_key="loyalty", at=at)
    check_invariant(first)
    assert (first.read, first.inserted, first.rejected, first.rejects_path) == (2, 2, 0, None)
    stored = participants(app)
    assert stored["M2"].phone == "+12025550178"
    assert stored["M1"].sample_key == sample_key("loyalty", "M1")
    assert stored["M1"].created_at == at and stored["M1"].source_digest

    later = at + timedelta(days=1)
    second = import_participants(app, path, program_key=None, at=later)
    check_invariant(second)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
    again = participants(app)
    assert again["M1"].updated_at == at  # untouched
    assert not (tmp_path / "members.rejects.csv").exists()


def test_changed_rows_are_updated_and_blank_cells_keep_the_stored_value(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    import_participants(app, write_csv(tmp_path / "a.csv", GOOD_ROWS), program_key=None, at=at)
    later = at + timedelta(days=1)
    changed = [
        ["M1", "Ana", "", "+12025550143", "closed", "", ""],
        GOOD_ROWS[1],
        ["M3", "Cy", "cy@example.com", "", "", "", ""],
    ]
    summary = import_participants(
        app, write_csv(tmp_path / "b.csv", changed), program_key=None, at=later
    )
    check_invariant(summary)
    assert (summary.inserted, summary.updated, summary.unchanged) == (1, 1, 1)
    stored = participants(app)
    assert stored["M1"].status == "closed" and stored["M1"].email == "ana@example.com"
    assert stored["M1"].created_at == at and stored["M1"].updated_at == later
    assert stored["M3"].status == "active"  # the default, for a new member only

    # --clear-blank: the same file now clears what its blank cells leave out.
    cleared = import_participants(
        app,
        tmp_path / "b.csv",
        program_key=None,
        at=later + timedelta(days=1),
        clear_blank=True,
    )
    assert (cleared.updated, cleared.unchanged) == (3, 0)  # not "unchanged": it means more
    stored = participants(app)
    assert stored["M1"].email is None and stored["M1"].phone == "+12025550143"
    assert stored["M3"].phone is None and stored["M3"].status == "active"


def test_rejects_file_has_line_every_reason_and_the_original_columns(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    path = tmp_path / "daily.csv"
    path.write_text(
        "external_id,first_name,email,phone,note\n"
        'M1,Ana,ana@example.com,+12025550143,"two\nlines"\n'
        "M2,Bo,not-an-email,12,x\n"
        "M1,Ana again,ana2@example.com,,\n"
        "short\n"
        ",Nobody,,,\n",
        encoding="utf-8",
    )
    summary = import_participants(app, path, program_key="loyalty", at=at)
    check_invariant(summary)
    assert (summary.read, summary.inserted, summary.rejected) == (5, 1, 4)
    assert summary.rejects_path == tmp_path / "daily.rejects.csv"
    rejects = read_rejects(summary.rejects_path)
    assert [r["line"] for r in rejects] == ["4", "5", "6", "7"]
    assert rejects[0]["reasons"] == (
        "email: 'not-an-email': An email address must have an @-sign.; "
        "phone: '12': not a valid phone number in region US"
    )
    assert rejects[0]["first_name"] == "Bo" and rejects[0]["note"] == "x"
    assert rejects[1]["reasons"] == "duplicate external_id in this file (first at line 2)"
    assert rejects[2]["reasons"] == "has 1 cells but the header has 5"
    assert rejects[2]["external_id"] == "short"
    assert rejects[3]["reasons"] == "external_id: required"

    # A chosen rejects path; a clean re-run removes the stale default rejects file.
    chosen = tmp_path / "out" / "bad.csv"
    chosen.parent.mkdir()
    again = import_participants(app, path, program_key="loyalty", at=at, rejects_path=chosen)
    assert again.rejects_path == chosen and len(read_rejects(chosen)) == 4
    clean = write_csv(tmp_path / "daily2.csv", [GOOD_ROWS[0]])
    stale = tmp_path / "daily2.rejects.csv"
    stale.write_text("line,reasons,external_id\n9,old,X\n", encoding="utf-8")
    import_participants(app, clean, program_key="loyalty", at=at)
    assert not stale.exists()


def test_jsonl_import_and_rejects_keep_the_raw_line(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    path = tmp_path / "members.jsonl"
    lines = [
        json.dumps(
            {
                "external_id": "J1",
                "points_balance": 50,
                "consent_sms": True,
                "prefs": {"lang": "es"},
            }
        ),
        "",
        "{broken",
        json.dumps({"external_id": "J2", "points_balance": -1}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_participants(app, path, program_key="loyalty", at=at)
    check_invariant(summary)
    assert (summary.read, summary.inserted, summary.rejected) == (3, 1, 2)
    stored = participants(app)["J1"]
    assert stored.points_balance == 50 and stored.attributes == {"prefs": {"lang": "es"}}
    assert consents(app)[("J1", "sms")][0] == "opted_in"
    assert summary.rejects_path is not None
    rejects = read_rejects(summary.rejects_path)
    assert [(r["line"], r["raw"]) for r in rejects] == [("3", "{broken"), ("4", lines[3])]
    assert rejects[1]["reasons"] == "points_balance: -1 is negative; it must be >= 0"


def test_consents_are_written_only_when_they_change(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    import_participants(app, write_csv(tmp_path / "a.csv", GOOD_ROWS), program_key=None, at=at)
    assert consents(app) == {
        ("M1", "email"): ("opted_in", at, "import:a.csv"),
        ("M2", "email"): ("opted_out", at, "import:a.csv"),
        ("M2", "sms"): ("opted_in", at, "import:a.csv"),
    }
    later = at + timedelta(days=2)
    rows = [
        ["M1", "Ana B", "ana@example.com", "+12025550143", "active", "yes", "no"],  # same email
        ["M2", "Bo", "bo@example.com", "(202) 555-0178", "lapsed", "", "n"],  # blank email
    ]
    import_participants(app, write_csv(tmp_path / "b.csv", rows), program_key=None, at=later)
    assert consents(app) == {
        ("M1", "email"): ("opted_in", at, "import:a.csv"),  # unchanged: not rewritten
        ("M1", "sms"): ("opted_out", later, "import:b.csv"),
        ("M2", "email"): ("opted_out", at, "import:a.csv"),  # blank keeps it
        ("M2", "sms"): ("opted_out", later, "import:b.csv"),
    }


def test_erased_people_cannot_be_imported_again(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup_program(app, at)
    with app.sessions() as session, session.begin():
        add_suppression(
            session, "ANA@example.com", channel="all", reason="erasure", source="test", at=at
        )
        add_suppression(
            session, "+1 202 555 0178", channel="sms", reason="erasure", source="test", at=at
        )
        add_suppression(
            session, "cy@example.com", channel="email", reason="opt_out", source="test", at=at
        )
    rows = [*GOOD_ROWS, ["M3", "Cy", "cy@example.com", "", "", "", ""]]
    summary = import_participants(app, write_csv(tmp_path / "a.csv", rows), program_key=None, at=at)
    check_invariant(summary)
    assert (summary.inserted, summary.rejected) == (1, 2)  # an opt-out does not block import
    assert summary.rejects_path is not None
    reasons = [r["reasons"] for r in read_rejects(summary.rejects_path)]
    assert all(r.startswith("erased participant") for r in reasons)
    assert set(participants(app)) == {"M3"}


def test_last_activity_only_moves_forward(app: App, clock: FrozenClock, tmp_path: Path) -> None:
    at = clock.now()
    setup_program(app, at)
    header = ["external_id", "last_activity_at"]
    import_participants(
        app,
        write_csv(tmp_path / "a.csv", [["M1", "2026-02-01T12:00:00Z"]], header),
        program_key=None,
        at=at,
    )
    import_participants(
        app,
        write_csv(tmp_path / "b.csv", [["M1", "2026-01-01T12:00:00Z"]], header),
        program_key=None,
        at=at,
    )
    assert participants(app)["M1"].last_activity_at == datetime(2026, 2, 1, 12, tzinfo=UTC)


def test_unknown_program_and_unreadable_file(app: App, clock: FrozenClock, tmp_path: Path) -> None:
    at = clock.now()
    path = write_csv(tmp_path / "a.csv", GOOD_ROWS)
    with pytest.raises(NotFoundError):
        import_participants(app, path, program_key=None, at=at)
    setup_program(app, at)
    with pytest.raises(InputError, match=r"missing\.csv"):
        import_participants(app, tmp_path / "missing.csv", program_key=None, at=at)


def test_worker_processes_give_the_same_result(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    """The multiprocessing path, forced on with tiny chunks and threshold."""
    at = clock.now()
    setup_program(app, at)
    rows = [
        [f"W{i:03d}", f"Name{i}", f"w{i}@example.com" if i % 7 else "broken", "", "", "yes", ""]
        for i in range(60)
    ]
    rows.insert(30, ["W005", "dup", "", "", "", "", ""])
    path = write_csv(tmp_path / "w.csv", rows)
    summary = import_participants(
        app, path, program_key=None, at=at, chunk_size=7, workers=2, parallel_threshold=10
    )
    check_invariant(summary)
    assert summary.read == 61 and summary.rejected == 9 + 1
    assert summary.rejects_path is not None
    rejects = read_rejects(summary.rejects_path)
    assert [int(r["line"]) for r in rejects] == sorted(int(r["line"]) for r in rejects)
    assert rejects[5]["reasons"] == "duplicate external_id in this file (first at line 7)"
    assert len(participants(app)) == 51
    again = import_participants(
        app, path, program_key=None, at=at, chunk_size=7, workers=2, parallel_threshold=10
    )
    assert (again.unchanged, again.rejected) == (51, 10)


# --------------------------------------------------------------------------- property


_row = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 15)),
    st.tuples(st.just("bad"), st.integers(0, 15)),
    st.tuples(st.just("malformed"), st.just(0)),
)


def _csv_line(kind: str, n: int) -> list[str]:
    if kind == "good":
        return [f"P{n}", "Name", f"p{n}@example.com", "", "", "yes", ""]
    if kind == "bad":
        return [f"P{n}", "Name", "no-at-sign", "", "zombie", "", ""]
    return ["only", "three", "cells"]


_counter = iter(range(10**9))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_row, max_size=25), st.lists(_row, max_size=25))
def test_no_row_is_ever_lost_or_duplicated(
    app: App, clock: FrozenClock, tmp_path: Path, day1: list[Any], day2: list[Any]
) -> None:
    at = clock.now()
    key = f"prop{next(_counter)}"
    setup_program(app, at, key=key)
    known: set[str] = set()
    for day, spec in enumerate((day1, day2)):
        path = write_csv(tmp_path / f"{key}-{day}.csv", [_csv_line(k, n) for k, n in spec])
        summary = import_participants(app, path, program_key=key, at=at)
        check_invariant(summary)
        assert summary.read == len(spec)
        rejected = read_rejects(summary.rejects_path) if summary.rejects_path else []
        assert len(rejected) == summary.rejected
        # Every input line is handled exactly once: stored, or in the rejects file.
        lines = {int(r["line"]) for r in rejected}
        assert len(lines) == len(rejected)
        first: dict[str, int] = {}
        for index, (kind, n) in enumerate(spec):
            line = index + 2
            if kind == "malformed":
                assert line in lines
                continue
            external_id = f"P{n}"
            if external_id in first:
                assert line in lines  # a later duplicate is always rejected
                continue
            first[external_id] = line
            assert (line in lines) == (kind == "bad")
            if kind == "good":
                known.add(external_id)
        with app.sessions() as session:
            stored = set(
                session.scalars(
                    select(Participant.external_id)
                    .join(Program, Program.id == Participant.program_id)
                    .where(Program.key == key)
                )
            )
        # No duplicates (the unique key would refuse them) and nothing lost or invented.
        assert stored == known

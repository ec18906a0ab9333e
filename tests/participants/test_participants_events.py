"""Activity-event import: idempotency, unknown participants, last_activity_at."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Participant
from engine.errors import InputError
from engine.participants.events import import_events, validate_event
from engine.testing.fakes import make_participant, make_program

HEADER = ["external_id", "type", "occurred_at", "points", "amount", "reference"]


def write_events(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def setup(app: App, at: datetime) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=at)
        make_participant(session, program, at=at, external_id="M1", last_activity_at=None)
        make_participant(
            session,
            program,
            at=at,
            external_id="M2",
            last_activity_at=datetime(2026, 2, 20, tzinfo=UTC),
        )


def test_events_import_is_idempotent_and_moves_last_activity_forward(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup(app, at)
    rows = [
        ["M1", "login", "2026-02-01T10:00:00", "", "", ""],  # no reference: content digest
        ["M1", "redemption", "2026-02-03T10:00:00Z", "-500", "", "R-1"],
        ["M2", "purchase", "2026-01-05", "20", "19.99", "R-2"],  # older than M2's activity
        ["M1", "redemption", "2026-02-03T10:00:00Z", "-500", "", "R-1"],  # same event twice
        ["NOPE", "login", "2026-02-01", "", "", "R-3"],
    ]
    path = write_events(tmp_path / "events.csv", rows)
    first = import_events(app, path, program_key="loyalty", at=at)
    assert (first.read, first.inserted, first.unchanged, first.rejected) == (5, 3, 1, 1)
    assert first.read == first.inserted + first.updated + first.unchanged + first.rejected
    assert first.rejects_path is not None
    with first.rejects_path.open(encoding="utf-8", newline="") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["line"], r["reasons"]) for r in rejects] == [
        ("6", "no participant with external_id NOPE in program loyalty")
    ]
    with app.sessions() as session:
        people = {p.external_id: p for p in session.scalars(select(Participant))}
        events = session.scalars(select(ActivityEvent).order_by(ActivityEvent.occurred_at)).all()
    # Naive times are in the program zone (New York, UTC-5).
    assert [(e.type, e.occurred_at) for e in events] == [
        ("purchase", datetime(2026, 1, 5, 5, tzinfo=UTC)),
        ("login", datetime(2026, 2, 1, 15, tzinfo=UTC)),
        ("redemption", datetime(2026, 2, 3, 10, tzinfo=UTC)),
    ]
    assert events[0].amount == Decimal("19.99") and events[2].points == -500
    assert events[1].reference.startswith("digest:")
    assert people["M1"].last_activity_at == datetime(2026, 2, 3, 10, tzinfo=UTC)
    assert people["M2"].last_activity_at == datetime(2026, 2, 20, tzinfo=UTC)  # not moved back

    again = import_events(app, path, program_key=None, at=at + timedelta(hours=1))
    assert (again.inserted, again.unchanged, again.rejected) == (0, 4, 1)
    with app.sessions() as session:
        assert len(session.scalars(select(ActivityEvent)).all()) == 3


def test_events_in_small_chunks_and_jsonl(app: App, clock: FrozenClock, tmp_path: Path) -> None:
    at = clock.now()
    setup(app, at)
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            f'{{"external_id": "M{1 + i % 2}", "type": "login", '
            f'"occurred_at": "2026-02-{1 + i:02d}T08:00:00Z", "reference": "L{i}"}}'
            for i in range(9)
        )
        + "\n",
        encoding="utf-8",
    )
    summary = import_events(app, path, program_key=None, at=at, chunk_size=2)
    assert (summary.read, summary.inserted, summary.rejected) == (9, 9, 0)
    with app.sessions() as session:
        people = {p.external_id: p for p in session.scalars(select(Participant))}
    assert people["M1"].last_activity_at == datetime(2026, 2, 9, 8, tzinfo=UTC)
    assert people["M2"].last_activity_at == datetime(2026, 2, 20, tzinfo=UTC)


AT = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("external_id", "", "external_id: required"),
        ("type", "", "type: required"),
        ("type", "9lives", "type: '9lives' is not an event type name"),
        ("occurred_at", "", "occurred_at: required"),
        ("occurred_at", "last tuesday", "occurred_at: 'last tuesday': not an ISO 8601"),
        ("occurred_at", "2026-03-05", "occurred_at: '2026-03-05' is in the future"),
        ("points", "1.5", "points: '1.5' is not a whole number"),
        ("amount", "ten", "amount: 'ten' is not a decimal number"),
        ("amount", "1.005", "amount: '1.005' has more than 2 decimal places"),
        ("amount", "1e20", "amount: '1e20' is out of range"),
        ("reference", "r" * 129, "reference: longer than 128"),
        ("reference", "ab\x00cd", "reference: contains a NUL character"),
        ("reference", "ab\udcffcd", "reference: contains bytes that are not text"),
        ("external_id", "M\x001", "external_id: contains a NUL character"),
        ("external_id", "M\udcff", "external_id: contains bytes that are not text"),
        ("occurred_at", "0001-01-01T00:00:00+01:00", "out of range (years 1 to 9999 in UTC)"),
    ],
)
def test_each_event_rejection_reason(column: str, value: str, reason: str) -> None:
    row = {"external_id": "M1", "type": "login", "occurred_at": "2026-03-01T10:00:00Z"}
    record, reasons = validate_event({**row, column: value}, timezone="UTC", at=AT)
    assert record is None and len(reasons) == 1 and reason in reasons[0], reasons


def test_event_reference_digest_is_stable() -> None:
    row = {
        "external_id": "M1",
        "type": "Login",
        "occurred_at": "2026-03-01T10:00:00Z",
        "points": "5",
        "amount": "2.50",
    }
    first, _ = validate_event(row, timezone="UTC", at=AT)
    second, _ = validate_event({**row, "amount": "2.5"}, timezone="UTC", at=AT)
    other, _ = validate_event({**row, "points": "6"}, timezone="UTC", at=AT)
    assert first is not None and second is not None and other is not None
    assert first.type == "login"
    assert first.reference == second.reference != other.reference


def test_events_with_bytes_that_are_not_utf8_are_rejected_not_a_crash(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    at = clock.now()
    setup(app, at)
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"external_id,type,occurred_at,reference\n"
        b"M1,login,2026-02-01,ab\x81cd\n"
        b"M1,login,0001-01-01T00:00:00+01:00,R-9\n"
        b"M1,login,2026-02-02,R-10\n"
    )
    # Not UTF-8: refused as a whole, naming the line and the encoding to try.
    with pytest.raises(InputError, match=r"line 2 is not UTF-8 \(byte 0x81\).*--encoding"):
        import_events(app, path, program_key="loyalty", at=at)
    # Read as Windows-1252, whose 0x81 is undefined: that row alone is rejected.
    summary = import_events(app, path, program_key="loyalty", at=at, encoding="cp1252")
    assert (summary.read, summary.inserted, summary.rejected) == (3, 1, 2)
    assert summary.rejects_path is not None
    rejects = summary.rejects_path.read_bytes()
    assert b"reference: contains bytes that are not text in the file's encoding" in rejects
    assert b"ab\x81cd" in rejects  # the original bytes, as they came
    assert b"occurred_at: '0001-01-01T00:00:00+01:00': out of range" in rejects

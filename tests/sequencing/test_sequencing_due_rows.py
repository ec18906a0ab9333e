"""The due scan reads each member's attributes as stored, on both databases (PostgreSQL:
parsed by orjson, what it refuses by json.loads)."""

from __future__ import annotations

from datetime import UTC, datetime

from seq_helpers import TEST_NOW, definition, launch

from engine.app import App
from engine.sequencing.due import due_sql, fetch_due, sqlite_time
from engine.testing.fakes import make_participant, make_program, unit

ATTRIBUTES = [
    {},
    {"club": "Gold \u00e9\u4e2d", "visits": 12, "ratio": 0.1, "tags": ["a", None, True]},
    # Beyond 64 bits (orjson refuses it), and a float past a double's precision.
    {"card": 2**70, "balance": 1234567.891234567891, "nested": {"deep": [[-(2**65)]]}},
]


def test_due_rows_carry_the_attributes_as_stored(app: App) -> None:
    with unit(app) as s:
        program = make_program(s, key="loyalty", at=TEST_NOW)
        for attributes in ATTRIBUTES:
            make_participant(s, program, at=TEST_NOW, attributes=attributes)
    launch(app, definition())
    sqlite = app.engine.dialect.name == "sqlite"
    start = ("", 0) if sqlite else (datetime.min.replace(tzinfo=UTC), 0)
    at = sqlite_time(TEST_NOW) if sqlite else TEST_NOW
    with app.engine.connect() as conn:
        rows, _ = fetch_due(conn, due_sql(app.engine.dialect.name, [], 10), (at, *start))
    assert sorted((r.attributes for r in rows), key=repr) == sorted(ATTRIBUTES, key=repr)

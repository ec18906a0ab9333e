"""BatchWriter.insert_messages: every outbox column goes in as the sequencer made it (binary
COPY on PostgreSQL, executemany on SQLite), and a message already there is left alone (the
staging route on PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from seq_helpers import TEST_NOW, definition, enrollments, launch
from sqlalchemy import select, text

from engine.app import App
from engine.db.models import OutboxMessage, Program
from engine.sending.outbox import message_uids
from engine.sequencing.due import sqlite_time
from engine.sequencing.materialise import OUTBOX_COLUMNS
from engine.sequencing.write import _COPY_TABLE, COPY_TYPES, BatchWriter
from engine.testing.fakes import make_participant, unit

# PostgreSQL's names (format_type) of the binary COPY's types.
_TYPE_NAMES = {
    "character varying": "varchar",
    "bigint": "int8",
    "integer": "int4",
    "jsonb": "jsonb",
    "text": "text",
    "timestamp with time zone": "timestamptz",
}


def _column_types(conn: Any, table: str) -> list[str]:
    found = dict(
        conn.execute(
            text(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
            ),
            {"table": table},
        ).all()
    )
    return [_TYPE_NAMES[found[column]] for column in OUTBOX_COLUMNS]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # binary COPY is PG's
def test_copy_types_are_the_outbox_and_staging_columns_types(app: App) -> None:
    with app.engine.begin() as conn:
        assert tuple(_column_types(conn, "outbox_messages")) == COPY_TYPES
        conn.exec_driver_sql(_COPY_TABLE)
        staged = _column_types(conn, "seq_outbox")
    assert staged == ["text" if t == "jsonb" else t for t in COPY_TYPES]


def _message(uid: str, enrollment: Any, step_id: str, **values: Any) -> list[Any]:
    row = {
        "uid": uid,
        "run_id": enrollment.run_id,
        "enrollment_id": enrollment.id,
        "participant_id": enrollment.participant_id,
        "campaign": enrollment.campaign,
        "step_id": step_id,
        "step_index": 0,
        "variant": None,
        "channel": "sms",
        "template": "points_expiring",
        "locale": "zh",
        "to_address": "+14155550100",
        "content": json.dumps({"body": "您好 — Olá, STOP", "encoding": "UCS-2", "segments": 1}),
        "status": "queued",
        "status_reason": None,
        "not_before": TEST_NOW + timedelta(minutes=5),
        "attempts": 0,
        "last_error": None,
        "created_at": TEST_NOW,
        "updated_at": TEST_NOW,
        "expires_at": None,
    }
    row.update(values)
    return [row[column] for column in OUTBOX_COLUMNS]


def _stored(app: App) -> dict[str, dict[str, Any]]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(*(getattr(OutboxMessage, c) for c in OUTBOX_COLUMNS)).order_by(OutboxMessage.id)
        ).all()
    return {row.uid: dict(zip(OUTBOX_COLUMNS, row, strict=True)) for row in rows}


def _expected(message: list[Any]) -> dict[str, Any]:
    row = dict(zip(OUTBOX_COLUMNS, message, strict=True))
    row["content"] = json.loads(row["content"])
    return row


def test_insert_messages_stores_every_column_and_skips_a_message_already_there(
    app: App, program: Program
) -> None:
    with unit(app) as s:
        for i in range(3):
            make_participant(s, program, at=TEST_NOW, external_id=f"M{i}")
    launch(app, definition())
    first, second, third = enrollments(app)
    uids = message_uids(4)
    batch = [
        _message(uids[0], first, "s1"),
        _message(
            uids[1],
            second,
            "s1",
            variant="b",
            channel="email",
            locale=None,
            to_address="m@example.com",
            content=json.dumps({"subject": "S", "html": "<p>x</p>", "text": "x", "headers": {}}),
            expires_at=TEST_NOW + timedelta(days=2),
        ),
        _message(
            uids[2],
            third,
            "s1",
            content="{}",
            status="skipped",
            status_reason="render_error",
            last_error="undefined: points",
            step_index=3,
        ),
    ]
    expected = {m[0]: _expected(m) for m in batch}
    writer = BatchWriter(app.engine.dialect.name, sqlite_time(TEST_NOW))
    with app.engine.begin() as conn:
        writer.insert_messages(conn, [list(m) for m in batch])
    assert _stored(app) == expected

    # Again, with one message already there: it is kept as it was, the new one goes in.
    again = [
        _message(uids[3], first, "s2"),
        _message(message_uids(1)[0], second, "s1", to_address="+14155550199"),
    ]
    with app.engine.begin() as conn:
        writer.insert_messages(conn, [list(m) for m in again])
    expected[uids[3]] = _expected(again[0])
    assert _stored(app) == expected

"""engine/db/bulk.py: rows written below Core's per-row work are the rows insert()/update()
would write, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.app import App
from engine.db.bulk import insert_rows, update_rows
from engine.db.models import MessageEvent

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TABLE = MessageEvent.__table__


def _events(prefix: str, count: int) -> list[dict[str, object]]:
    return [
        {
            "provider": "dialer",
            "provider_event_id": f"{prefix}{n}",
            "event": "call_logged",
            "occurred_at": AT + timedelta(seconds=n),
            "received_at": AT,
            "participant_id": None,
            "detail": {"line": n, "file": "r\u00e9sultats.csv", "nested": {"ok": True}},
        }
        for n in range(count)
    ]


def _stored(app: App, prefix: str) -> list[tuple[object, ...]]:
    columns = [c for c in TABLE.columns if c.name not in ("id", "provider_event_id")]
    with app.sessions() as s:
        rows = s.execute(
            select(*columns)
            .where(TABLE.c.provider_event_id.startswith(prefix))
            .order_by(TABLE.c.id)
        )
        return [tuple(row) for row in rows]


def test_inserted_rows_are_those_insert_writes(app: App) -> None:
    with app.sessions() as s, s.begin():
        s.connection().execute(insert(TABLE), _events("core-", 3))
        insert_rows(s.connection(), TABLE, _events("bulk-", 3))
    core, bulk = _stored(app, "core-"), _stored(app, "bulk-")
    assert len(bulk) == 3
    assert bulk == core
    assert bulk[0][-1] == {"line": 0, "file": "r\u00e9sultats.csv", "nested": {"ok": True}}


def test_a_row_already_there_fails_as_insert_would(app: App) -> None:
    with app.sessions() as s, s.begin():
        insert_rows(s.connection(), TABLE, _events("dup-", 2))
    with pytest.raises(IntegrityError), app.sessions() as s, s.begin():
        insert_rows(s.connection(), TABLE, _events("dup-", 3)[1:])
    assert len(_stored(app, "dup-")) == 2  # the failed batch wrote nothing


def test_rows_must_name_the_same_columns(app: App) -> None:
    rows = _events("odd-", 2)
    del rows[1]["participant_id"]
    with pytest.raises(ValueError), app.sessions() as s, s.begin():
        insert_rows(s.connection(), TABLE, rows)


def test_updated_rows_are_those_update_writes_the_last_row_of_a_key_winning(app: App) -> None:
    with app.sessions() as s, s.begin():
        insert_rows(s.connection(), TABLE, _events("a-", 3) + _events("b-", 3))
        ids = dict(s.execute(select(TABLE.c.provider_event_id, TABLE.c.id)).all())

    def changes(prefix: str) -> list[dict[str, object]]:
        later = AT + timedelta(days=1)
        return [
            {
                "id": ids[f"{prefix}{n}"],
                "event": f"seen {n}",
                "received_at": later,
                "detail": {"n": n},
            }
            for n in (0, 2)
        ] + [{"id": ids[f"{prefix}0"], "event": "last", "received_at": later, "detail": {}}]

    with app.sessions() as s, s.begin():
        core = changes("a-")
        s.connection().execute(
            update(TABLE).where(TABLE.c.id == bindparam("_id")),
            [{"_id": row.pop("id"), **row} for row in core],
        )
        update_rows(s.connection(), TABLE, changes("b-"))
    assert _stored(app, "b-") == _stored(app, "a-")
    assert [row[3] for row in _stored(app, "b-")] == ["last", "call_logged", "seen 2"]

"""Migration 0016 (issue #15): messages still queued when it runs get the default deadline,
so an upgrade does not let them go out weeks late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, MetaData, Numeric, insert, select

from engine.db import migrate
from engine.db.session import make_engine

MADE = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
# Values that the CHECK constraints accept.
FIXED: dict[str, dict[str, Any]] = {
    "participants": {"status": "active"},
    "campaign_runs": {"status": "active"},
    "enrollments": {"group": "treatment", "state": "active"},
    "outbox_messages": {"channel": "email", "status": "queued"},
}


def _value(table: str, column: Any) -> Any:
    if column.name in FIXED.get(table, {}):
        return FIXED[table][column.name]
    kind = column.type
    if isinstance(kind, DateTime):
        return MADE
    if isinstance(kind, Boolean):
        return True
    if isinstance(kind, Integer | Numeric):
        return 1
    if isinstance(kind, JSON):
        return {}
    return "x"


def _row(metadata: MetaData, name: str, **values: Any) -> dict[str, Any]:
    table = metadata.tables[name]
    row = {
        c.name: _value(name, c)
        for c in table.columns
        if not c.nullable and c.server_default is None and not c.primary_key
    }
    row.update(id=1, **values)
    return row


def test_queued_messages_get_a_deadline_on_upgrade(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0013")
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.begin() as conn:
            for name in ("programs", "participants", "campaign_runs", "enrollments"):
                conn.execute(insert(metadata.tables[name]), [_row(metadata, name)])
            outbox = metadata.tables["outbox_messages"]
            conn.execute(
                insert(outbox),
                [
                    _row(metadata, "outbox_messages", uid="a", step_id="email-1"),
                    {
                        **_row(metadata, "outbox_messages", uid="b", step_id="email-2"),
                        "id": 2,
                        "status": "sent",
                    },
                ],
            )
        migrate.upgrade(engine)
        metadata = MetaData()
        metadata.reflect(engine)
        outbox = metadata.tables["outbox_messages"]
        with engine.connect() as conn:
            found = dict(conn.execute(select(outbox.c.uid, outbox.c.expires_at)).all())
        expires = found["a"]
        if isinstance(expires, str):  # SQLite: the stored text
            expires = datetime.fromisoformat(expires)
        assert expires.replace(tzinfo=UTC) == MADE + timedelta(days=3)
        assert found["b"] is None  # gone already: no deadline needed
    finally:
        engine.dispose()

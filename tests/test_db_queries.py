"""engine/db/queries.py: ``none_of`` picks the rows ``NOT IN`` picks, on both databases, with
one array parameter on PostgreSQL however long the list."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import String, select
from sqlalchemy.dialects import postgresql

from engine.app import App
from engine.calls.agents import add_agent
from engine.db.models import Agent
from engine.db.queries import none_of

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _logins_not_in(app: App, excluded: list[str]) -> list[str]:
    postgres = app.engine.dialect.name == "postgresql"
    with app.sessions() as s:
        return list(
            s.scalars(
                select(Agent.login)
                .where(none_of(Agent.login, excluded, postgres, String))
                .order_by(Agent.login)
            )
        )


def test_none_of_keeps_the_rows_outside_the_list(app: App) -> None:
    with app.sessions() as s, s.begin():
        for login in ("ana", "ben", "cy"):
            add_agent(s, login, name=login, teams=("renewals",), timezone="UTC", at=AT)
    assert _logins_not_in(app, ["ben"]) == ["ana", "cy"]
    assert _logins_not_in(app, ["ana", "cy", "zed"]) == ["ben"]
    assert _logins_not_in(app, []) == ["ana", "ben", "cy"]


def test_none_of_on_postgresql_is_one_parameter_whatever_the_list() -> None:
    dialect = postgresql.dialect()
    texts = {
        str(
            select(Agent.id)
            .where(none_of(Agent.login, names, True, String))
            .compile(dialect=dialect)
        )
        for names in (["a"], [f"agent{n}" for n in range(200)])
    }
    assert len(texts) == 1, texts
    assert "!= ALL" in texts.pop()

"""An agent's row as a claim reads it, through Core: `calls next` claims on a plain
connection and never imports the ORM (#18). The ORM side of agents (add, disable, targets,
views) is engine/calls/agents.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from engine.db.reading import dialect_name
from engine.db.tables.calls import agents
from engine.errors import NotFoundError

if TYPE_CHECKING:
    from engine.db.reading import Reader


def agent_key(login: str) -> str:
    """How a login is stored and looked up."""
    return login.strip().lower()


def unknown_agent(login: str) -> NotFoundError:
    return NotFoundError(f"no agent {login!r}; add one with `campaign agents add`")


# Built once (a claim reads its agent first, #19): the login is bound when it runs.
_MINE = select(agents).where(agents.c.login == bindparam("agent_login"))
_MINE_LOCKED = _MINE.with_for_update()


def agent_row(db: Reader, login: str) -> Any:
    """The agent's ``agents`` row (attribute access by column name); NotFoundError if none."""
    row = db.execute(_MINE, {"agent_login": agent_key(login)}).first()
    if row is None:
        raise unknown_agent(login)
    return row


def locked_agent(db: Reader, login: str) -> Any:
    """:func:`agent_row`, the row held until the transaction ends (PostgreSQL ``FOR UPDATE``,
    in the same statement), so what opens a claim or a pause for one agent runs one at a time,
    each seeing what the other committed: a pause is refused for a claim taken meanwhile, and
    a claim ends a pause started meanwhile (never both open). SQLite needs nothing: the write
    lock taken first in those transactions (engine/db/session.py take_write_lock) serialises them
    already."""
    mine = _MINE_LOCKED if dialect_name(db) == "postgresql" else _MINE
    row = db.execute(mine, {"agent_login": agent_key(login)}).first()
    if row is None:
        raise unknown_agent(login)
    return row

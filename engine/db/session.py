"""Engine and session factory, with the per-dialect settings every connection needs, and the
transactions that write: on SQLite they must be the database's writer before they read
(take_write_lock, writing, writer_connection)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from engine.db.reading import Reader, dialect_name
from engine.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"CAMPAIGN_DATABASE_URL {url!r} is not a database URL") from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over
        # so that a transaction starts when SQLAlchemy says so.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, **{"pool_pre_ping": True, **kwargs})
    raise ConfigError(
        f"CAMPAIGN_DATABASE_URL: unsupported database {parsed.get_backend_name()!r}; "
        "use sqlite:///FILE or postgresql+psycopg://..."
    )


# The execution option of a connection whose transactions all write (see take_write_lock):
# on SQLite each then begins as the writer, BEGIN IMMEDIATE; PostgreSQL ignores it.
WRITER = "sqlite_begin_immediate"


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITER, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for a writer rather than fail at once
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; much faster commits
    cursor.close()


def make_session_factory(
    engine: Engine, info: dict[str, Any] | None = None
) -> sessionmaker[Session]:
    """``info``: what every session carries for the code that needs it (the caller log key)."""
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(engine, expire_on_commit=False, info=info or {})


class DeferredSessionFactory:
    """The session factory, made when the first session is asked for: a command that reads
    through Core on a plain connection never imports sqlalchemy.orm (#18)."""

    def __init__(self, engine: Engine, info: dict[str, Any] | None = None) -> None:
        self._engine = engine
        self._info = info
        self._factory: sessionmaker[Session] | None = None

    def __call__(self, **options: Any) -> Session:
        """``options``: the sessionmaker's, e.g. ``bind=connection`` (a session that joins
        that connection's transaction)."""
        if self._factory is None:
            self._factory = make_session_factory(self._engine, self._info)
        return self._factory(**options)


# A write that changes nothing: on SQLite it makes the transaction the writer (see below).
_TAKE_WRITE_LOCK = text("UPDATE engine_settings SET value = value WHERE 0 = 1")


def take_write_lock(db: Reader) -> None:
    """SQLite: make this transaction the database's writer now, as BEGIN IMMEDIATE would. Call
    it first in a transaction that reads before it writes; a transaction that begins here
    rather begins as the writer (``writing``, or a connection with the WRITER option).

    A deferred SQLite transaction that reads and later writes fails at once with "database is
    locked" when another process committed in between: its snapshot is stale and cannot be
    upgraded, so busy_timeout does not help. A writer from the first statement instead waits
    (busy_timeout) for the other's commit and then reads what it committed. PostgreSQL: nothing
    to do and no round trip; row locks and advisory locks do the work there."""
    if dialect_name(db) == "sqlite":
        db.execute(_TAKE_WRITE_LOCK)


def writer_connection(engine: Engine) -> Connection:
    """A connection whose every transaction writes (an import's, which commits a chunk at a
    time and looks members up before it writes them): on SQLite each begins as the writer."""
    return engine.connect().execution_options(**{WRITER: True})


@contextmanager
def writing(sessions: Callable[..., Session]) -> Iterator[Session]:
    """One unit of work that writes: commit on success, roll back on any error. On SQLite it
    begins as the database's writer (BEGIN IMMEDIATE), so it waits for a running dispatcher,
    webhook or tick instead of failing on a stale read; it holds the write lock until it
    commits, so it is only for work that writes. PostgreSQL: an ordinary transaction."""
    with sessions() as session, session.begin():
        if dialect_name(session) == "sqlite":
            session.connection(execution_options={WRITER: True})  # begins it, immediately
        yield session

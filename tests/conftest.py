"""Database fixtures: every test gets its own database, built by the migrations.

Store tests take the ``app`` (or ``database_url``) fixture and run once on SQLite and once on
PostgreSQL. The PostgreSQL half is skipped, loudly, when no server answers, unless
CAMPAIGN_REQUIRE_POSTGRES=1 (set by .ci/run), which turns a missing server into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.db import migrate
from engine.db.session import make_engine
from engine.settings import Settings

POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CAMPAIGN_REQUIRE_POSTGRES") == "1"
# Tests that log calls share one caller log key instead of each making a key file (beside
# their SQLite file, or in ~/.config for PostgreSQL); tests/security covers the key files.
os.environ.setdefault("CAMPAIGN_CALLER_LOG_KEY", "test-caller-log-key-" + "0" * 24)
# A fixed instant so that relative dates ("90 days ago") in tests are reproducible.
TEST_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

_POSTGRES_SKIP = "PostgreSQL not reachable"
_postgres_skips: list[str] = []


def _postgres_reachable() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not reachable"
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    reason = _postgres_reachable()
    if reason is not None:
        message = f"{_POSTGRES_SKIP} at {POSTGRES_URL}: {reason}"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " (CAMPAIGN_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(message)
    yield POSTGRES_URL


def _admin_execute(admin_url: str, statement: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: str) -> Iterator[str]:
    """A database migrated once per session; each test copies it (CREATE DATABASE TEMPLATE)."""
    name = f"campaign_tpl_{uuid.uuid4().hex[:12]}"
    _admin_execute(postgres_admin, f'CREATE DATABASE "{name}"')
    engine = make_engine(make_url(postgres_admin).set(database=name).render_as_string(False))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    _admin_execute(postgres_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "campaign.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the main file
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "campaign.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("postgres_admin")
    template = request.getfixturevalue("postgres_template")
    name = f"campaign_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    _admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind with no schema at all (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"campaign_e_{uuid.uuid4().hex[:12]}"
    _admin_execute(admin, f'CREATE DATABASE "{name}"')
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    _admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _no_orphan_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process a test starts ends with the test, even when the test fails half-way (a
    dispatcher left running would hold its database and keep sending into the next test)."""
    started: list[subprocess.Popen[Any]] = []

    class TrackedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", TrackedPopen)
    yield
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(TEST_NOW)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, outbox_dir=tmp_path / "outbox")


@pytest.fixture
def app(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build_app(settings, clock=clock)
    yield application
    application.close()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Collected from the reports, not from the fixture, so that the warning also reaches the
    # summary when the tests run in pytest-xdist workers (the reports come back to this process).
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if _POSTGRES_SKIP in reason and not _postgres_skips:
            _postgres_skips.append(reason.removeprefix("Skipped: "))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _postgres_skips:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            "PostgreSQL tests were SKIPPED: " + _postgres_skips[0], red=True, bold=True
        )
        terminalreporter.write_line(
            "Only SQLite was tested. Start PostgreSQL or set CAMPAIGN_TEST_POSTGRES_URL; "
            "CAMPAIGN_REQUIRE_POSTGRES=1 makes this a failure.",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)

"""The CLI's one clock can be preset by an embedding caller (tests, simulations): every command
of the invocation then reads it; a user's invocation always reads the system clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import create_engine, select

from cli import CliState, cli
from engine.clock import FrozenClock
from engine.db.models import Program

SIMULATED = datetime(2026, 11, 1, 5, 45, tzinfo=UTC)


def _created_at(database_url: str, key: str) -> datetime:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(Program.created_at).where(Program.key == key))
    finally:
        engine.dispose()


def test_a_preset_clock_is_the_time_of_every_command(database_url: str) -> None:
    runner = CliRunner()
    state = CliState(overrides={}, clock=FrozenClock(SIMULATED))
    result = runner.invoke(
        cli, ["--database-url", database_url, "programs", "add", "demo", "--name", "D"], obj=state
    )
    assert result.exit_code == 0, result.output
    assert _created_at(database_url, "demo") == SIMULATED

    state = CliState(overrides={}, clock=FrozenClock(SIMULATED + timedelta(days=3)))
    result = runner.invoke(cli, ["--database-url", database_url, "tick", "--json"], obj=state)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["at"] == (SIMULATED + timedelta(days=3)).isoformat()


def test_without_a_preset_the_cli_reads_the_system_clock(database_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["--database-url", database_url, "programs", "add", "live", "--name", "L"]
    )
    assert result.exit_code == 0, result.output
    assert abs(_created_at(database_url, "live") - datetime.now(UTC)) < timedelta(hours=1)

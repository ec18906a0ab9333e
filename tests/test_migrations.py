"""The migrations are the only way the schema changes, and they match the models exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text

from engine.app import build_app
from engine.db import migrate
from engine.db.models import Base
from engine.db.session import make_engine
from engine.errors import SchemaBehindError
from engine.settings import Settings


def test_upgrade_from_empty_to_head_leaves_no_drift(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        before, after = migrate.upgrade(engine)
        assert before is None
        assert after == migrate.head_revision(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == [], f"models and migrations disagree: {differences}"
        # Upgrading again is a no-op.
        assert migrate.upgrade(engine) == (after, after)
    finally:
        engine.dispose()


def test_a_single_head() -> None:
    engine = make_engine("sqlite://")
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    assert len(script.get_heads()) == 1, "migrations have diverged into several heads"


def test_app_refuses_an_empty_database(empty_database_url: str) -> None:
    with pytest.raises(SchemaBehindError, match="campaign db upgrade"):
        build_app(Settings(database_url=empty_database_url))


def test_app_refuses_a_database_behind_head(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    revisions = list(script.walk_revisions())
    if len(revisions) < 2:
        pytest.skip("only one migration exists; nothing can be behind yet")
    migrate.upgrade(engine, revisions[-1].revision)  # the first migration only
    engine.dispose()
    with pytest.raises(SchemaBehindError, match="run `campaign db upgrade`"):
        build_app(Settings(database_url=empty_database_url))


def test_0013_agent_targets_round_trip(empty_database_url: str) -> None:
    """0013 adds the weekly / monthly targets (NULL: derived) and its downgrade removes them,
    keeping the agents; upgrading again leaves no drift."""
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO agents (login, name, role, timezone, daily_target, teams, "
                    "active, created_at) VALUES ('ana', 'Ana', 'agent', 'America/New_York', "
                    "8, '[]', :yes, :at)"
                ),
                {"yes": True, "at": datetime(2026, 3, 2, tzinfo=UTC)},
            )
        migrate.upgrade(engine)
        with engine.begin() as connection:
            row = connection.execute(
                text("SELECT daily_target, weekly_target, monthly_target FROM agents")
            ).one()
            assert tuple(row) == (8, None, None)  # existing agents keep the derived targets
            connection.execute(text("UPDATE agents SET weekly_target = 24, monthly_target = 90"))

        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0012")
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("agents")}
            assert "weekly_target" not in columns and "monthly_target" not in columns
            assert connection.execute(text("SELECT login, daily_target FROM agents")).all() == [
                ("ana", 8)
            ]

        migrate.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            checks = {c["name"] for c in inspect(connection).get_check_constraints("agents")}
            assert {"ck_agents_role", "ck_agents_weekly_target", "ck_agents_monthly_target"} <= (
                checks
            )
    finally:
        engine.dispose()


def test_0018_keeps_one_conversion_per_event_and_round_trips(empty_database_url: str) -> None:
    """0018: conversions that counted one event in two runs of a campaign keep the most
    recent enrollment's only; the schedule tables come and go with the revision."""
    from types import SimpleNamespace

    from sqlalchemy.orm import Session

    from engine.db.models import CampaignRun, Conversion, Enrollment, Program
    from engine.testing.fakes import make_event, make_participant

    at = datetime(2026, 3, 2, tzinfo=UTC)
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0013")
        with Session(engine) as session, session.begin():
            # Columns of 0013 only: the model's later ones (programs.holidays...) are not there.
            program_id = session.execute(
                insert(Program.__table__)
                .values(key="loyalty", name="L", timezone="UTC", region="US", created_at=at)
                .returning(Program.__table__.c.id)
            ).scalar_one()
            program = SimpleNamespace(id=program_id)
            member = make_participant(session, program, at=at)
            event = make_event(session, member, type="redemption", occurred_at=at + timedelta(9))
            enrollments = []
            for week in range(2):
                run = CampaignRun(
                    campaign="weekly",
                    program_id=program.id,
                    definition_hash="h",
                    definition_source="x",
                    fire_key=f"w{week}",
                    status="active",
                    launched_at=at + timedelta(days=7 * week),
                )
                session.add(run)
                session.flush()
                enrollment = Enrollment(
                    run_id=run.id,
                    campaign="weekly",
                    participant_id=member.id,
                    group="treatment",
                    enrolled_at=run.launched_at,
                    state="converted",
                )
                session.add(enrollment)
                session.flush()
                enrollments.append(enrollment.id)
                session.add(
                    Conversion(
                        enrollment_id=enrollment.id,
                        run_id=run.id,
                        participant_id=member.id,
                        campaign="weekly",
                        group="treatment",
                        event_id=event.id,
                        event_type="redemption",
                        occurred_at=event.occurred_at,
                        source="import",
                        created_at=at,
                    )
                )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT enrollment_id FROM conversions")).all()
        assert kept == [(enrollments[1],)]

        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0013")
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
        assert not {"campaign_schedules", "skipped_fires"} & tables

        migrate.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()

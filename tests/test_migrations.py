"""The migrations are the only way the schema changes, and they match the models exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, insert, inspect, select, text, update

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
            differences = _differences_from_models(connection)
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


def test_the_schema_check_of_a_current_database_is_one_select(database_url: str) -> None:
    """Every command checks the schema first: one SELECT of the revision, no catalogue query
    before it (#18); the catalogue is asked only when that SELECT fails (no schema yet)."""
    engine = make_engine(database_url)
    try:
        with engine.connect():
            pass  # the dialect's own first-connect queries are not the check's
        statements: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements.append(statement)

        migrate.ensure_current(engine)
    finally:
        engine.dispose()
    assert [s for s in statements if s != "BEGIN"] == ["SELECT version_num FROM alembic_version"]


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
            assert _differences_from_models(connection) == []
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
            assert _differences_from_models(connection) == []
    finally:
        engine.dispose()


def test_0032_drops_the_outbox_run_and_participant_keys_and_round_trips(
    empty_database_url: str,
) -> None:
    """0032: outbox_messages loses its keys to campaign_runs and participants (the
    enrollment's key covers them) and indexes provider ids only where set; on SQLite the table
    is rebuilt, and the references to its rows, its tally triggers and its partial indexes
    survive. Deleting a participant still deletes their messages (through the enrollment)."""
    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"
    at = "2026-03-02 15:00:00" if sqlite else "2026-03-02 15:00:00+00"

    def outbox_keys() -> set[str]:
        return {
            key["referred_table"] for key in inspect(engine).get_foreign_keys("outbox_messages")
        }

    try:
        migrate.upgrade(engine, "0029")
        with engine.begin() as c:
            for statement in (
                "INSERT INTO programs (id, key, name, timezone, region, created_at) "
                "VALUES (1, 'p', 'P', 'UTC', 'US', :at)",
                "INSERT INTO participants (id, program_id, external_id, status, attributes, "
                "points_balance, points_expiring, sample_key, created_at, updated_at) "
                "VALUES (1, 1, 'M1', 'active', '{}', 0, 0, 1, :at, :at)",
                "INSERT INTO campaign_runs (id, campaign, program_id, definition_hash, "
                "definition_source, fire_key, status, launched_at, enrolled_count, "
                "holdout_count) VALUES (1, 'c', 1, 'h', 'x', 'once', 'active', :at, 1, 0)",
                'INSERT INTO enrollments (id, run_id, campaign, participant_id, "group", '
                "enrolled_at, state, next_step_index) VALUES (1, 1, 'c', 1, 'treatment', :at, "
                "'active', 1)",
                "INSERT INTO outbox_messages (id, uid, run_id, enrollment_id, participant_id, "
                "campaign, step_id, step_index, channel, template, content, status, "
                "not_before, attempts, created_at, updated_at, provider_message_id) VALUES "
                "(1, 'u1', 1, 1, 1, 'c', 's1', 0, 'email', 't', '{}', 'sent', :at, 1, :at, "
                ":at, 'pm-1')",
                "INSERT INTO contacts (id, participant_id, channel, run_id, occurred_at, kind, "
                "message_id) VALUES (1, 1, 'email', 1, :at, 'message', 1)",
                "INSERT INTO message_events (id, outbox_id, participant_id, provider, "
                "provider_event_id, event, occurred_at, received_at, detail) VALUES "
                "(1, 1, 1, 'sendgrid', 'e1', 'delivered', :at, :at, '{}')",
            ):
                c.execute(text(statement), {"at": at})
        assert outbox_keys() == {"campaign_runs", "enrollments", "participants"}

        migrate.upgrade(engine, "0032")
        assert outbox_keys() == {"enrollments"}
        with engine.begin() as c:
            assert c.execute(text("SELECT message_id FROM contacts")).scalar_one() == 1
            assert c.execute(text("SELECT outbox_id FROM message_events")).scalar_one() == 1
            # The tally triggers still count a change of status (both databases).
            delivered = text(
                "SELECT coalesce(sum(messages), 0) FROM outbox_tallies WHERE status = 'delivered'"
            )
            before = c.execute(delivered).scalar_one()
            c.execute(text("UPDATE outbox_messages SET status = 'delivered' WHERE id = 1"))
            after = c.execute(delivered).scalar_one()
            assert after == before + 1
        provider_index = next(
            i
            for i in inspect(engine).get_indexes("outbox_messages")
            if i["name"] == "ix_outbox_messages_provider_message_id"
        )
        where = provider_index.get("dialect_options", {}).get(
            "sqlite_where" if sqlite else "postgresql_where"
        )
        assert "provider_message_id IS NOT NULL" in str(where)
        if sqlite:
            with engine.connect() as c:
                indexes = dict(
                    c.execute(
                        text(
                            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                            "AND tbl_name = 'outbox_messages' AND sql IS NOT NULL"
                        )
                    ).all()
                )
            assert "WHERE variant IS NOT NULL" in indexes["ix_outbox_messages_variants"]
            assert "status IN" in indexes["ix_outbox_messages_pending_by_run"]

        # A participant's messages still go with them, through the enrollment.
        with engine.begin() as c:
            c.execute(text("DELETE FROM participants WHERE id = 1"))
            assert c.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one() == 0

        command.downgrade(migrate.alembic_config(engine), "0029")
        assert outbox_keys() == {"campaign_runs", "enrollments", "participants"}
    finally:
        engine.dispose()


def test_0033_the_due_index_holds_active_treatment_enrollments_and_round_trips(
    empty_database_url: str,
) -> None:
    """0033: the sequencer's due index (next_action_at, id) keeps only the active treatment
    enrollments; the due scan still reads it on both databases; downgrading brings back the
    index of every state."""
    from engine.sequencing.due import due_sql

    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"

    def enrollment_indexes() -> dict[str, list[str]]:
        return {
            str(i["name"]): [str(c) for c in i["column_names"]]
            for i in inspect(engine).get_indexes("enrollments")
        }

    try:
        migrate.upgrade(engine, "0032")
        assert enrollment_indexes()["ix_enrollments_state_next_action_at_id"] == [
            "state",
            "next_action_at",
            "id",
        ]
        migrate.upgrade(engine, "0033")
        indexes = enrollment_indexes()
        assert "ix_enrollments_state_next_action_at_id" not in indexes
        assert indexes["ix_enrollments_due"] == ["next_action_at", "id"]
        due = next(
            i
            for i in inspect(engine).get_indexes("enrollments")
            if i["name"] == "ix_enrollments_due"
        )
        where = str(
            due.get("dialect_options", {}).get("sqlite_where" if sqlite else "postgresql_where")
        )
        assert "active" in where and "treatment" in where
        with engine.begin() as c:
            sql = due_sql(engine.dialect.name, [], 2000)
            if sqlite:
                plan = " ".join(
                    str(row[3])
                    for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("2026", "", 0))
                )
            else:
                c.exec_driver_sql("SET LOCAL enable_seqscan = off")
                moment = datetime(2026, 3, 2, tzinfo=UTC)
                plan = " ".join(
                    str(row[0])
                    for row in c.exec_driver_sql(
                        f"EXPLAIN {sql}", (moment, moment - timedelta(days=1), 0)
                    )
                )
        assert "ix_enrollments_due" in plan, plan

        command.downgrade(migrate.alembic_config(engine), "0032")
        indexes = enrollment_indexes()
        assert "ix_enrollments_due" not in indexes
        assert "ix_enrollments_state_next_action_at_id" in indexes
        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert _differences_from_models(connection) == []
    finally:
        engine.dispose()


def test_0036_backfills_each_runs_claim_form_and_round_trips(empty_database_url: str) -> None:
    """0036: every run gets the claim form of its stored definition (launch stores it from
    then on); a run whose text no longer validates keeps NULL; downgrading drops the column."""
    from engine.calls.claim_form import claim_form_of, read_claim_form
    from engine.definitions.loader import parse_definition

    at = datetime(2026, 3, 2, tzinfo=UTC)
    source = "\n".join(
        [
            "name: renew-calls",
            "program: loyalty",
            "audience: {all: [{field: status, eq: active}, {field: renewal_date,"
            " within_next: 30d}]}",
            "standing: [status, renewal_date]",
            "goal: {events: [renewal], window: 30d}",
            "call_window: {start: '09:30', end: '18:00', days: [mon, tue, wed]}",
            "frequency_cap: {max: 2, per: 7d}",
            "steps:",
            "  - {id: call-1, channel: call, script: renewal_due,"
            " priority: [{field: points_balance, order: desc}]}",
        ]
    )
    expected = claim_form_of(parse_definition(source, "renew-calls.yaml").definition)
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0035")
        with engine.begin() as connection:
            _runs_of_one_program(connection, at, {"renew-calls": source, "broken": "name: ["})
        migrate.upgrade(engine, "0036")
        runs = Base.metadata.tables["campaign_runs"]
        with engine.connect() as connection:
            forms = dict(connection.execute(select(runs.c.campaign, runs.c.claim_form)).all())
        assert forms == {"renew-calls": expected, "broken": None}
        form = read_claim_form(forms["renew-calls"])
        assert form is not None and form.frequency_cap is not None
        assert (form.frequency_cap.max, form.frequency_cap.per) == (2, timedelta(days=7))
        assert [k.field for k in form.step("call-1").priority] == ["points_balance"]

        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0035")
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("campaign_runs")}
        assert "claim_form" not in columns

        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert _differences_from_models(connection) == []
            assert dict(connection.execute(select(runs.c.campaign, runs.c.claim_form)).all()) == {
                "renew-calls": expected,
                "broken": None,
            }
    finally:
        engine.dispose()


def test_0037_stores_claim_forms_again_where_they_lack_the_call_sheet(
    empty_database_url: str,
) -> None:
    """0037: a run whose form is of version 1 (0036's backfill, launches since) gets the form
    of its definition with the call sheet's fields; a run without a form, and one whose form
    is already current, keep theirs."""
    from engine.calls.claim_form import FORM_VERSION, claim_form_of
    from engine.definitions.loader import parse_definition

    at = datetime(2026, 3, 2, tzinfo=UTC)
    source = "\n".join(
        [
            "name: renew-calls",
            "program: loyalty",
            "audience: {field: status, eq: active}",
            "goal: {events: [renewal], window: 30d}",
            "steps:",
            "  - {id: call-1, channel: call, script: renewal_due,"
            " talking_points: [Points never expire while you renew]}",
        ]
    )
    current = claim_form_of(parse_definition(source, "renew-calls.yaml").definition)
    assert current["version"] == FORM_VERSION == 2
    assert current["steps"][0]["script"] == "renewal_due"
    first = {
        **{k: v for k, v in current.items() if k not in ("name", "description")},
        "version": 1,
        "steps": [{"id": "call-1", "priority": []}],
    }
    kept = {**current, "name": "stored before, kept"}
    runs = Base.metadata.tables["campaign_runs"]
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0036")
        with engine.begin() as connection:
            forms = {"version-1": first, "no-form": None, "current": kept}
            _runs_of_one_program(connection, at, dict.fromkeys(forms, source))
            for campaign, form in forms.items():
                connection.execute(
                    update(runs).where(runs.c.campaign == campaign).values(claim_form=form)
                )
        migrate.upgrade(engine, "0037")
        with engine.connect() as connection:
            forms = dict(connection.execute(select(runs.c.campaign, runs.c.claim_form)).all())
        assert forms == {"version-1": current, "no-form": None, "current": kept}

        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0036")
        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert _differences_from_models(connection) == []
    finally:
        engine.dispose()


def test_0038_indexes_the_open_call_tasks_in_due_order_and_round_trips(
    empty_database_url: str,
) -> None:
    """0038: ix_call_tasks_open_queue (run_id, kind, due_at, id) of the open and claimed tasks;
    a page of a run's tasks of one kind in due order reads it without sorting; downgrading
    drops it."""
    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"

    def index_names() -> set[str]:
        return {str(i["name"]) for i in inspect(engine).get_indexes("call_tasks")}

    def queue_index() -> dict[str, Any] | None:
        return next(
            (
                dict(i)
                for i in inspect(engine).get_indexes("call_tasks")
                if i["name"] == "ix_call_tasks_open_queue"
            ),
            None,
        )

    try:
        migrate.upgrade(engine, "0037")
        assert queue_index() is None
        migrate.upgrade(engine, "0038")
        index = queue_index()
        assert index is not None
        # It replaces 0014's index of the same rows by run (its first column serves that probe).
        assert "ix_call_tasks_open_by_run" not in index_names()
        assert index["column_names"] == ["run_id", "kind", "due_at", "id"]
        where = str(
            index.get("dialect_options", {}).get("sqlite_where" if sqlite else "postgresql_where")
        )
        assert "open" in where and "claimed" in where
        page = (
            "SELECT id FROM call_tasks WHERE run_id = 1 AND kind = 'campaign'"
            " AND status IN ('open', 'claimed') ORDER BY due_at, id LIMIT 10"
        )
        with engine.begin() as c:
            if sqlite:
                plan = " ".join(
                    str(row[3]) for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {page}")
                )
            else:
                c.exec_driver_sql("SET LOCAL enable_seqscan = off")
                c.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
                plan = " ".join(str(row[0]) for row in c.exec_driver_sql(f"EXPLAIN {page}"))
        assert "ix_call_tasks_open_queue" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # read in its order

        command.downgrade(migrate.alembic_config(engine), "0037")
        assert queue_index() is None
        assert "ix_call_tasks_open_by_run" in index_names()
        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert _differences_from_models(connection) == []
    finally:
        engine.dispose()


def _runs_of_one_program(connection: Any, at: datetime, sources: dict[str, str]) -> None:
    """A program and one active run of each campaign in ``sources`` (its definition text),
    inserted as plain rows (the schema of the revision the test stands at)."""
    program_id = connection.execute(
        text(
            "INSERT INTO programs (key, name, timezone, region, created_at)"
            " VALUES ('loyalty', 'L', 'UTC', 'US', :at) RETURNING id"
        ),
        {"at": at},
    ).scalar_one()
    for campaign, source in sources.items():
        connection.execute(
            text(
                "INSERT INTO campaign_runs (campaign, program_id, definition_hash,"
                " definition_source, fire_key, status, launched_at, enrolled_count,"
                " holdout_count) VALUES (:campaign, :program, 'h', :source, 'once',"
                " 'active', :at, 0, 0)"
            ),
            {"campaign": campaign, "program": program_id, "source": source, "at": at},
        )


def _differences_from_models(connection: Any) -> list[Any]:
    """What Alembic's autogenerate finds between the database's schema and the models
    (column types compared too): empty when migrations and models agree."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))

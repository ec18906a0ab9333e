"""0014: the partial indexes of a run's remaining work, and runs marked completed by older
versions while they still had work are active again."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from engine.db import migrate
from engine.db.models import Base, CallTask, CampaignRun, Enrollment
from engine.db.session import make_engine
from engine.run_work import has_work
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _task(session: Session, run: CampaignRun, participant_id: int, **fields: object) -> None:
    values: dict[str, object] = {
        "kind": "campaign",
        "run_id": run.id,
        "participant_id": participant_id,
        "campaign": run.campaign,
        "status": "open",
        "due_at": AT,
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(fields)
    session.add(CallTask(**values))


def test_0014_reopens_completed_runs_with_work_left(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        # The rows are made with today's models, then the schema is taken back to 0013 (the
        # later migrations drop their columns, the rows stay) so that 0014 meets them.
        migrate.upgrade(engine)
        with Session(engine) as s, s.begin():
            program = make_program(s, at=AT)
            member = make_participant(s, program, at=AT)
            queued = make_run(s, program, at=AT, campaign="queued", status="completed")
            make_outbox_message(s, queued, member, at=AT)
            calls = make_run(s, program, at=AT, campaign="calls", status="completed")
            _task(s, calls, member.id)
            done = make_run(s, program, at=AT, campaign="done", status="completed")
            make_outbox_message(s, done, member, at=AT, status="sent")
            replied = make_run(s, program, at=AT, campaign="replied", status="completed")
            _task(s, replied, member.id, kind="follow_up")  # a member's SMS reply
            s.execute(update(Enrollment).values(state="completed"))
            ids = {r.campaign: r.id for r in (queued, calls, done, replied)}
        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0013")
        migrate.upgrade(engine)
        with Session(engine) as s:
            status = dict(s.execute(select(CampaignRun.campaign, CampaignRun.status)).all())
            still = set(s.scalars(select(CampaignRun.id).where(has_work(engine.dialect.name))))
        assert status == {
            "queued": "active",
            "calls": "active",
            "done": "completed",
            "replied": "completed",
        }
        assert still == {ids["queued"], ids["calls"]}
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            if engine.dialect.name == "sqlite":
                # The completion check is one probe of each partial index per run.
                query = select(CampaignRun.id).where(has_work(engine.dialect.name))
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                plan = " ".join(
                    str(row[-1]) for row in connection.execute(text("EXPLAIN QUERY PLAN " + sql))
                )
                for index in (
                    "ix_enrollments_open_by_run",
                    "ix_outbox_messages_run_id_status",
                    "ix_call_tasks_open_queue",  # 0038's, which replaced 0014's
                ):
                    assert index in plan, plan
    finally:
        engine.dispose()

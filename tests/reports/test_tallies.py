"""The outbox tallies the campaign report reads: the triggers follow every outbox change, folding
keeps the sums, and the migration counts an outbox that existed before it (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from report_helpers import enroll, make_run, members, message
from sqlalchemy import Connection, case, delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from engine.app import App
from engine.db import migrate
from engine.db.models import OutboxMessage, OutboxTally, Participant
from engine.db.session import make_engine, make_session_factory
from engine.reports.tallies import fold_tallies, read_tallies
from engine.testing.fakes import make_program
from engine.tick import fold_outbox_tallies

T0 = datetime(2026, 1, 10, 14, 0, tzinfo=UTC)
H = timedelta(hours=1)

Counts = dict[tuple[str, str, str | None, str, str | None], tuple[int, int, int]]


def tallied(session: Session, run_id: int) -> Counts:
    return {
        (t.step, t.channel, t.variant, t.status, t.reason): (t.messages, t.opened, t.clicked)
        for t in read_tallies(session, [run_id])
    }


def counted(session: Session, run_id: int) -> Counts:
    """The same figures counted from the outbox rows themselves."""
    o = OutboxMessage
    reason = case((o.status == "skipped", o.status_reason))
    key = (o.step_id, o.channel, o.variant, o.status, reason)
    rows = session.execute(
        select(*key, func.count(), func.count(o.opened_at), func.count(o.clicked_at))
        .where(o.run_id == run_id)
        .group_by(*key)
    ).all()
    return {tuple(r[:5]): (int(r[5]), int(r[6]), int(r[7])) for r in rows}  # type: ignore[misc]


def build(session: Session) -> tuple[int, list[int]]:
    program = make_program(session, at=T0)
    run = make_run(session, program, at=T0)
    people = members(session, program, 6, at=T0)
    enrollments = [enroll(session, run, p) for p in people]
    ids = [
        message(session, enrollments[0], variant="a", status="queued", at=T0).id,
        message(session, enrollments[1], variant="b", status="delivered", at=T0, opened=True).id,
        message(session, enrollments[2], variant="a", status="skipped", at=T0,
                status_reason="suppressed").id,
        message(session, enrollments[3], variant="b", status="sent", at=T0).id,
        message(session, enrollments[4], step="sms-1", channel="sms", status="queued", at=T0).id,
        message(session, enrollments[5], step="sms-1", channel="sms", status="queued", at=T0).id,
    ]  # fmt: skip
    return run.id, ids


def test_tallies_follow_every_outbox_change(app: App) -> None:
    with app.sessions() as session, session.begin():
        run_id, ids = build(session)
    with app.sessions() as session:
        assert tallied(session, run_id) == {
            ("email-1", "email", "a", "queued", None): (1, 0, 0),
            ("email-1", "email", "b", "delivered", None): (1, 1, 0),
            ("email-1", "email", "a", "skipped", "suppressed"): (1, 0, 0),
            ("email-1", "email", "b", "sent", None): (1, 0, 0),
            ("sms-1", "sms", None, "queued", None): (2, 0, 0),
        }
    o = OutboxMessage
    with app.sessions() as session, session.begin():
        # through the ORM: sent, then delivered and opened and clicked in one update
        row = session.get(o, ids[0])
        assert row is not None
        row.status = "sent"
        session.flush()
        row.status, row.opened_at, row.clicked_at = "delivered", T0 + H, T0 + 2 * H
        # a bulk UPDATE in SQL, as the suppression sweep does: both queued SMS skipped
        session.execute(
            update(o)
            .where(o.step_id == "sms-1", o.status == "queued")
            .values(status="skipped", status_reason="no_consent")
        )
        # a skip reason rewritten; an open arriving for a sent message
        session.execute(update(o).where(o.id == ids[2]).values(status_reason="converted"))
        session.execute(update(o).where(o.id == ids[3]).values(opened_at=T0 + H))
    with app.sessions() as session, session.begin():
        # deleted: one message directly, one through its participant (ON DELETE CASCADE)
        session.execute(delete(o).where(o.id == ids[1]))
        session.execute(
            delete(Participant).where(
                Participant.id == select(o.participant_id).where(o.id == ids[4]).scalar_subquery()
            )
        )
    with app.sessions() as session:
        expected = {
            ("email-1", "email", "a", "delivered", None): (1, 1, 1),
            ("email-1", "email", "a", "skipped", "converted"): (1, 0, 0),
            ("email-1", "email", "b", "sent", None): (1, 1, 0),
            ("sms-1", "sms", None, "skipped", "no_consent"): (1, 0, 0),
        }
        assert counted(session, run_id) == expected
        assert tallied(session, run_id) == expected


def test_changes_that_move_no_count_add_no_rows(app: App) -> None:
    with app.sessions() as session, session.begin():
        _, ids = build(session)
    with app.sessions() as session, session.begin():
        before = session.scalar(select(func.count()).select_from(OutboxTally))
        # a dispatcher's lease and attempts, and a status written again unchanged
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(claimed_by="w1", attempts=OutboxMessage.attempts + 1)
        )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == ids[1])
            .values(status="delivered", opened_at=T0 + 3 * H)  # opened already: moves nothing
        )
        assert session.scalar(select(func.count()).select_from(OutboxTally)) == before


def test_folding_keeps_the_sums_and_shrinks_the_rows(app: App) -> None:
    with app.sessions() as session, session.begin():
        run_id, ids = build(session)
    o = OutboxMessage
    with app.sessions() as session, session.begin():
        for status in ("sending", "sent", "delivered"):
            session.execute(update(o).where(o.id == ids[0]).values(status=status))
        # a key that adds up to nothing once folded: a message created and deleted
        session.execute(delete(o).where(o.id == ids[5]))
        session.execute(delete(o).where(o.id == ids[4]))
    with app.sessions() as session:
        expected = counted(session, run_id)
        assert tallied(session, run_id) == expected
        rows = session.scalar(select(func.count()).select_from(OutboxTally))
    # 6 inserts + 3 updates x 2 + 2 deletes
    assert rows == 14
    assert fold_outbox_tallies(app) == 14 - len(expected)
    with app.sessions() as session, session.begin():
        assert tallied(session, run_id) == expected
        assert session.scalar(select(func.count()).select_from(OutboxTally)) == len(expected)
        assert set(session.scalars(select(OutboxTally.state)).all()) == {1}
        assert fold_tallies(session) == 0  # nothing new: nothing to fold
        # changes after a fold are summed with the folded rows, and folded again
        session.execute(update(o).where(o.id == ids[3]).values(status="bounced"))
        assert tallied(session, run_id) == counted(session, run_id)
        assert fold_tallies(session) == 2  # sent 1 + (-1) -> gone; bounced +1 joins nothing
        assert tallied(session, run_id) == counted(session, run_id)


def test_upgrade_counts_the_outbox_that_exists(database_url: str) -> None:
    """0005 counts what the outbox holds when it runs (a database upgraded with messages)."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session, session.begin():
            run_id, _ = build(session)
        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
        with engine.begin() as connection:
            assert "outbox_tallies" not in _tables(connection)
            connection.execute(
                text("UPDATE outbox_messages SET opened_at = sent_at WHERE status = 'sent'")
            )
        migrate.upgrade(engine)
        with sessions() as session:
            expected = counted(session, run_id)
            assert expected[("email-1", "email", "b", "sent", None)] == (1, 1, 0)
            assert tallied(session, run_id) == expected
    finally:
        engine.dispose()


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())

"""Launch: one run per one-off campaign or cron fire time, enrollments in SQL, idempotent and
safe under concurrency; launch_due for the scheduler's tick."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from engine import planning
from engine.app import App, build_app
from engine.db.models import CampaignRun, Enrollment, Program
from engine.errors import InputError, NotFoundError
from engine.testing.fakes import make_participant

from .helpers import TEST_NOW, definition, insert_members, unit

DAY = timedelta(days=1)


def _enrollment_counts(app: App) -> tuple[int, int]:
    """(enrollments, distinct participants enrolled)."""
    with unit(app) as s:
        total = s.scalar(select(func.count()).select_from(Enrollment)) or 0
        distinct = s.scalar(select(func.count(func.distinct(Enrollment.participant_id)))) or 0
        return int(total), int(distinct)


def test_launch_creates_a_run_and_enrollments(app: App, program: Program) -> None:
    insert_members(app, program, 200)
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="out", status="closed")
    loaded = definition(holdout_percent=20)
    with unit(app) as s:
        result = planning.launch(s, loaded, at=TEST_NOW)
    assert result.created and result.enrolled == 200
    assert result.treatment + result.holdout == 200 and 20 <= result.holdout <= 60
    with unit(app) as s:
        run = s.get(CampaignRun, result.run_id)
        assert run is not None
        assert (run.status, run.fire_key, run.launched_at) == ("active", "once", TEST_NOW)
        assert run.definition_source == loaded.source
        assert run.definition_hash == loaded.content_hash
        assert (run.enrolled_count, run.holdout_count) == (200, result.holdout)
        rows = s.execute(
            select(Enrollment.group, Enrollment.state, Enrollment.next_action_at)
        ).all()
    assert {state for _, state, _ in rows} == {"active"}
    # Treatment starts now; the holdout is never contacted.
    assert {n for g, _, n in rows if g == "treatment"} == {TEST_NOW}
    assert {n for g, _, n in rows if g == "holdout"} == {None}


def test_the_launch_sentence_writes_counts_with_thousands_separators(
    app: App, program: Program
) -> None:
    insert_members(app, program, 1_234)
    with unit(app) as s:
        result = planning.launch(s, definition(holdout_percent=0), at=TEST_NOW)
    assert result.message == (
        f"Launched run {result.run_id} of {result.campaign}: 1,234 enrolled "
        "(1,234 treatment, 0 holdout)."
    )


def test_launching_twice_makes_one_run(app: App, program: Program) -> None:
    insert_members(app, program, 50)
    loaded = definition()
    with unit(app) as s:
        first = planning.launch(s, loaded, at=TEST_NOW)
    with unit(app) as s:
        second = planning.launch(s, loaded, at=TEST_NOW + DAY)
    assert first.created and not second.created
    assert second.run_id == first.run_id and second.enrolled == 50
    assert "already launched" in second.message
    with unit(app) as s:
        assert s.scalar(select(func.count()).select_from(CampaignRun)) == 1
    assert _enrollment_counts(app) == (50, 50)
    with unit(app) as s:
        report = planning.plan(s, loaded, at=TEST_NOW + DAY)
    assert report.existing_run_id == first.run_id and report.eligible == 0
    assert report.note is not None and "already launched" in report.note


def _race(app: App, jobs: list[tuple[Any, datetime]]) -> list[Any]:
    """Run each (definition, at) launch in its own thread, app and session, all at once."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = []
    errors: list[BaseException] = []
    apps = [build_app(app.settings, clock=app.clock) for _ in jobs]

    def worker(own: App, loaded: Any, at: datetime) -> None:
        try:
            barrier.wait()
            with own.sessions() as s, s.begin():
                results.append(planning.launch(s, loaded, at=at))
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(own, loaded, at))
        for own, (loaded, at) in zip(apps, jobs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for own in apps:
        own.close()
    assert not errors, errors
    return results


def test_concurrent_launches_enroll_nobody_twice(app: App, program: Program) -> None:
    insert_members(app, program, 500)
    loaded = definition(holdout_percent=10)
    results = _race(app, [(loaded, TEST_NOW)] * 4)
    assert sorted(r.created for r in results) == [False, False, False, True]
    assert len({r.run_id for r in results}) == 1
    assert _enrollment_counts(app) == (500, 500)


def test_concurrent_fire_times_respect_reentry(app: App, program: Program) -> None:
    """Two cron jobs launching different fire times at once: the advisory lock (PostgreSQL)
    or the write lock (SQLite) makes the second see the first's enrollments."""
    insert_members(app, program, 300)
    loaded = definition(name="weekly", schedule=WEEKLY, reentry="once")
    results = _race(app, [(loaded, TEST_NOW), (loaded, TEST_NOW + 7 * DAY)])
    assert all(r.created for r in results)
    assert sorted(r.enrolled for r in results) == [0, 300]
    assert _enrollment_counts(app) == (300, 300)


def test_a_future_start_is_refused_with_the_time(app: App, program: Program) -> None:
    start = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    loaded = definition(schedule={"start": start.isoformat()})
    expected = r"scheduled to start at 2026-03-05T10:00:00\+00:00 \(in 2d 19h\)"
    with unit(app) as s, pytest.raises(InputError, match=expected):
        planning.launch(s, loaded, at=TEST_NOW)
    with unit(app) as s:
        assert planning.launch(s, loaded, at=start).created


def test_an_unknown_program_is_refused(app: App, program: Program) -> None:
    with unit(app) as s, pytest.raises(NotFoundError, match="no program 'elsewhere'"):
        planning.launch(s, definition(program="elsewhere"), at=TEST_NOW)


WEEKLY = {"cron": "0 9 * * MON", "timezone": "America/New_York"}


def test_latest_fire_time_is_in_the_schedule_zone() -> None:
    loaded = definition(schedule=WEEKLY)
    # TEST_NOW is Monday 2026-03-02 15:00 UTC = 10:00 in New York (EST, UTC-5).
    assert planning.latest_fire_time(loaded.definition, TEST_NOW) == datetime(
        2026, 3, 2, 14, 0, tzinfo=UTC
    )
    assert planning.latest_fire_time(loaded.definition, TEST_NOW - timedelta(hours=2)) == (
        datetime(2026, 2, 23, 14, 0, tzinfo=UTC)
    )
    # After the DST change (2026-03-08) 09:00 New York is 13:00 UTC.
    assert planning.latest_fire_time(loaded.definition, TEST_NOW + 7 * DAY) == datetime(
        2026, 3, 9, 13, 0, tzinfo=UTC
    )
    yearly = definition(schedule={"cron": "0 0 1 1 *", "timezone": "UTC"})
    assert planning.latest_fire_time(yearly.definition, TEST_NOW) == datetime(
        2026, 1, 1, tzinfo=UTC
    )


def test_recurring_runs_one_per_fire_time_with_reentry(app: App, program: Program) -> None:
    with unit(app) as s:
        first = make_participant(s, program, at=TEST_NOW, external_id="first")
    once = definition(name="weekly-once", schedule=WEEKLY, reentry="once")
    gap = definition(name="weekly-gap", schedule=WEEKLY, reentry={"after": "10d"})
    for loaded in (once, gap):
        with unit(app) as s:
            a = planning.launch(s, loaded, at=TEST_NOW)
        with unit(app) as s:
            same_fire = planning.launch(s, loaded, at=TEST_NOW + timedelta(hours=3))
        assert a.created and a.enrolled == 1 and a.fire_key == "2026-03-02T14:00:00+00:00"
        assert not same_fire.created and same_fire.run_id == a.run_id
    with unit(app) as s:
        s.add(make_participant(s, program, at=TEST_NOW, external_id="second"))
        # The first run's enrollment is finished, so only the re-entry rule applies next week.
        s.execute(
            Enrollment.__table__.update()
            .where(Enrollment.participant_id == first.id)
            .values(state="completed")
        )
    for loaded, enrolled_next_week, enrolled_in_two in ((once, 1, 0), (gap, 1, 1)):
        with unit(app) as s:
            week2 = planning.launch(s, loaded, at=TEST_NOW + 7 * DAY)
        assert week2.created and week2.fire_key == "2026-03-09T13:00:00+00:00"
        assert week2.enrolled == enrolled_next_week  # "second" only: "first" was 7d ago
        with unit(app) as s:
            s.execute(
                Enrollment.__table__.update()
                .where(Enrollment.campaign == loaded.name)
                .values(state="completed")
            )
        with unit(app) as s:
            week3 = planning.launch(s, loaded, at=TEST_NOW + 14 * DAY)
        # once: nobody ever again; after 10d: "first" (14d ago) re-enters, "second" (7d) not.
        assert week3.enrolled == enrolled_in_two


def test_an_open_enrollment_blocks_the_next_fire_time(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW)
    loaded = definition(name="weekly-gap", schedule=WEEKLY, reentry={"after": "1d"})
    with unit(app) as s:
        assert planning.launch(s, loaded, at=TEST_NOW).enrolled == 1
    with unit(app) as s:
        assert planning.launch(s, loaded, at=TEST_NOW + 7 * DAY).enrolled == 0


def test_launch_due_launches_what_is_due_once(app: App, program: Program) -> None:
    insert_members(app, program, 10)
    weekly = definition(name="weekly", schedule=WEEKLY)
    due = definition(name="due-now", schedule={"start": (TEST_NOW - DAY).isoformat()})
    later = definition(name="later", schedule={"start": (TEST_NOW + DAY).isoformat()})
    manual = definition(name="by-hand")
    broken = definition(name="broken", program="missing", schedule=WEEKLY)
    everything = [weekly, due, later, manual, broken]
    # The scheduler saw the weekly files before today's fire (a schedule launches from the
    # first fire after it was first seen); last week's fire is skipped as too late.
    with unit(app) as s:
        before = planning.launch_due(s, [weekly, broken], at=TEST_NOW - timedelta(hours=2))
    assert {r.campaign: r.result for r in before} == {"weekly": None, "broken": None}
    with unit(app) as s:
        results = planning.launch_due(s, everything, at=TEST_NOW)
    by_name = {r.campaign: r for r in results}
    assert set(by_name) == {"weekly", "due-now", "broken"}
    assert by_name["weekly"].result is not None and by_name["weekly"].result.enrolled == 10
    # Being in another campaign does not exclude anyone (only contacts count, for caps).
    assert by_name["due-now"].result is not None and by_name["due-now"].result.enrolled == 10
    assert by_name["broken"].error is not None and "missing" in by_name["broken"].error
    with unit(app) as s:
        again = planning.launch_due(s, everything, at=TEST_NOW + timedelta(hours=1))
    assert [r.campaign for r in again] == ["broken"]
    with unit(app) as s:
        runs = set(s.scalars(select(CampaignRun.campaign)))
    assert runs == {"weekly", "due-now"}


def test_a_campaign_without_program_needs_a_single_program(app: App, program: Program) -> None:
    insert_members(app, program, 3)
    loaded = definition(program=None)
    with unit(app) as s:
        assert planning.plan(s, loaded, at=TEST_NOW).eligible == 3
    with unit(app) as s:
        from engine.testing.fakes import make_program

        make_program(s, at=TEST_NOW, key="second")
    with unit(app) as s, pytest.raises(InputError, match="names no program and there are several"):
        planning.launch(s, loaded, at=TEST_NOW)

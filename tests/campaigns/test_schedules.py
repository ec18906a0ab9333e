"""Schedules over months (both databases): missed fires past the misfire grace are skipped and
said so (tick, daemon, `runs skipped`); a new schedule starts from its next fire; the US
fall-back day fires once; re-entry counts fires, not launch instants; a weekly campaign over
14 fires across a DST change makes one run per fire and never converts one event twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from click.testing import CliRunner
from sqlalchemy import select, update

from cli import cli
from engine import planning
from engine.app import App
from engine.clock import FrozenClock
from engine.conversions import match_conversions
from engine.db.models import CampaignRun, Conversion, Enrollment, Participant, Program
from engine.fire_times import LocalCron
from engine.reports.campaign import campaign_report
from engine.scheduler import Daemon
from engine.schedules import list_skipped
from engine.testing.fakes import PROGRAM_SENDER, make_event, make_participant
from engine.tick import launch_scheduled, tick

from .helpers import definition, unit

NEW_YORK = ZoneInfo("America/New_York")
WEEKLY = {"cron": "0 9 * * MON", "timezone": "America/New_York"}
HOUR = timedelta(hours=1)


def _runs(app: App, campaign: str) -> list[CampaignRun]:
    with unit(app) as s:
        return list(
            s.scalars(
                select(CampaignRun).where(CampaignRun.campaign == campaign).order_by(CampaignRun.id)
            )
        )


def test_a_yearly_campaign_added_in_june_waits_for_next_new_year(
    app: App, program: Program
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 6, 1, tzinfo=UTC))
    loaded = definition(name="new-year", schedule={"cron": "0 9 1 1 *", "timezone": "UTC"})
    june = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
    with unit(app) as s:
        [result] = planning.launch_due(s, [loaded], at=june)
    assert result.result is None
    assert (
        result.skipped == "skipped fire 2026-01-01 09:00 UTC of new-year: 165 days late, grace 1h"
    )
    with unit(app) as s:  # reported once, not at every tick
        assert planning.launch_due(s, [loaded], at=june + timedelta(minutes=1)) == []
        [row] = list_skipped(s)
    assert (row.campaign, row.fire_key) == ("new-year", "2026-01-01T09:00:00+00:00")
    assert _runs(app, "new-year") == []
    new_year = datetime(2027, 1, 1, 9, 0, 30, tzinfo=UTC)
    with unit(app) as s:
        [launched] = planning.launch_due(s, [loaded], at=new_year)
    assert launched.result is not None and launched.result.enrolled == 1
    assert launched.result.fire_key == "2027-01-01T09:00:00+00:00"


def test_a_new_weekly_campaign_starts_from_its_next_monday(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 3, 1, tzinfo=UTC))
    loaded = definition(name="weekly", schedule=WEEKLY)
    tuesday = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
    with unit(app) as s:
        [result] = planning.launch_due(s, [loaded], at=tuesday)
    assert result.skipped is not None and "2026-03-02 09:00 EST" in result.skipped
    assert "25 h late" in result.skipped and _runs(app, "weekly") == []
    monday = datetime(2026, 3, 9, 13, 0, 5, tzinfo=UTC)  # 09:00:05 EDT
    with unit(app) as s:
        [launched] = planning.launch_due(s, [loaded], at=monday)
    assert launched.result is not None and launched.result.created


def test_a_schedule_first_seen_after_its_fire_waits_even_within_the_grace(
    app: App, program: Program
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 3, 1, tzinfo=UTC))
    fire = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    original = definition(name="weekly", schedule=WEEKLY)
    with unit(app) as s:
        planning.launch_due(s, [original], at=fire - HOUR)  # seen before the fire
    # Edited to 09:00 every weekday at 09:20: its 09:00 fire predates the new schedule.
    edited = definition(name="weekly", schedule={**WEEKLY, "cron": "0 9 * * MON-FRI"})
    with unit(app) as s:
        [result] = planning.launch_due(s, [edited], at=fire + timedelta(minutes=20))
    assert result.skipped is not None and "first seen" in result.skipped
    # The unedited schedule was known before its fire: 30 minutes late is within the grace.
    with unit(app) as s:
        [launched] = planning.launch_due(s, [original], at=fire + timedelta(minutes=30))
    assert launched.result is not None and launched.result.created


def _campaign_dir(tmp_path: Path, **fields: Any) -> Path:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    data = {
        "name": "weekly",
        "program": "loyalty",
        "audience": {"field": "status", "eq": "active"},
        "holdout_percent": 0,
        "goal": {"events": ["redemption"], "window": "30d"},
        "schedule": WEEKLY,
        "steps": [{"id": "email-1", "channel": "email", "template": "points_expiring"}],
        **fields,
    }
    (folder / "weekly.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def _app_at(app: App, tmp_path: Path, clock: FrozenClock, grace_seconds: int) -> App:
    settings = app.settings.model_copy(
        update={
            "campaigns_dir": _campaign_dir(tmp_path),
            "scheduler_misfire_grace_seconds": grace_seconds,
            "outbox_dir": tmp_path / "outbox",
            **PROGRAM_SENDER,
        }
    )
    return App(settings=settings, engine=app.engine, sessions=app.sessions, clock=clock)


def test_the_tick_applies_the_misfire_grace_setting_and_says_so(
    app: App, program: Program, tmp_path: Path
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 3, 1, tzinfo=UTC))
    fire = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    clock = FrozenClock(fire - HOUR)
    ticking = _app_at(app, tmp_path, clock, grace_seconds=120)
    tick(ticking, budget_seconds=20)  # the tick sees the schedule before its fire
    clock.set(fire + timedelta(minutes=5))
    summary = tick(ticking, budget_seconds=20)
    assert [item.skipped for item in summary.launched] == [
        "skipped fire 2026-03-09 09:00 EDT of weekly: 5 min late, grace 2m"
    ]
    assert "skipped fire 2026-03-09 09:00 EDT of weekly: 5 min late" in summary.message
    assert _runs(app, "weekly") == []
    # The next week's tick one minute after the fire is within the grace.
    clock.set(fire + timedelta(days=7, minutes=1))
    assert [(i.campaign, i.enrolled) for i in tick(ticking, budget_seconds=20).launched] == [
        ("weekly", 1)
    ]


def test_the_daemon_launch_job_obeys_the_grace_too(
    app: App, program: Program, tmp_path: Path
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 3, 1, tzinfo=UTC))
    fire = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    clock = FrozenClock(fire - HOUR)
    daemon_app = _app_at(app, tmp_path, clock, grace_seconds=3600)
    daemon = Daemon(daemon_app)
    definitions = [definition(name="weekly", schedule=WEEKLY)]
    assert (
        launch_scheduled(daemon_app, definitions, at=clock.now()) != []
    )  # seen; last week skipped
    clock.set(fire + 2 * HOUR)  # the job runs two hours late (a stalled process)
    daemon._launch("weekly")
    assert daemon.summary.launched == [] and len(daemon.summary.skipped) == 1
    assert "2 h late, grace 1h" in daemon.summary.skipped[0]
    assert _runs(app, "weekly") == []


def test_runs_skipped_and_the_runs_list_note(app: App, program: Program) -> None:
    loaded = definition(name="new-year", schedule={"cron": "0 9 1 1 *", "timezone": "UTC"})
    with unit(app) as s:
        planning.launch_due(s, [loaded], at=datetime(2026, 6, 15, 9, 0, tzinfo=UTC))
    url = app.settings.database_url
    result = CliRunner().invoke(cli, ["--database-url", url, "runs", "skipped"])
    assert result.exit_code == 0, result.output
    assert "new-year" in result.output and "165 days late, grace 1h" in result.output
    result = CliRunner().invoke(cli, ["--database-url", url, "runs", "skipped", "--json"])
    assert '"fire_key": "2026-01-01T09:00:00+00:00"' in result.output
    result = CliRunner().invoke(cli, ["--database-url", url, "runs", "list"])
    assert result.exit_code == 0, result.output
    assert "1 fire time(s) not launched: see `campaign runs skipped`" in result.output


def test_the_fall_back_day_launches_a_daily_half_past_one_once(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 10, 1, tzinfo=UTC))
    loaded = definition(
        name="daily",
        schedule={"cron": "30 1 * * *", "timezone": "America/New_York"},
        reentry={"after": "1d"},
    )
    at = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    while at < datetime(2026, 11, 2, 12, 0, tzinfo=UTC):  # a tick every 10 minutes
        with unit(app) as s:
            planning.launch_due(s, [loaded], at=at)
        at += timedelta(minutes=10)
    runs = _runs(app, "daily")
    assert [r.fire_key for r in runs] == [
        "2026-11-01T05:30:00+00:00",  # 01:30 EDT; the second 01:30 (EST) does not fire
        "2026-11-02T06:30:00+00:00",
    ]


def test_reentry_ignores_sub_second_launch_jitter(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 1, 1, tzinfo=UTC))
    loaded = definition(name="fortnight", schedule=WEEKLY, reentry={"after": "14d"})
    first = datetime(2026, 1, 5, 14, 0, 2, 30000, tzinfo=UTC)  # 09:00:02.03 EST
    with unit(app) as s:
        assert planning.launch(s, loaded, at=first).enrolled == 1
        s.execute(update(Enrollment).values(state="completed"))
    later = datetime(2026, 1, 19, 14, 0, 1, 450000, tzinfo=UTC)  # 09:00:01.45, two weeks on
    with unit(app) as s:
        assert planning.launch(s, loaded, at=later).enrolled == 1


def test_a_weekly_campaign_over_fourteen_fires_across_dst(app: App, program: Program) -> None:
    """Weekly on Monday 09:00 New York, re-entry after 14 days, a 30-day goal window, launched
    by the tick a second or two after each fire, from February to May (DST on 8 March)."""
    start = datetime(2026, 2, 1, 17, 0, tzinfo=UTC)  # the Sunday the file appears
    with unit(app) as s:
        evens = [make_participant(s, program, at=start) for _ in range(3)]
        odds = [make_participant(s, program, at=start, status="inactive") for _ in range(3)]
        redeemer = make_participant(s, program, at=start)
    loaded = definition(
        name="weekly",
        schedule=WEEKLY,
        reentry={"after": "14d"},
        goal={"events": ["redemption"], "window": "30d"},
    )
    fires = []
    for fire in LocalCron("0 9 * * MON", "America/New_York").fires_from(start):
        if len(fires) == 14:
            break
        fires.append(fire)
    # The redeemer's one redemption lies in the windows of the week-0 and week-2 runs.
    with unit(app) as s:
        redemption = make_event(
            s,
            redeemer,
            type="redemption",
            occurred_at=fires[2] + timedelta(days=1),
            points=-1000,
            amount=Decimal("25.00"),
        )
    with unit(app) as s:
        planning.launch_due(s, [loaded], at=start)
    jitter = [2.03, 0.5, 1.45, 3.0]
    for week, fire in enumerate(fires):
        if week == 1:
            with unit(app) as s:
                ids = [p.id for p in odds]
                s.execute(
                    update(Participant).where(Participant.id.in_(ids)).values(status="active")
                )
        at = fire + timedelta(seconds=jitter[week % 4])
        with unit(app) as s:
            results = planning.launch_due(s, [loaded], at=at)
        assert [r.result.created for r in results if r.result] == [True], (week, results)
        with unit(app) as s:  # each run's short sequence is over before the next fire
            s.execute(
                update(Enrollment).where(Enrollment.state == "active").values(state="completed")
            )
        with unit(app) as s:
            match_conversions(s, at=fire + timedelta(days=3))

    runs = _runs(app, "weekly")
    assert [r.fire_key for r in runs] == [f.isoformat() for f in fires]
    assert {(f.astimezone(NEW_YORK).hour, f.astimezone(NEW_YORK).weekday()) for f in fires} == {
        (9, 0)
    }
    fire_of = {r.id: datetime.fromisoformat(r.fire_key) for r in runs}
    with unit(app) as s:
        enrolled = s.execute(select(Enrollment.participant_id, Enrollment.run_id)).all()
    weeks: dict[int, list[int]] = {}
    for participant_id, run_id in enrolled:
        weeks.setdefault(participant_id, []).append(fires.index(fire_of[run_id]))
    for member in evens:
        assert sorted(weeks[member.id]) == list(range(0, 14, 2))  # every 14 days, on the day
    for member in odds:
        assert sorted(weeks[member.id]) == list(range(1, 14, 2))
    # Converted on day 15: kept out for the 30-day goal window, back in week 7.
    assert sorted(weeks[redeemer.id]) == [0, 2, 7, 9, 11, 13]

    with unit(app) as s:
        conversions = s.scalars(select(Conversion)).all()
        report = campaign_report(s, "weekly")
        week2 = s.scalar(
            select(Enrollment.id)
            .join(CampaignRun, CampaignRun.id == Enrollment.run_id)
            .where(
                Enrollment.participant_id == redeemer.id,
                CampaignRun.fire_key == fires[2].isoformat(),
            )
        )
    assert [(c.enrollment_id, c.event_id) for c in conversions] == [(week2, redemption.id)]
    assert report.conversions == 1
    assert report.groups["treatment"].points == -1000
    assert report.groups["treatment"].amount == Decimal("25.00")


def test_a_schedule_with_runs_from_before_the_upgrade_counts_as_seen(
    app: App, program: Program
) -> None:
    """A database from before campaign_schedules: the runs that the same schedule launched
    tell when it was first seen, so the first fire after the upgrade launches."""
    with unit(app) as s:
        make_participant(s, program, at=datetime(2026, 3, 1, tzinfo=UTC))
    loaded = definition(name="weekly", schedule=WEEKLY, reentry={"after": "7d"})
    with unit(app) as s:
        planning.launch(s, loaded, at=datetime(2026, 3, 2, 14, 0, 3, tzinfo=UTC))
        s.execute(update(Enrollment).values(state="completed"))
    fire = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    with unit(app) as s:  # the upgrade landed between the fire and this tick
        [result] = planning.launch_due(s, [loaded], at=fire + timedelta(minutes=10))
    assert result.result is not None and result.result.enrolled == 1

"""The demo end to end: generator -> importer -> database -> report, and `campaign demo`."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from cli import cli
from engine.app import App
from engine.calls.demo import AGENTS as DEMO_AGENTS
from engine.clock import FrozenClock
from engine.db.models import (
    ActivityEvent,
    CallTask,
    CampaignRun,
    Consent,
    Enrollment,
    Participant,
)
from engine.db.session import make_engine
from engine.demo.generator import BAD_ROW_KINDS, generate_dataset
from engine.demo.run import STEPS, STORY_LENGTH, DemoContext, DemoStep, run_demo, story_start
from engine.errors import InputError
from engine.participants.events import import_events
from engine.participants.importer import import_participants
from engine.testing.fakes import make_program

REPO_CAMPAIGNS = Path(__file__).resolve().parents[2] / "campaigns"


def rejected_lines(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {int(row["line"]): row["reasons"] for row in csv.DictReader(handle)}


def test_the_importer_rejects_every_planted_bad_row_and_nothing_else(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    now = clock.now()
    with app.sessions() as session, session.begin():
        make_program(session, at=now, key="demo", timezone="America/New_York", region="US")
    # A high rate so that every kind of defect is planted in a small file.
    dataset = generate_dataset(tmp_path, participants=400, bad_row_rate=0.15, seed=5, now=now)
    assert set(dataset.bad_rows) == set(BAD_ROW_KINDS)

    rejects = tmp_path / "participants.rejects.csv"
    summary = import_participants(
        app, dataset.paths.participants, program_key="demo", rejects_path=rejects, at=now
    )
    assert summary.read == 400
    assert summary.rejected == len(dataset.bad_lines)
    assert summary.inserted == 400 - len(dataset.bad_lines)
    assert set(rejected_lines(rejects)) == set(dataset.bad_lines)

    events = import_events(
        app,
        dataset.paths.events,
        program_key="demo",
        rejects_path=tmp_path / "events.rejects.csv",
        at=now,
    )
    assert (events.read, events.inserted, events.rejected) == (dataset.events, dataset.events, 0)

    with app.sessions() as session:
        # No event before its member enrolled.
        early = session.scalar(
            select(func.count())
            .select_from(ActivityEvent)
            .join(Participant, Participant.id == ActivityEvent.participant_id)
            .where(ActivityEvent.occurred_at < Participant.enrolled_at)
        )
        assert early == 0
        # Members who never activated have no login (and no activity date).
        activation = aliased(ActivityEvent)
        never = select(Participant.id).where(
            ~select(activation.id)
            .where(activation.participant_id == Participant.id, activation.type == "activation")
            .exists()
        )
        never_ids = set(session.scalars(never))
        assert never_ids
        logins = session.scalar(
            select(func.count()).where(
                ActivityEvent.participant_id.in_(never_ids), ActivityEvent.type == "login"
            )
        )
        assert logins == 0
        assert (
            session.scalar(
                select(func.count()).where(
                    Participant.id.in_(never_ids), Participant.last_activity_at.is_not(None)
                )
            )
            == 0
        )
        # Consents arrived: some opted out of SMS.
        assert session.scalar(
            select(func.count()).where(Consent.channel == "sms", Consent.status == "opted_out")
        )


def test_run_demo_builds_its_own_database_and_reports(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo must never use the configured database.
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    folder = tmp_path / "demo"
    report = run_demo(folder, participants=300, seed=3, clock=clock, campaigns_dir=REPO_CAMPAIGNS)

    assert report.database == folder / "campaign.db" and report.database.exists()
    assert report.now == story_start(clock.now())  # the story ends the day before now
    assert report.participants_import is not None and report.events_import is not None
    planted = sum(report.planted_bad_rows.values())
    assert report.participants_import.rejected == planted
    assert report.participants_import.inserted == 300 - planted
    assert report.participants_import.rejects_path == folder / "participants.rejects.csv"
    assert report.events_import.inserted == report.events_written
    summary = report.summary
    assert summary is not None
    assert summary.participants == 300 - planted
    assert sum(summary.by_status.values()) == summary.participants
    assert set(summary.by_locale) <= {"en", "es", "zh", "(blank)"}
    assert 0 < summary.never_activated < summary.participants
    assert 0 < summary.inactive_90d < summary.participants
    assert summary.consents["email"].opted_out > 0
    assert summary.samples and all(s.external_id.startswith("NW") for s in summary.samples)
    assert [t.name for t in report.steps] == [step.name for step in STEPS]
    assert report.notes == []
    assert any("participants show" in command for command in report.next_commands)

    again = run_demo(folder, participants=300, seed=3, clock=clock, campaigns_dir=REPO_CAMPAIGNS)
    assert again.notes == [f"Deleted the previous demo database {folder / 'campaign.db'}."]
    assert again.summary == summary  # a fresh database: the same figures, not doubled


def test_the_demo_tells_the_same_story_whatever_the_time_it_is_built(tmp_path: Path) -> None:
    """The same seed makes the same demo at any hour: its story starts at a set hour of the
    program's day, not at the hour it is built. It took the build's hour: built at 00:15 UTC
    the renewals agents (ana.lee, the first one) had nothing left to call, built at 15:00 UTC
    they had follow-ups."""

    def open_call_list(hour: int, minute: int) -> list[tuple[str, str, int]]:
        clock = FrozenClock(datetime(2026, 12, 8, hour, minute, tzinfo=UTC))
        folder = tmp_path / f"demo-{hour:02}{minute:02}"
        report = run_demo(folder, participants=300, seed=7, clock=clock)
        assert report.now <= clock.now() - STORY_LENGTH + timedelta(hours=14)
        engine = make_engine(f"sqlite:///{report.database}")
        try:
            with engine.connect() as connection:
                return [
                    (kind, team, count)
                    for kind, team, count in connection.execute(
                        select(CallTask.kind, CallTask.team, func.count())
                        .where(CallTask.status == "open")
                        .group_by(CallTask.kind, CallTask.team)
                        .order_by(CallTask.kind, CallTask.team)
                    )
                ]
        finally:
            engine.dispose()

    evening = open_call_list(0, 15)
    assert evening == open_call_list(15, 0)
    assert any(team == "renewals" for _kind, team, _count in evening), evening
    # And every task left has an agent to serve it: no team of the examples without one (a
    # task of no team, an inbound reply's follow-up, is anyone's).
    served = {team for _login, _name, _role, teams, _target in DEMO_AGENTS for team in teams}
    assert {team for _kind, team, _count in evening if team is not None} <= served, evening


def test_later_steps_can_be_appended(tmp_path: Path, clock: FrozenClock) -> None:
    seen: list[str] = []

    def count_members(ctx: DemoContext) -> None:
        assert ctx.summary is not None
        ctx.extra["members"] = ctx.summary.participants

    steps = [*STEPS, DemoStep("count", "Counting", count_members)]
    report = run_demo(
        tmp_path, participants=50, clock=clock, steps=steps, on_step=lambda s: seen.append(s.name)
    )
    assert seen == [step.name for step in steps]
    assert report.summary is not None
    assert report.extra == {"members": report.summary.participants}


def test_demo_summary_counts_match_the_data(tmp_path: Path, clock: FrozenClock) -> None:
    report = run_demo(tmp_path, participants=400, seed=9, clock=clock)
    summary = report.summary
    assert summary is not None
    today = report.now.date()  # 15:00 UTC is the same day in New York
    with (tmp_path / "participants.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The rows the importer took: all but those in its rejects file (header = line 1).
    bad_lines = rejected_lines(tmp_path / "participants.rejects.csv")
    good = [row for line, row in enumerate(rows, 2) if line not in bad_lines]
    assert len(good) == summary.participants
    horizon = today + timedelta(days=30)
    expiring = [
        row
        for row in good
        if int(row["points_expiring"]) > 0
        and today.isoformat() <= row["points_expire_at"] <= horizon.isoformat()
    ]
    assert summary.points_expiring_30d == len(expiring)
    assert summary.points_expiring_30d_total == sum(int(r["points_expiring"]) for r in expiring)
    renewals = [
        row
        for row in good
        if row["status"] != "closed"
        and today.isoformat() <= row["renewal_date"] <= horizon.isoformat()
    ]
    assert summary.renewals_due_30d == len(renewals)
    cutoff = report.now - timedelta(days=90)
    stale = [
        row
        for row in good
        if row["status"] != "closed"
        and row["last_activity_at"]
        and datetime.fromisoformat(row["last_activity_at"]) < cutoff
    ]
    assert summary.inactive_90d == len(stale)
    assert summary.never_activated == sum(not row["last_activity_at"] for row in good)


def test_cli_demo(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "--participants", "300", "--folder", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Northwind Rewards" in result.output
    assert "Try next" in result.output
    assert f"sqlite:///{folder / 'campaign.db'}" in result.output
    assert "participants.rejects.csv" in result.output
    for name in ("campaign.db", "participants.csv", "events.csv", "participants.rejects.csv"):
        assert (folder / name).exists(), name
    assert "\x1b[" not in result.output  # plain text when not on a terminal

    result = runner.invoke(
        cli, ["demo", "--participants", "300", "--folder", str(folder), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["participants_import"]["read"] == 300
    assert report["summary"]["participants"] == 300 - report["participants_import"]["rejected"]
    assert report["database"] == str(folder / "campaign.db")
    assert report["notes"] == [f"Deleted the previous demo database {folder / 'campaign.db'}."]

    # The story ends before now, so the commands a newcomer tries next see its history.
    url = f"sqlite:///{folder / 'campaign.db'}"
    agents = runner.invoke(cli, ["--database-url", url, "report", "agents", "--json"])
    assert agents.exit_code == 0, agents.output
    assert sum(a["calls"] for a in json.loads(agents.output)["agents"]) > 0


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path, clock: FrozenClock) -> None:
    real = tmp_path / "work"
    real.mkdir()
    (real / "campaign.db").write_bytes(b"a real database")
    with pytest.raises(InputError, match="was not made by `campaign demo`"):
        run_demo(real, participants=10, clock=clock)
    assert (real / "campaign.db").read_bytes() == b"a real database"
    assert not (real / "participants.csv").exists()

    result = CliRunner().invoke(cli, ["demo", "--participants", "10", "--folder", str(real)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "give --folder a new or empty folder" in result.output


def test_cli_demo_refuses_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "--participants", "0", "--folder", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = runner.invoke(cli, ["demo", "--participants", "10", "--folder", str(a_file)])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_demo_launches_every_example_campaign(tmp_path: Path, clock: FrozenClock) -> None:
    report = run_demo(
        tmp_path / "demo", participants=1500, seed=5, clock=clock, campaigns_dir=REPO_CAMPAIGNS
    )
    expected = sorted(path.stem for path in REPO_CAMPAIGNS.glob("*.yaml"))
    assert sorted(c.campaign for c in report.campaigns) == expected
    engine = make_engine(report.database_url)
    try:
        with engine.connect() as connection:
            for figures in report.campaigns:
                assert figures.run_id is not None, figures.note
                # The figures add up: audience = excluded + eligible = excluded + both groups.
                excluded = sum(e.count for e in figures.exclusions)
                assert figures.audience == excluded + figures.eligible
                assert figures.eligible == figures.treatment + figures.holdout
                assert figures.treatment > 0
                stored = connection.execute(
                    select(Enrollment.group, func.count())
                    .where(Enrollment.run_id == figures.run_id)
                    .group_by(Enrollment.group)
                ).all()
                assert dict(stored) == {"treatment": figures.treatment, "holdout": figures.holdout}
                run = connection.execute(
                    select(CampaignRun.campaign, CampaignRun.status).where(
                        CampaignRun.id == figures.run_id
                    )
                ).one()
                assert tuple(run) == (figures.campaign, "active")
    finally:
        engine.dispose()


def test_demo_without_a_campaigns_folder_says_so(tmp_path: Path, clock: FrozenClock) -> None:
    report = run_demo(
        tmp_path / "demo", participants=50, clock=clock, campaigns_dir=tmp_path / "none"
    )
    assert report.campaigns == []
    assert any("No campaigns folder" in note for note in report.notes)

"""`campaign scheduler` for real: a subprocess against the test database, ticking every
second, launches a cron campaign, sends to the file sink, stops on SIGTERM with exit code 0,
and never sends anything twice."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from apscheduler.triggers.cron import CronTrigger
from seq_helpers import TEST_NOW, messages, unit
from sqlalchemy import insert, select

from engine import sampling
from engine.app import App
from engine.db.models import CampaignRun, Participant, Program
from engine.scheduler import Daemon, launch_job_id
from engine.testing.fakes import PROGRAM_SENDER_ENV

ROOT = Path(__file__).resolve().parents[2]
N = 12

CAMPAIGN = {
    "name": "every-minute",
    "program": "loyalty",
    "audience": {"field": "status", "eq": "active"},
    "holdout_percent": 0,
    "goal": {"events": ["redemption"], "window": "30d"},
    "schedule": {"cron": "* * * * *", "timezone": "UTC"},
    "reentry": "once",
    "steps": [{"id": "email-1", "channel": "email", "template": "points_expiring"}],
}


# The CLI as `main()` runs it, its clock LEAD seconds before a minute boundary when it starts
# (engine/testing/clocks.py): the cron fire comes in seconds instead of up to a minute.
LEAD = 3
SCHEDULER_MINUTE_AHEAD = (
    "import sys, cli; from engine.cli.common import CliState; "
    "from engine.testing.clocks import ShiftedClock; "
    f"clock = ShiftedClock.before_minute({LEAD}); "
    "cli.cli.main(args=sys.argv[1:], prog_name='campaign', obj=CliState({}, clock=clock))"
)


def _members(app: App, program: Program) -> None:
    with unit(app) as s:
        s.execute(
            insert(Participant),
            [
                {
                    "program_id": program.id,
                    "external_id": f"D{i:03d}",
                    "email": f"d{i}@example.com",
                    "status": "active",
                    "points_balance": 0,
                    "points_expiring": i,
                    "attributes": {},
                    "sample_key": sampling.sample_key(program.key, f"D{i:03d}"),
                    "created_at": TEST_NOW,
                    "updated_at": TEST_NOW,
                }
                for i in range(N)
            ],
        )


def _wait_for(predicate: object, seconds: float) -> bool:
    assert callable(predicate)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_scheduler_daemon_sends_once_and_stops_on_sigterm(
    app: App, program: Program, database_url: str, tmp_path: Path
) -> None:
    _members(app, program)
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    (campaigns / "every-minute.yaml").write_text(yaml.safe_dump(CAMPAIGN, sort_keys=False))
    outbox = tmp_path / "outbox"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "SENDGRID", "TWILIO"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        CAMPAIGN_DATABASE_URL=database_url,
        CAMPAIGN_CAMPAIGNS_DIR=str(campaigns),
        CAMPAIGN_TEMPLATES_DIR=str(ROOT / "templates"),
        CAMPAIGN_OUTBOX_DIR=str(outbox),
        CAMPAIGN_TICK_INTERVAL_SECONDS="1",
        **PROGRAM_SENDER_ENV,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_MINUTE_AHEAD, "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first fire is the next minute boundary after the daemon first sees the file (a
        # fire already passed is skipped): LEAD seconds away on the daemon's clock (a minute
        # later if the daemon took longer than that to start), then launch, advance and send.
        arrived = _wait_for(lambda: len(list(outbox.glob("*.eml"))) >= N, 100)
        # A few more ticks: nothing may be sent again.
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert arrived, f"nothing arrived in the sink; stderr:\n{err}"
    assert proc.returncode == 0, err
    assert "Scheduler stopped (SIGTERM)" in err
    files = sorted(outbox.glob("*.eml"))
    recipients = [email.message_from_bytes(p.read_bytes())["To"] for p in files]
    assert sorted(recipients) == sorted(f"d{i}@example.com" for i in range(N))
    rows = messages(app)
    assert len(rows) == N and {m.status for m in rows} == {"sent"}
    with unit(app) as s:
        runs = s.scalars(select(CampaignRun).where(CampaignRun.campaign == "every-minute")).all()
    # One run enrolled everyone; a later minute's run (if the minute turned) enrolled nobody.
    assert sorted(r.enrolled_count for r in runs)[-1] == N
    assert sum(r.enrolled_count for r in runs) == N
    assert "launched every-minute" in out


def test_launch_jobs_follow_the_campaign_files(app: App, tmp_path: Path) -> None:
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    path = campaigns / "every-minute.yaml"
    path.write_text(yaml.safe_dump(CAMPAIGN, sort_keys=False))
    settings = app.settings.model_copy(update={"campaigns_dir": campaigns})
    daemon = Daemon(
        App(settings=settings, engine=app.engine, sessions=app.sessions, clock=app.clock)
    )
    assert daemon.sync_launch_jobs() == [launch_job_id("every-minute")]
    job = daemon.scheduler.get_job("launch:every-minute")
    assert job is not None and isinstance(job.trigger, CronTrigger)
    assert (job.coalesce, job.max_instances) == (True, 1)
    assert job.misfire_grace_time == settings.scheduler_misfire_grace_seconds
    # A one-off start still ahead gets a date job; a changed schedule replaces the job.
    one_off = {**CAMPAIGN, "schedule": {"start": "2026-04-01T09:00:00+00:00"}}
    path.write_text(yaml.safe_dump(one_off, sort_keys=False))
    assert daemon.sync_launch_jobs() == ["launch:every-minute"]
    job = daemon.scheduler.get_job("launch:every-minute")
    assert job is not None and type(job.trigger).__name__ == "DateTrigger"
    path.unlink()
    assert daemon.sync_launch_jobs() == []
    assert daemon.scheduler.get_job("launch:every-minute") is None

"""Scheduled launches refuse a real program's email campaign under the demo's sender identity
(both databases): `campaign tick` says which campaign and why at every tick until fixed, other
campaigns still launch, and the refused one launches at the first tick after the settings are
fixed (a one-off however late; a cron fire only within the misfire grace). The scheduler's
launch job logs the same line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from cli import CliState, cli
from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import CampaignRun, Program
from engine.scheduler import Daemon
from engine.testing.fakes import PROGRAM_SENDER, PROGRAM_SENDER_ENV, make_consent, make_participant
from engine.tick import tick

from .helpers import unit

WEEKLY = {"cron": "0 9 * * MON", "timezone": "America/New_York"}
FIRE = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # Monday 09:00 EDT
REFUSAL = (
    "renewal-email: not launched: program 'loyalty' cannot send email yet: the sender is the "
    "demo's (rewards@example.com) and the postal address is the demo's; set email_from and "
    "postal_address in campaign.toml (or CAMPAIGN_EMAIL_FROM / CAMPAIGN_POSTAL_ADDRESS) "
    "to your program's own"
)


def _write(folder: Path, name: str, channel: str, template: str, schedule: dict[str, Any]) -> None:
    data = {
        "name": name,
        "program": "loyalty",
        "audience": {"field": "status", "eq": "active"},
        "holdout_percent": 0,
        "goal": {"events": ["redemption"], "window": "30d"},
        "schedule": schedule,
        "steps": [{"id": f"{channel}-1", "channel": channel, "template": template}],
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _campaigns(tmp_path: Path, schedule: dict[str, Any]) -> Path:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    _write(folder, "renewal-email", "email", "points_expiring", schedule)
    # No email step: needs no sender identity, launches whatever the settings say.
    _write(folder, "renewal-sms", "sms", "points_expiring", schedule)
    return folder


def _runs(app: App) -> list[tuple[str, str]]:
    with unit(app) as s:
        return [
            (r.campaign, r.fire_key)
            for r in s.scalars(select(CampaignRun).order_by(CampaignRun.campaign))
        ]


@pytest.fixture
def members(app: App, program: Program) -> None:
    with unit(app) as s:
        texter = make_participant(s, program, at=datetime(2026, 1, 1, tzinfo=UTC))
        make_consent(
            s, texter, channel="sms", status="opted_in", at=datetime(2026, 1, 1, tzinfo=UTC)
        )


def _tick(app: App, folder: Path, at: datetime, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["tick", "--budget", "20", *args],
        env={
            "CAMPAIGN_DATABASE_URL": app.settings.database_url,
            "CAMPAIGN_CAMPAIGNS_DIR": str(folder),
            "CAMPAIGN_OUTBOX_DIR": str(folder.parent / "outbox"),
            **env,
        },
        obj=CliState(overrides={}, clock=FrozenClock(at)),  # type: ignore[arg-type]
    )
    return result.exit_code, result.output


def test_the_tick_refuses_a_one_off_under_the_demo_sender_until_it_is_set(
    app: App, members: None, tmp_path: Path
) -> None:
    folder = _campaigns(tmp_path, {"start": "2026-03-01T09:00:00-05:00"})
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    code, output = _tick(app, folder, at)
    assert code == 0, output
    assert f"  {REFUSAL}\n" in output
    assert "launched renewal-sms: run" in output  # the other campaign still launches
    assert "Traceback" not in output
    assert _runs(app) == [("renewal-sms", "once")]
    # Said again at every tick while the settings stay as they are.
    code, output = _tick(app, folder, at + timedelta(minutes=1))
    assert code == 0 and output.count(REFUSAL) == 1, output
    assert _runs(app) == [("renewal-sms", "once")]
    # Fixed days later: the one-off launches at the next tick ("from start on"), however late.
    code, output = _tick(app, folder, at + timedelta(days=3), **PROGRAM_SENDER_ENV)
    assert code == 0, output
    assert "launched renewal-email: run" in output and "not launched" not in output
    assert _runs(app) == [("renewal-email", "once"), ("renewal-sms", "once")]


def test_the_tick_json_says_refused(app: App, members: None, tmp_path: Path) -> None:
    folder = _campaigns(tmp_path, {"start": "2026-03-01T09:00:00-05:00"})
    code, output = _tick(
        app, folder, datetime(2026, 3, 2, 15, 0, tzinfo=UTC), "--json", CAMPAIGN_POSTAL_ADDRESS=""
    )
    assert code == 0, output
    assert '"refused": "renewal-email: not launched: ' in output
    assert "there is no postal address" in output


def _daemon_app(app: App, tmp_path: Path, clock: FrozenClock, **settings: Any) -> App:
    changed = app.settings.model_copy(
        update={
            "campaigns_dir": _campaigns(tmp_path, WEEKLY),
            "outbox_dir": tmp_path / "outbox",
            "scheduler_misfire_grace_seconds": 3600,
            **settings,
        }
    )
    return App(settings=changed, engine=app.engine, sessions=app.sessions, clock=clock)


def test_the_daemon_launch_job_logs_the_refusal_and_a_fixed_fire_launches_within_the_grace(
    app: App, members: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FrozenClock(FIRE - timedelta(hours=1))
    refused_app = _daemon_app(app, tmp_path, clock)
    tick(refused_app, budget_seconds=5)  # the schedules are seen before their fire
    said: list[Any] = []
    daemon = Daemon(refused_app, on_launch=said.append)
    clock.set(FIRE + timedelta(seconds=1))
    with caplog.at_level(logging.WARNING, logger="engine.scheduler"):
        daemon._launch("renewal-email")
    assert [item.refused for item in said] == [REFUSAL]
    assert REFUSAL in caplog.text
    assert daemon.summary.launched == [] and daemon.summary.errors == []
    assert _runs(app) == []
    # The tick says it too, and launches the SMS campaign's fire.
    clock.set(FIRE + timedelta(minutes=1))
    summary = tick(refused_app, budget_seconds=5)
    assert [(i.campaign, i.refused is not None) for i in summary.launched] == [
        ("renewal-email", True),
        ("renewal-sms", False),
    ]
    # Fixed 20 minutes after the fire, within the hour's grace: this fire launches.
    fixed = _daemon_app(app, tmp_path, clock, **PROGRAM_SENDER)
    clock.set(FIRE + timedelta(minutes=20))
    fixed_daemon = Daemon(fixed)
    fixed_daemon._launch("renewal-email")
    [launched] = fixed_daemon.summary.launched
    assert (launched.campaign, launched.enrolled) == ("renewal-email", 1)
    assert _runs(app) == [
        ("renewal-email", "2026-03-09T13:00:00+00:00"),
        ("renewal-sms", "2026-03-09T13:00:00+00:00"),
    ]


def test_a_cron_fire_refused_past_the_grace_is_skipped_and_the_next_fire_launches(
    app: App, members: None, tmp_path: Path
) -> None:
    clock = FrozenClock(FIRE - timedelta(hours=1))
    refused_app = _daemon_app(app, tmp_path, clock)
    tick(refused_app, budget_seconds=5)
    clock.set(FIRE + timedelta(minutes=1))
    assert any(i.refused for i in tick(refused_app, budget_seconds=5).launched)
    # Fixed only the next day: that fire is past the grace, skipped and said once.
    fixed = _daemon_app(app, tmp_path, clock, **PROGRAM_SENDER)
    clock.set(FIRE + timedelta(days=1))
    summary = tick(fixed, budget_seconds=5)
    assert [i.skipped for i in summary.launched] == [
        "skipped fire 2026-03-09 09:00 EDT of renewal-email: 24 h late, grace 1h"
    ]
    # The next Monday's fire launches (the SMS campaign's member is still in its first run).
    clock.set(FIRE + timedelta(days=7, minutes=1))
    summary = tick(fixed, budget_seconds=5)
    assert [(i.campaign, i.run_id is not None, i.enrolled) for i in summary.launched] == [
        ("renewal-email", True, 1),
        ("renewal-sms", True, 0),
    ]

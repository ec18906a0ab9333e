"""The CLI face of deadlines (issues #15, #16): `plan` shows each step's deadline and how many
members would already be past it; `advance` without templates refuses in one line; the
campaign report counts expired skips."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import yaml
from click.testing import CliRunner
from seq_helpers import DAY, TEST_NOW, definition, launch, messages, unit

from cli import cli
from engine.app import App
from engine.db.models import Program
from engine.reports.campaign import campaign_report
from engine.sequencing import advance
from engine.testing.fakes import make_participant

AT = TEST_NOW.isoformat()


def _run(app: App, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, *args], env=env or {}
    )
    return result.exit_code, result.output


def test_plan_shows_deadlines_and_members_already_past_them(
    app: App, program: Program, tmp_path: Path
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="soon", renewal_date=date(2026, 3, 5))
        make_participant(s, program, at=TEST_NOW, external_id="late", renewal_date=date(2026, 3, 1))
        make_participant(s, program, at=TEST_NOW, external_id="none")
    data = {
        "name": "renewal",
        "program": program.key,
        "audience": {"field": "status", "eq": "active"},
        "holdout_percent": 0,
        "goal": {"events": ["renewal"], "window": "30d"},
        "steps": [
            {"id": "email-1", "channel": "email", "template": "renewal_due"},
            {
                "id": "email-2",
                "channel": "email",
                "template": "renewal_due",
                "delay": "5d",
                "expires_before": "renewal_date",
            },
        ],
    }
    (tmp_path / "renewal.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = {"CAMPAIGN_CAMPAIGNS_DIR": str(tmp_path)}
    code, output = _run(app, "plan", "renewal", "--at", AT, "--json", env=env)
    assert code == 0, output
    steps = json.loads(output)["steps"]
    assert [(s["deadline"], s["expired"]) for s in steps] == [
        ("3d after due", 0),
        ("3d after due, before renewal_date", 2),
    ]
    code, output = _run(app, "plan", "renewal", "--at", AT, env=env)
    assert code == 0 and "already expired" in output and "before renewal_date" in output


def test_advance_without_templates_refuses_in_one_line(
    app: App, program: Program, tmp_path: Path
) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="m1")
    launch(app, definition())
    code, output = _run(app, "advance", env={"CAMPAIGN_TEMPLATES_DIR": str(tmp_path / "missing")})
    assert code != 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "templates folder" in lines[0] and "Traceback" not in output
    assert messages(app) == []


def test_the_campaign_report_counts_expired_skips(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="m1")
    launch(app, definition())
    advance(app, at=TEST_NOW + 4 * DAY)
    with unit(app) as s:
        report = campaign_report(s, "seq-test")
    assert [(k.step, k.reason, k.count) for k in report.skips] == [("email-1", "expired", 1)]

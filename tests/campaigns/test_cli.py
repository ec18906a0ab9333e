"""The plan / explain / launch / runs / pause / resume / cancel commands, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from engine.app import App
from engine.db.models import Program
from engine.testing.fakes import make_consent, make_participant

from .helpers import TEST_NOW, unit

AT = "2026-03-02T10:00"  # naive: New York time, i.e. TEST_NOW


@pytest.fixture
def campaigns(tmp_path: Path, app: App, program: Program) -> Path:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    data: dict[str, Any] = {
        "name": "winback",
        "program": "loyalty",
        "audience": {
            "all": [
                {"field": "status", "in": ["active", "inactive"]},
                {"field": "points_balance", "gte": 100},
            ]
        },
        "holdout_percent": 0,
        "goal": {"events": ["login"], "window": "30d"},
        "steps": [
            {"id": "email-1", "channel": "email", "template": "winback"},
            {"id": "sms-1", "channel": "sms", "template": "winback", "delay": "3d"},
        ],
    }
    (folder / "winback.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="in-1", points_balance=500)
        texter = make_participant(s, program, at=TEST_NOW, external_id="in-2", points_balance=900)
        make_consent(s, texter, channel="sms", status="opted_in", at=TEST_NOW)
        make_participant(s, program, at=TEST_NOW, external_id="low", points_balance=10)
    return folder


def run(app: App, folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        env={
            "CAMPAIGN_CAMPAIGNS_DIR": str(folder),
            # A real program's email is launched only under its own sender identity.
            "CAMPAIGN_EMAIL_FROM": "Loyalty <members@loyalty.example>",
            "CAMPAIGN_POSTAL_ADDRESS": "1 Loyalty Way, Chicago IL 60601",
        },
    )
    return result.exit_code, result.output


def test_plan_json_and_text(app: App, campaigns: Path) -> None:
    code, output = run(app, campaigns, "plan", "winback", "--at", AT, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["at"] == "2026-03-02T15:00:00+00:00"
    assert (report["audience"], report["eligible"]) == (2, 2)
    assert [s["projected"] for s in report["steps"]] == [2, 1]
    assert {m["external_id"] for m in report["sample"]} == {"in-1", "in-2"}
    code, output = run(app, campaigns, "plan", "winback", "--at", AT)
    assert code == 0, output
    assert "Audience: 2" in output and "frequency_cap" in output and "sms-1" in output


def test_explain(app: App, campaigns: Path) -> None:
    code, output = run(app, campaigns, "explain", "winback", "low", "--at", AT, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["verdict"] == "not in the audience"
    leaf = result["audience"]["children"][1]
    assert (leaf["passed"], leaf["actual"]) == (False, 10)
    code, output = run(app, campaigns, "explain", "winback", "in-1", "--at", AT)
    assert code == 0, output
    assert "would be enrolled in treatment" in output
    assert "points_balance ≥ 100  (actual: 500)" in output


def test_launch_runs_and_lifecycle(app: App, campaigns: Path) -> None:
    code, output = run(app, campaigns, "launch", "winback", "--at", AT, "--json")
    assert code == 0, output
    launched = json.loads(output)
    assert launched["created"] and launched["enrolled"] == 2
    run_id = str(launched["run_id"])
    code, output = run(app, campaigns, "launch", "winback", "--at", AT)
    assert code == 0 and "already launched" in output

    code, output = run(app, campaigns, "runs", "list", "--json")
    assert [r["id"] for r in json.loads(output)] == [launched["run_id"]]
    code, output = run(app, campaigns, "runs", "show", run_id, "--json")
    assert json.loads(output)["by_group_state"] == {"treatment": {"active": 2}}

    code, output = run(app, campaigns, "pause", run_id, "--reason", "typo")
    assert code == 0 and "active -> paused" in output
    code, output = run(app, campaigns, "runs", "show", run_id)
    assert "paused" in output and "(typo)" in output
    code, output = run(app, campaigns, "resume", run_id)
    assert code == 0 and "paused -> active" in output
    code, output = run(app, campaigns, "cancel", run_id, "--reason", "wrong list", "--json")
    assert code == 0 and json.loads(output)["exited"] == 2
    code, output = run(app, campaigns, "resume", run_id)
    assert code == 1 and "a cancelled run is final" in output
    assert "Traceback" not in output


def test_user_errors_are_clean(app: App, campaigns: Path) -> None:
    code, output = run(app, campaigns, "plan", "nope")
    assert code == 1 and "no campaign 'nope'" in output and "winback" in output
    code, output = run(app, campaigns, "plan", "winback", "--at", "yesterday")
    assert code == 1 and "--at 'yesterday' is not an ISO 8601" in output
    code, output = run(app, campaigns, "explain", "winback", "ghost", "--at", AT)
    assert code == 1 and "no participant 'ghost'" in output
    code, output = run(app, campaigns, "runs", "show", "42")
    assert code == 1 and "no campaign run 42" in output
    assert "Traceback" not in output

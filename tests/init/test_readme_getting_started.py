"""The README's "Getting started with your own program" block, run as written in an empty folder.

The commands are read from README.md, so the README cannot drift from what works. The only
files beside them are the member and activity files the block says a coordinator brings.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import CliState, cli
from engine.clock import FrozenClock
from init import TEST_NOW

README = Path(__file__).resolve().parents[2] / "README.md"
MEMBERS = """\
external_id,first_name,last_name,email,phone,status,last_activity_at,points_balance,consent_email,consent_sms
M000123,Ada,Lovelace,ada@example.org,+13125550123,inactive,2025-06-01,1200,yes,yes
M000124,Bob,Smith,bob@example.org,+13125550124,active,2026-02-20,300,yes,
"""
ACTIVITY = """\
external_id,type,occurred_at,reference
M000124,login,2026-02-20T10:00:00,L-1
"""
# Settings a developer's shell may hold would change what the block does.
CLEAN_ENV = {
    name: None
    for name in os.environ
    if name.startswith("CAMPAIGN_") and name != "CAMPAIGN_CALLER_LOG_KEY"
}


def getting_started_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Getting started with your own program", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README: the getting-started section has no ```sh block"
    joined = block.group(1).replace("\\\n", " ")
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


def test_the_block_starts_from_nothing() -> None:
    commands = getting_started_commands()
    assert commands[0].startswith("campaign init ")
    assert any(command.startswith("campaign launch ") for command in commands)


def test_readme_getting_started_runs_in_an_empty_folder(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(CLEAN_ENV)
    sqlite = database_url.startswith("sqlite")
    if not sqlite:  # on SQLite the block's own campaign.toml names the database it makes
        env["CAMPAIGN_DATABASE_URL"] = database_url
    work = tmp_path / "work"
    work.mkdir()
    (work / "members.csv").write_text(MEMBERS, encoding="utf-8")
    (work / "activity.csv").write_text(ACTIVITY, encoding="utf-8")
    monkeypatch.chdir(work)
    outputs: dict[str, str] = {}
    for line in getting_started_commands():
        args = shlex.split(line, comments=True)
        if args[0] == "cd":
            monkeypatch.chdir(Path.cwd() / args[1])
            continue
        assert args[0] == "campaign", line
        result = CliRunner().invoke(
            cli, args[1:], env=env, obj=CliState(overrides={}, clock=FrozenClock(TEST_NOW))
        )
        assert result.exit_code == 0, f"{line}\n{result.output}"
        outputs[args[1]] = result.output
    if sqlite:
        assert (work / "northwind" / "campaign.db").exists()
    assert outputs["validate"].count(": ok") == 4
    assert "would be enrolled in" in outputs["explain"]
    assert "NOT ENROLLED" not in outputs["preview"]
    assert "Northwind Rewards, 200 Lake Street" in outputs["preview"]  # the program's own address
    assert "created" in outputs["launch"].lower() or "enrolled" in outputs["launch"].lower()

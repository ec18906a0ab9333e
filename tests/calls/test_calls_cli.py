"""The agents and calls commands end to end (the CLI reads the real clock, so the members
live in a zone where it is early afternoon right now)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from calls_helpers import make_world
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

import engine.cli.calls as calls_commands
from cli import cli
from engine.app import App
from engine.calls.agents import add_agent, set_targets
from engine.db.models import Agent, CallTask
from engine.errors import InputError
from engine.testing.fakes import unit


def afternoon_zone() -> str:
    """An Etc/GMT zone where the local time is about 14:00 now (never near the window's edge)."""
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def run(app: App, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args], env=env)
    return result.exit_code, result.output


def test_agent_workflow_end_to_end(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    zone = afternoon_zone()
    due = datetime.now(UTC) - timedelta(hours=1)
    first = w.task(w.member(timezone=zone, points_balance=5000, first_name="Rosa"), due_at=due)
    second = w.task(w.member(timezone=zone, points_balance=10), due_at=due)
    third = w.task(w.member(timezone=zone, points_balance=1), due_at=due)

    code, out = run(
        app,
        "agents",
        "add",
        "ana",
        "--name",
        "Ana Lee",
        "--team",
        "renewals",
        "--daily-target",
        "40",
    )
    assert code == 0, out
    code, out = run(app, "agents", "add", "ana", "--name", "Again")
    assert code == 1 and "already exists" in out
    code, out = run(app, "agents", "list", "--json")
    assert json.loads(out)[0]["teams"] == ["renewals"]

    code, out = run(app, "calls", "list", "--agent", "ana", "--json")
    assert code == 0, out
    assert [row["task_id"] for row in json.loads(out)] == [first, second, third]
    code, out = run(app, "calls", "list", "--agent", "ana", "--csv")
    assert code == 0, out
    listed = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["task_id"]) for r in listed] == [first, second, third]
    assert listed[0]["why"].startswith("campaign call (renew-calls / call-1)")

    code, out = run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0, out
    served = json.loads(out)
    assert served["claim"]["task_id"] == first
    sheet = served["sheet"]
    assert "RENEWAL CALL" in sheet["script"] and "Rosa" in sheet["script"]
    # Before verification: the program's pre-verification fields only (default: the tier).
    assert "points_balance" not in sheet["account"] and "tier" in sheet["account"]
    assert served["gate"]["verified"] is False and "points_balance" in served["gate"]["hidden"]
    assert sheet["offer"] and sheet["talking_points"]
    assert any("member number" in q["ask"] for q in sheet["verification"])

    code, out = run(app, "calls", "next", "--agent", "ana")  # the human view
    assert code == 0 and "Verify before discussing the account" in out and "Offer:" in out
    assert f"campaign calls verify {first} --agent ana" in out
    assert "points balance:" not in out and "shown once the identity is verified" in out

    code, out = run(app, "calls", "verify", str(first), "--agent", "ana", "--json")
    assert code == 0, out
    assert json.loads(out)["sheet"]["account"]["points_balance"] == 5000
    code, out = run(app, "calls", "next", "--agent", "ana")  # the same claim, verified
    assert code == 0 and "points balance: 5000" in out and "Identity verified at" in out

    code, out = run(
        app,
        "calls",
        "log",
        str(first),
        "--disposition",
        "COMPLAINT",
        "--field",
        "category=billing",
        "--verified",
        "yes",
        "--no-input",
    )
    assert code == 1 and "COMPLAINT requires field summary" in out
    code, out = run(
        app,
        "calls",
        "log",
        str(first),
        "--disposition",
        "COMPLAINT",
        "--field",
        "category=billing",
        "--field",
        "summary=charged twice",
        "--verified",
        "yes",
        "--notes",
        "very upset",
        "--json",
    )
    assert code == 0, out
    logged = json.loads(out)
    assert logged["record"] == (
        "COMPLAINT - Complaint recorded. Complaint (billing): charged twice. Notes: very upset"
    )

    code, out = run(app, "calls", "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    ids = [int(r["task_id"]) for r in rows]
    # The complaint opened a case; its follow-up call is on the list later today.
    assert ids[:2] == [second, third] and len(ids) == 3
    with app.sessions() as s:
        follow_up = s.get(CallTask, ids[2])
        assert follow_up is not None and follow_up.case_id == logged["case_id"] is not None

    results = tmp_path / "results.csv"
    results.write_text(
        "call_id,task_id,agent,disposition,verified,duration_seconds,notes,field.reason\n"
        f"d-1,{second},ana,NOT_INTERESTED,yes,95,,\n"
        f"d-2,{third},nobody,NO_ANSWER,,20,,\n"
    )
    code, out = run(app, "calls", "import-results", str(results))
    assert code == 0, out
    assert "read 2, applied 0, already on the caller log 0, rejected 2" in out
    rejects = tmp_path / "results.rejects.csv"
    assert f"rejected rows and their reasons: {rejects}" in out
    rejected = list(csv.DictReader(io.StringIO(rejects.read_text())))
    assert [r["line"] for r in rejected] == ["2", "3"]
    assert "NOT_INTERESTED requires field reason" in rejected[0]["reasons"]
    assert "no agent 'nobody'" in rejected[1]["reasons"]
    code, out = run(app, "calls", "verify-log", "--json")
    assert json.loads(out)["entries"] == 1  # the bad rows wrote nothing

    # Fixed, the same calls go through; a second run changes nothing.
    results.write_text(
        "call_id,task_id,agent,disposition,verified,duration_seconds,notes,field.reason\n"
        f"d-1,{second},ana,NOT_INTERESTED,yes,95,,too expensive\n"
        f"d-2,{third},ana,NO_ANSWER,,20,,\n"
    )
    code, out = run(app, "calls", "import-results", str(results))
    assert code == 0 and "read 2, applied 2, already on the caller log 0, rejected 0" in out, out
    assert not rejects.exists()  # yesterday's rejects would mislead
    code, out = run(app, "calls", "import-results", str(results), "--json")
    assert code == 0, out
    again = json.loads(out)
    assert (again["read"], again["applied"], again["unchanged"]) == (2, 0, 2)
    code, out = run(app, "calls", "verify-log")
    assert code == 0 and "intact: 3 entries" in out

    code, out = run(app, "agents", "show", "ana", "--json")
    plan = json.loads(out)["calling_plan"]
    assert plan["figures"][0]["calls"] == 3 and plan["figures"][0]["target"] == 40

    code, out = run(app, "calls", "dispositions", "--json")
    assert {"CONVERTED", "VERIFICATION_FAILED"} <= {d["code"] for d in json.loads(out)}


def test_log_without_a_claim_needs_an_agent(app: App) -> None:
    w = make_world(app)
    task = w.task(w.member())
    code, out = run(app, "calls", "log", str(task), "--disposition", "NO_ANSWER", "--no-input")
    assert code == 1 and "name the agent with --agent" in out
    code, out = run(app, "calls", "log", str(task), "--no-input")
    assert code == 2 and "--disposition is required" in out


def test_log_prompts_for_what_is_missing_on_a_terminal(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())
    monkeypatch.setattr(calls_commands, "stdin_is_terminal", lambda: True)
    # Disposition, then the template's fields, the verified flag and notes, in that order.
    answers = "complaint\nweather\nbilling\ncharged twice\ny\nvery upset\n"
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, "calls", "log", str(task), "--agent", "ana"],
        input=answers,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Disposition (CONVERTED, PROMISED" in out
    assert "category (service, billing, points" in out
    assert "Error: 'weather' is not one of" in out  # asked again
    assert "Identity verified?" in out
    assert (
        "COMPLAINT - Complaint recorded. Complaint (billing): charged twice. Notes: very upset"
        in out
    )
    # Flags cover what they give: only the rest is asked (here, the notes).
    other = w.task(w.member())
    result = CliRunner().invoke(
        cli,
        [
            "--database-url",
            app.settings.database_url,
            "calls",
            "log",
            str(other),
            "--agent",
            "ana",
            "--disposition",
            "NOT_INTERESTED",
            "--field",
            "reason=moving away",
            "--verified",
            "yes",
        ],
        input="\n",
    )
    assert result.exit_code == 0, result.output
    assert "Notes:" in result.output
    assert "reason" not in result.output.split("Logged")[0]
    assert "Identity verified?" not in result.output
    assert "Not interested: moving away." in result.output


def test_log_never_prompts_without_a_terminal(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())
    # Piped input is not a person: a missing field is refused at once, nothing is asked.
    result = CliRunner().invoke(
        cli,
        [
            "--database-url",
            app.settings.database_url,
            "calls",
            "log",
            str(task),
            "--agent",
            "ana",
            "--disposition",
            "NOT_INTERESTED",
        ],
        input="moving away\ny\n\n",
    )
    assert result.exit_code == 1
    assert "NOT_INTERESTED requires field reason" in result.output
    assert "requires field verified" in result.output
    assert "Notes:" not in result.output and "Identity verified?" not in result.output


def test_agents_weekly_and_monthly_targets_are_set_changed_and_shown(app: App) -> None:
    code, out = run(
        app, "agents", "add", "ana", "--name", "Ana", "--daily-target", "8",
        "--weekly-target", "24", "--json",
    )  # fmt: skip
    assert code == 0, out
    assert (json.loads(out)["weekly_target"], json.loads(out)["monthly_target"]) == (24, None)

    code, out = run(app, "agents", "set", "ana", "--monthly-target", "90", "--json")
    assert code == 0, out
    changed = json.loads(out)
    assert (changed["daily_target"], changed["weekly_target"]) == (8, 24)  # kept
    assert changed["monthly_target"] == 90

    code, out = run(app, "agents", "list")
    assert code == 0, out
    row = next(line.split() for line in out.splitlines() if line.startswith("ana"))
    assert row[-4:] == ["8", "24", "90", "active"]

    code, out = run(app, "agents", "set", "ana", "--weekly-target", "derived")
    assert code == 0, out
    assert "daily target 8, weekly derived, monthly 90" in out
    code, out = run(app, "agents", "show", "ana", "--date", "2026-03-04", "--json")
    assert code == 0, out
    figures = {f["period"]: f for f in json.loads(out)["calling_plan"]["figures"]}
    assert (figures["week"]["target"], figures["week"]["target_source"]) == (
        40,
        "daily × 5 business days",
    )
    assert (figures["month"]["target"], figures["month"]["target_source"]) == (90, "set")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "ben", "--name", "Ben", "--weekly-target", "-1"), "-1 is not in the range x>=0"),
        (("add", "ben", "--name", "Ben", "--monthly-target", "-5"), "-5 is not in the range x>=0"),
        (("set", "ana", "--weekly-target", "-1"), "-1 must be 0 or more"),
        (("set", "ana", "--monthly-target", "-5"), "-5 must be 0 or more"),
        (("set", "ana", "--monthly-target", "lots"), "is not a number of calls or 'derived'"),
    ],
    ids=["add-weekly", "add-monthly", "set-weekly", "set-monthly", "set-not-a-number"],
)
def test_a_negative_or_unreadable_target_is_refused_clearly(
    app: App, args: tuple[str, ...], message: str
) -> None:
    code, out = run(app, "agents", "add", "ana", "--name", "Ana", "--weekly-target", "20")
    assert code == 0, out
    code, out = run(app, "agents", *args)
    assert code == 2, out
    assert f"Error: Invalid value for '{args[-2]}': " in out and message in out
    assert "Traceback" not in out
    code, out = run(app, "agents", "list", "--json")
    assert [(a["login"], a["weekly_target"], a["monthly_target"]) for a in json.loads(out)] == [
        ("ana", 20, None)
    ]


def test_the_engine_and_the_database_refuse_a_negative_target(app: App) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    with unit(app) as s:
        with pytest.raises(InputError, match="weekly target -1 must be 0 or more"):
            add_agent(s, "ben", name="Ben", weekly_target=-1, at=now)
        add_agent(s, "ana", name="Ana", daily_target=5, monthly_target=60, at=now)
        with pytest.raises(InputError, match="monthly target -2 must be 0 or more"):
            set_targets(s, "ana", daily_target=6, monthly_target=-2)
        ana = s.scalars(select(Agent)).one()
        assert (ana.daily_target, ana.monthly_target) == (5, 60)  # nothing changed
    for column in ("weekly_target", "monthly_target"):
        with pytest.raises(IntegrityError, match=f"ck_agents_{column}"), unit(app) as s:
            s.execute(update(Agent).values({column: -1}))

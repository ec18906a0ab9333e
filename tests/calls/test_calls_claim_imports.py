"""`calls next` claims on a plain Core connection (engine/calls/claiming.py, #18): in a fresh
process, a claim that meets tasks but finds none callable, and a claim that takes a task and
shows its call sheet (read on the claim's connection), import neither the ORM nor the mapped
models, nor pydantic or the definitions' schema: they read the runs' claim forms (the sheet
its step's script, talking points and offer); the task taken is committed as claimed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from calls_helpers import ROOT, TEST_NOW, campaign_source, make_run, make_world, task_row, unit

from engine.app import App
from engine.calls.config import load_dispositions
from engine.calls.log import CallInput, log_call
from engine.calls.tasks import claim_next
from engine.cases.views import show_case
from engine.programs import set_shown_before_verification

# `calls next` at a frozen instant, then the modules the process imported (on stderr).
PROBE = """
import json, sys
from datetime import datetime

import cli
from engine.cli.common import CliState
from engine.clock import FrozenClock

state = CliState(overrides={}, clock=FrozenClock(datetime.fromisoformat(sys.argv[1])))
try:
    cli.cli.main(args=["calls", "next", "--agent", "ana"], prog_name="campaign", obj=state)
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _calls_next(app: App, cwd: Path, at: datetime = TEST_NOW) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    env |= {
        "CAMPAIGN_DATABASE_URL": app.settings.database_url,
        "CAMPAIGN_CALLER_LOG_KEY": os.environ["CAMPAIGN_CALLER_LOG_KEY"],
        "CAMPAIGN_TEMPLATES_DIR": str(app.settings.templates_dir),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, at.isoformat()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_a_claim_that_meets_tasks_none_callable_imports_no_orm(app: App, tmp_path: Path) -> None:
    w = make_world(app)
    w.agent("ana")
    w.task(w.member(timezone="Pacific/Honolulu"))  # 05:00 there at TEST_NOW: waits
    # A campaign whose own call window and cap the claim reads (from its claim form too).
    evening = make_run(
        app,
        w.program_id,
        campaign_source(
            "evening-calls",
            call_window={"start": "18:00", "end": "20:00"},
            frequency_cap={"max": 2, "per": "7d"},
        ),
    )
    w.task(w.member(), run_id=evening)  # 10:00 in New York: waits for 18:00
    out, modules = _calls_next(app, tmp_path)
    assert out.startswith("Nothing callable for ana"), out
    assert "engine.audience" in modules  # not vacuous: it built the runs' standing checks
    assert {"sqlalchemy.orm", "engine.db.models"} & modules == set()
    # The runs' claim forms are read instead of their definitions (#18): no pydantic.
    definitions = {"engine.definitions.schema", "engine.definitions.filters"}
    assert {"pydantic", "engine.definitions.stored", *definitions} & modules == set()


def test_a_claim_that_takes_a_task_shows_its_sheet_without_the_orm(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member())  # 10:00 in New York at TEST_NOW: callable
    out, modules = _calls_next(app, tmp_path)
    assert out.startswith(f"Task {task} "), out
    assert "Verify before discussing the account" in out and "--- script ---" in out, out
    # Not vacuous: the sheet shows what it read of the run's claim form (#18).
    assert "RENEWAL CALL: renew-calls (call-1)" in out, out
    assert "  - Renewal date and plan" in out and "Cross-sell: Upgrade to Gold" in out, out
    assert "jinja2" in modules
    assert {"sqlalchemy.orm", "engine.db.models"} & modules == set()
    # The sheet reads the step's script, talking points and offer from the claim form too.
    definitions = {"engine.definitions.schema", "engine.definitions.filters"}
    assert {"pydantic", "engine.definitions.stored", *definitions} & modules == set()
    row = task_row(app, task)
    assert (row.status, row.claimed_by, row.claimed_at) == ("claimed", "ana", TEST_NOW)


def test_a_claim_of_a_cases_follow_up_reads_the_case_without_the_orm(
    app: App, tmp_path: Path
) -> None:
    w = make_world(app)
    w.agent("ana")
    first = w.task(w.member())
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW) is not None
        complaint = {"category": "billing", "summary": "charged twice"}
        logged = log_call(
            s,
            CallInput(first, "ana", "COMPLAINT", complaint, True),
            load_dispositions(None),
            at=TEST_NOW,
        )
    assert logged.case_id is not None
    with unit(app) as s:
        follow_up = show_case(s, logged.case_id, at=TEST_NOW).follow_up_task_id
        # Read only when shown (engine/calls/scripts.py): this program shows it before
        # verification.
        set_shown_before_verification(s, "loyalty", "case")
    # The case's follow-up is served to its owner four business hours later.
    out, modules = _calls_next(app, tmp_path, at=TEST_NOW + timedelta(hours=4))
    assert out.startswith(f"Task {follow_up} (follow_up"), out
    assert "engine.cases.views" in modules  # not vacuous: the sheet read the case
    assert {"sqlalchemy.orm", "engine.db.models"} & modules == set()

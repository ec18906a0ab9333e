"""Commands answer at once (#18): what starting `campaign` imports, checked structurally.

Timing is measured by bench/bench_startup.py, never here. These tests look at sys.modules in
a fresh process: `import cli` (what --help and every command pay) loads click and little
else, and the everyday commands do not load what they never use (Alembic, the reports, the
demo, the webhooks, the scheduler, the provider SDKs, rich on piped output).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from click.testing import CliRunner

import cli
from engine.db import migrate

ROOT = Path(__file__).resolve().parents[1]

# Nothing a command may need beyond click: the database layer, settings, renderers, SDKs.
NOT_ON_IMPORT = [
    "sqlalchemy",
    "alembic",
    "pydantic",
    "pydantic_settings",
    "rich",
    "jinja2",
    "yaml",
    "phonenumbers",
    "email_validator",
    "apscheduler",
    "sendgrid",
    "twilio",
    "starlette",
    "uvicorn",
    "engine.db",
    "engine.app",
    "engine.settings",
    "engine.demo",
    "engine.webhooks",
    "engine.scheduler",
    "engine.channels",
    "engine.reports.common",
    "engine.reports.render",
]
# What the everyday commands never use (their output here is piped: no rich either).
NOT_IN_EVERYDAY_COMMANDS = [
    "alembic",
    # rich's console and tables (about 60 ms); the plain tables' cell widths (rich.cells, a
    # few ms) are what piped output needs to align CJK text.
    "rich.console",
    "rich.table",
    "sendgrid",
    "twilio",
    "starlette",
    "uvicorn",
    "engine.demo",
    "engine.webhooks",
    "engine.scheduler",
    "engine.channels",
    "engine.sending.dispatch",
    "engine.reports.common",
    "engine.reports.render",
    "engine.planning",
    # Every App has them, few commands use them: the caller log key's generator (secrets,
    # hmac) and the metrics' tables and names, flushed on close only when something counted.
    "secrets",
    "engine.db.tables.ops",
    "engine.metrics.names",
    # The TOML parser: only a folder with a campaign.toml needs it (the probe's has none).
    "tomllib",
]
# A command loads its own command module, not the other groups' (cli.py loads them on demand).
OTHER_COMMAND_MODULES = {
    "runs list": ["engine.cli.calls", "engine.cli.participants", "engine.cli.report"],
    "participants show": ["engine.cli.calls", "engine.cli.report", "engine.cli.outbox"],
    "calls next": ["engine.cli.report", "engine.cli.outbox", "engine.cli.getting_started"],
}
# Commands that read rows and render nothing from templates or definitions.
NOT_IN_READ_COMMANDS = ["jinja2", "yaml", "apscheduler", "engine.definitions.loader"]
# `calls next` that meets no task: the claim alone. Definitions (pydantic, yaml, the audience
# SQL) are parsed for the runs whose tasks it meets, and what only a call sheet needs (the
# verification gate, cases, consent wording, templates) is loaded once a task was claimed.
NOT_IN_A_CLAIM_THAT_MEETS_NO_TASK = [
    "pydantic",
    "pydantic_core",
    "yaml",
    "engine.definitions",
    "engine.audience",
    "jinja2",
    "engine.templates",
    "engine.calls.verification",
    "engine.cases.views",
    "engine.consent.wording",
]
# The read commands and a claim read through Core on a plain connection (engine/db/tables): no
# ORM, no mapped models (about a quarter of a second), and on SQLite no PostgreSQL dialect (80 ms).
NOT_IN_CORE_READS = [
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "engine.db.models",
    "engine.runs",
    "engine.participants.queries",
    "engine.consent.suppressions",
]

PROBE = """
import json, sys
from cli import main

loaded = {"import cli": sorted(sys.modules)}
for label, args in json.loads(sys.argv[1]):
    before = set(sys.modules)
    try:
        main(args)
    except SystemExit as exc:
        if exc.code:
            raise
    loaded[label] = sorted(set(sys.modules) - before)
print(json.dumps(loaded), file=sys.stderr)
"""


def _offending(modules: list[str], forbidden: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]


@pytest.fixture(scope="module")
def probed(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """What a fresh process has imported after `import cli`, and what each everyday command
    adds to that, in the order a user's day runs them (each command only adds). One process
    for the module's tests: it costs a few seconds."""
    tmp_path = tmp_path_factory.mktemp("startup")
    database = tmp_path / "campaign.db"
    shutil.copyfile(sqlite_template, database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    env |= {
        "CAMPAIGN_DATABASE_URL": f"sqlite:///{database}",
        "CAMPAIGN_CALLER_LOG_KEY": os.environ["CAMPAIGN_CALLER_LOG_KEY"],
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    }
    members = tmp_path / "members.csv"
    members.write_text("external_id,first_name,last_name,email\nM1,Ann,Lee,ann@example.com\n")
    runner = CliRunner()
    for args in (
        ["programs", "add", "northwind", "--name", "Northwind"],
        ["participants", "import", str(members)],
        ["agents", "add", "ann", "--name", "Ann"],
    ):
        result = runner.invoke(cli.cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    commands = [
        ("runs list", ["runs", "list"]),
        ("participants show", ["participants", "show", "M1"]),
        ("calls next", ["calls", "next", "--agent", "ann"]),
    ]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, list[str]] = json.loads(done.stderr.strip().splitlines()[-1])
    assert "Nothing callable for ann" in done.stdout  # the commands did run
    return loaded


def test_importing_the_cli_loads_click_and_no_engine_machinery(
    probed: dict[str, list[str]],
) -> None:
    assert _offending(probed["import cli"], NOT_ON_IMPORT) == []
    assert "click" in probed["import cli"]


def test_everyday_commands_load_only_what_they_use(probed: dict[str, list[str]]) -> None:
    for command in ("runs list", "participants show", "calls next"):
        assert _offending(probed[command], NOT_IN_EVERYDAY_COMMANDS) == [], command
    for command in ("runs list", "participants show"):
        assert _offending(probed[command], NOT_IN_READ_COMMANDS) == [], command
    for command, others in OTHER_COMMAND_MODULES.items():
        assert _offending(probed[command], others) == [], command
    # The settings are read without pydantic (engine/settings_fields.py).
    for command in ("runs list", "participants show"):
        assert _offending(probed[command], ["pydantic", "pydantic_core"]) == [], command
    # The probe is not vacuous: the commands did load the database layer.
    assert "engine.db.tables.runs" in probed["runs list"]
    assert "engine.participants.account" in probed["participants show"]


def test_a_claim_that_meets_no_task_parses_no_definition_and_renders_no_sheet(
    probed: dict[str, list[str]],
) -> None:
    assert _offending(probed["calls next"], NOT_IN_A_CLAIM_THAT_MEETS_NO_TASK) == []
    # Nor did an earlier command of the probe load them (the lists are what each one adds).
    loaded = [m for modules in probed.values() for m in modules]
    assert _offending(loaded, ["pydantic", "yaml", "engine.definitions.schema"]) == []
    assert "engine.calls.tasks" in probed["calls next"]  # not vacuous: it did claim


def test_read_commands_read_through_core_without_the_orm(probed: dict[str, list[str]]) -> None:
    assert _offending(probed["import cli"], NOT_IN_CORE_READS) == []
    for command in ("runs list", "participants show"):
        assert _offending(probed[command], NOT_IN_CORE_READS) == [], command
    # `calls next` claims through Core on a plain connection too (engine/calls/claiming.py):
    # the ORM and the mapped models only come with a call sheet, once a task was claimed.
    assert _offending(probed["calls next"], NOT_IN_CORE_READS) == []
    assert "engine.calls.claiming" in probed["calls next"]  # not vacuous: it did claim


def test_the_schema_check_reads_the_head_alembic_reads() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    alembic_head = ScriptDirectory.from_config(config).get_current_head()
    assert migrate._head_from_version_lines() == alembic_head


def test_version_files_alembic_must_read_are_left_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (versions / "b.py").write_text('revision: str = "b"\ndown_revision: str | None = "a"\n')
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    assert migrate._head_from_version_lines() == "b"
    # A merge revision (a tuple) is not the plain form: Alembic decides.
    (versions / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')
    assert migrate._head_from_version_lines() is None
    (versions / "c.py").unlink()
    # Two heads: Alembic decides (and says so).
    (versions / "d.py").write_text('revision = "d"\ndown_revision = "a"\n')
    assert migrate._head_from_version_lines() is None


def test_every_registered_command_is_found_under_its_name() -> None:
    context = click.Context(cli.cli)
    names = cli.cli.list_commands(context)
    assert names == sorted(cli.COMMANDS) and "runs" in names
    for name in names:
        command = cli.cli.get_command(context, name)
        assert command is not None and command.name == name, name
    assert cli.cli.get_command(context, "no-such-command") is None
    # A mistyped command still gets click's suggestion, though no command module is loaded.
    result = CliRunner().invoke(cli.cli, ["runz"])
    assert result.exit_code == 2 and "Did you mean 'runs'?" in result.output


def test_a_command_runs_with_fewer_young_collections_and_restores_the_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At CPython's 700 a command's start-up ran about 160 collections and a full one, walking
    the imports' objects for nothing to free; the caller's thresholds come back after."""
    seen: list[tuple[int, int, int]] = []
    configure_logging = cli.configure_logging

    def recording(*, debug: bool, log_format: str) -> None:
        seen.append(gc.get_threshold())  # in the root group's callback, before the command
        configure_logging(debug=debug, log_format=log_format)

    monkeypatch.setattr(cli, "configure_logging", recording)
    before = gc.get_threshold()
    result = CliRunner().invoke(cli.cli, ["runs", "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output, result.output
    assert seen == [(cli.COMMAND_YOUNG_GC_THRESHOLD, *before[1:])]
    assert before[0] < cli.COMMAND_YOUNG_GC_THRESHOLD
    assert gc.get_threshold() == before


# Registered before `import cli`, this handler runs after cli's own (atexit runs them last
# registered first): it sees what the interpreter's final collections will walk.
EXIT_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print(f"frozen={gc.get_freeze_count()}", file=sys.stderr))
from cli import main
main(["--help"])
"""


def test_a_command_leaves_its_imports_out_of_the_collections_at_exit() -> None:
    """The interpreter's last collections would walk every object the imports made, for
    nothing the system does not free at exit (tens of ms per command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: campaign" in done.stdout  # the command did run
    frozen = int(done.stderr.strip().splitlines()[-1].removeprefix("frozen="))
    # click alone makes thousands of objects; all of them are out of the final collections.
    assert frozen > 1000

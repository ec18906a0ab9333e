"""`campaign demo`: the engine's real work on a synthetic loyalty program, with no server.

The demo is an ordered list of named steps, each a function of one ``DemoContext``. Later
features add their own steps (launch campaigns, send to the file sink, build call lists, log
calls, import conversions, report) by appending to ``STEPS`` (or passing ``steps=``); a step
reads what earlier steps left in the context and leaves its own results there.

The demo always works on its own SQLite database, ``<folder>/campaign.db``, whatever
CAMPAIGN_DATABASE_URL says, and starts from a fresh one on every run.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.app import App, build_app
from engine.clock import Clock, ensure_utc
from engine.db import migrate
from engine.demo.campaigns import CampaignFigures, launch_examples
from engine.demo.generator import GeneratedDataset, generate_dataset
from engine.demo.summary import ProgramSummary, summarize_program
from engine.errors import ConfigError, InputError
from engine.examples import EXAMPLE_PROGRAM_KEY, example_files
from engine.participants.events import import_events as import_event_file
from engine.participants.importer import import_participants as import_participant_file
from engine.participants.results import ImportSummary
from engine.planning import GlobalCap
from engine.programs import add_program
from engine.settings import SETTINGS_FILE, Settings, SettingsError

PROGRAM_KEY = EXAMPLE_PROGRAM_KEY
PROGRAM_NAME = "Northwind Rewards"
PROGRAM_TIMEZONE = "America/New_York"
PROGRAM_REGION = "US"
DATABASE_FILE = "campaign.db"
MARKER_FILE = ".campaign-demo"
# The demo's story (launch, a tick the next day, a day of calls, results four weeks on) is
# set in the past and ends yesterday, so every command a newcomer tries afterwards, on the
# real clock, sees its history: calls in `report agents`, callable tasks in `calls list`.
STORY_LENGTH = timedelta(days=29)
# It starts at this hour of the program's day, whatever the time it is built: the story took
# the time of day of the build, so the same seed made another demo each time (built at 00:15
# UTC, its first agent had nothing left to call; built at 00:30, three follow-ups).
STORY_START_HOUR = 10


def story_start(now: datetime) -> datetime:
    """The instant the demo's story begins: STORY_LENGTH before ``now``, at STORY_START_HOUR
    of that day in the program's zone (never later than 14 hours after now - STORY_LENGTH,
    so its last day, four weeks on, is still in the past)."""
    day = (ensure_utc(now) - STORY_LENGTH).astimezone(ZoneInfo(PROGRAM_TIMEZONE))
    return ensure_utc(day.replace(hour=STORY_START_HOUR, minute=0, second=0, microsecond=0))


@dataclass(frozen=True)
class ImportFigures:
    file: Path
    read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    rejects_path: Path | None
    seconds: float

    @classmethod
    def of(cls, file: Path, summary: ImportSummary) -> ImportFigures:
        return cls(
            file=file,
            read=summary.read,
            inserted=summary.inserted,
            updated=summary.updated,
            unchanged=summary.unchanged,
            rejected=summary.rejected,
            rejects_path=summary.rejects_path,
            seconds=summary.seconds,
        )


@dataclass(frozen=True)
class StepTiming:
    name: str
    seconds: float


@dataclass
class DemoContext:
    """What the steps share. Each step fills in its part; later steps may add to ``extra``."""

    folder: Path
    participants: int
    seed: int
    now: datetime
    clock: Clock
    database_path: Path
    # The campaigns the demo launches; None: the engine's examples, written into the folder.
    campaigns_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    app: App | None = None
    dataset: GeneratedDataset | None = None
    participants_import: ImportFigures | None = None
    events_import: ImportFigures | None = None
    summary: ProgramSummary | None = None
    campaigns: list[CampaignFigures] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # More sections of the printed report: (title, [(label, value), ...]), in step order.
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database_path}"

    def require_app(self) -> App:
        if self.app is None:
            raise RuntimeError("the database step has not run")
        return self.app

    def require_dataset(self) -> GeneratedDataset:
        if self.dataset is None:
            raise RuntimeError("the generate step has not run")
        return self.dataset


@dataclass(frozen=True)
class DemoStep:
    name: str
    title: str  # what the user sees while it runs
    run: Callable[[DemoContext], None]


@dataclass(frozen=True)
class DemoReport:
    folder: Path
    database: Path
    database_url: str
    now: datetime
    seed: int
    participants_requested: int
    participants_file: Path | None
    events_file: Path | None
    events_written: int
    planted_bad_rows: dict[str, int]
    participants_import: ImportFigures | None
    events_import: ImportFigures | None
    summary: ProgramSummary | None
    campaigns: list[CampaignFigures]
    steps: list[StepTiming]
    seconds: float
    notes: list[str]
    next_commands: list[str]
    extra: dict[str, Any]
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


# --------------------------------------------------------------------------- steps


def reset_folder(ctx: DemoContext) -> None:
    """A fresh database every run: the demo's figures must not depend on an earlier run.

    Only a folder the demo made (it leaves a marker file) or an empty one is used: pointed at
    a real working folder by mistake, the demo must not delete a real campaign.db or overwrite
    a real participants.csv.
    """
    marker = ctx.folder / MARKER_FILE
    try:
        if ctx.folder.exists() and not marker.exists() and any(ctx.folder.iterdir()):
            raise InputError(
                f"the folder {ctx.folder} already holds files and was not made by `campaign "
                "demo`; give --folder a new or empty folder"
            )
        ctx.folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            "Made by `campaign demo`, which deletes and rewrites this folder's files.\n",
            encoding="utf-8",
        )
        if ctx.database_path.exists():
            ctx.notes.append(f"Deleted the previous demo database {ctx.database_path}.")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{ctx.database_path}{suffix}").unlink(missing_ok=True)
        # A rejects file is only written when there are rejects; an old one would mislead.
        for stale in ctx.folder.glob("*.rejects.csv"):
            stale.unlink()
    except OSError as exc:
        raise InputError(f"cannot use the demo folder {ctx.folder}: {exc.strerror}") from exc


def write_examples(ctx: DemoContext) -> None:
    """The example campaigns and templates, and a campaign.toml, into the demo folder: the
    commands the demo suggests run there (`cd demo`), from wherever the engine is installed."""
    try:
        for path, content in example_files(EXAMPLE_PROGRAM_KEY):
            (ctx.folder / path).parent.mkdir(parents=True, exist_ok=True)
            (ctx.folder / path).write_bytes(content)
        (ctx.folder / SETTINGS_FILE).write_text(DEMO_SETTINGS, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the examples into {ctx.folder}: {exc.strerror}") from exc


DEMO_SETTINGS = f"""\
# Written by `campaign demo`: the settings of the demo folder (run commands from here).
database_url = "sqlite:///{DATABASE_FILE}"
default_timezone = "{PROGRAM_TIMEZONE}"
default_region = "{PROGRAM_REGION}"
campaigns_dir = "campaigns"
templates_dir = "templates"
outbox_dir = "outbox"
reports_dir = "reports"
"""


def create_database(ctx: DemoContext) -> None:
    try:
        settings = Settings(
            database_url=ctx.database_url,
            campaigns_dir=ctx.folder / "campaigns",
            templates_dir=ctx.folder / "templates",
            default_timezone=PROGRAM_TIMEZONE,
            default_region=PROGRAM_REGION,
            outbox_dir=ctx.folder / "outbox",
            # The demo never talks to a real provider, whatever the environment holds.
            sendgrid_api_key=None,
            twilio_account_sid=None,
            twilio_auth_token=None,
            twilio_messaging_service_sid=None,
        )
    except SettingsError as exc:
        name, message = exc.problems[0]
        raise ConfigError(f"demo settings: {name}: {message}") from exc
    ctx.app = build_app(settings, clock=ctx.clock, check_schema=False)
    migrate.upgrade(ctx.app.engine)
    migrate.ensure_current(ctx.app.engine)


def create_program(ctx: DemoContext) -> None:
    app = ctx.require_app()
    with app.sessions() as session, session.begin():
        add_program(
            session,
            key=PROGRAM_KEY,
            name=PROGRAM_NAME,
            timezone=PROGRAM_TIMEZONE,
            region=PROGRAM_REGION,
            at=ctx.now,
        )


def generate_data(ctx: DemoContext) -> None:
    ctx.dataset = generate_dataset(
        ctx.folder, participants=ctx.participants, seed=ctx.seed, now=ctx.now
    )


def import_participants(ctx: DemoContext) -> None:
    path = ctx.require_dataset().paths.participants
    summary = import_participant_file(
        ctx.require_app(),
        path,
        program_key=PROGRAM_KEY,
        rejects_path=ctx.folder / "participants.rejects.csv",
        at=ctx.now,
    )
    ctx.participants_import = ImportFigures.of(path, summary)


def import_events(ctx: DemoContext) -> None:
    path = ctx.require_dataset().paths.events
    summary = import_event_file(
        ctx.require_app(),
        path,
        program_key=PROGRAM_KEY,
        rejects_path=ctx.folder / "events.rejects.csv",
        at=ctx.now,
    )
    ctx.events_import = ImportFigures.of(path, summary)


def summarize(ctx: DemoContext) -> None:
    app = ctx.require_app()
    with app.sessions() as session, session.begin():
        ctx.summary = summarize_program(session, PROGRAM_KEY, at=ctx.now)


def launch_campaigns(ctx: DemoContext) -> None:
    """Plan and launch the example campaigns, as a coordinator would with `campaign launch`."""
    campaigns_dir = ctx.campaigns_dir or ctx.folder / "campaigns"
    if not campaigns_dir.is_dir():
        ctx.notes.append(f"No campaigns folder at {campaigns_dir}: no campaign was launched.")
        return
    app = ctx.require_app()
    ctx.campaigns = launch_examples(
        app.sessions,
        campaigns_dir,
        program_key=PROGRAM_KEY,
        at=ctx.now,
        cap=GlobalCap.from_settings(app.settings),
    )


def _send(ctx: DemoContext) -> None:
    from engine.tick import run_demo_tick

    run_demo_tick(ctx)


def _calls(ctx: DemoContext) -> None:
    from engine.calls.demo import work_a_day

    work_a_day(ctx)


def _console(ctx: DemoContext) -> None:
    from engine.web.demo import add_console_users

    add_console_users(ctx)


def _results(ctx: DemoContext) -> None:
    from engine.demo.report_step import import_results  # imports this module

    import_results(ctx)


def _subscription(ctx: DemoContext) -> None:
    from engine.subscriptions.demo import deliver_demo_subscription

    deliver_demo_subscription(ctx)


def _reports(ctx: DemoContext) -> None:
    from engine.demo.report_step import campaign_reports  # imports this module

    campaign_reports(ctx)


# Later features append their steps here, after the data is in.
STEPS: list[DemoStep] = [
    DemoStep("reset", "Preparing the demo folder", reset_folder),
    DemoStep("examples", "Writing the example campaigns and templates", write_examples),
    DemoStep("database", "Creating and migrating the demo database", create_database),
    DemoStep("program", f"Creating the program {PROGRAM_KEY!r} ({PROGRAM_NAME})", create_program),
    DemoStep("generate", "Generating participants and activity events", generate_data),
    DemoStep("import-participants", "Importing participants", import_participants),
    DemoStep("import-events", "Importing activity events", import_events),
    DemoStep("summary", "Summarising the member base", summarize),
    DemoStep("campaigns", "Planning and launching the example campaigns", launch_campaigns),
    DemoStep("send", "A tick the next day: rendering and sending to the file sink", _send),
    DemoStep("calls", "Agents working a day of calls (claim, script, log)", _calls),
    DemoStep("console", "Console users for the agents and the floor", _console),
    # Keep these two last: results arrive after everything was sent and called.
    DemoStep("results", "Importing renewals, redemptions and other results", _results),
    DemoStep("reports", "Writing the campaign reports (HTML beside the database)", _reports),
    DemoStep("subscription", "Delivering the monthly report for finance", _subscription),
]


# --------------------------------------------------------------------------- run


def run_demo(
    folder: Path = Path("demo"),
    *,
    participants: int = 5000,
    seed: int = 7,
    clock: Clock,
    campaigns_dir: Path | None = None,
    steps: Sequence[DemoStep] | None = None,
    on_step: Callable[[DemoStep], None] | None = None,
) -> DemoReport:
    """Run the demo steps in order in ``folder`` and report what they did."""
    if participants < 1:
        raise InputError(f"--participants must be at least 1 (got {participants})")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"demo folder {folder} exists and is not a folder")
    ctx = DemoContext(
        folder=folder,
        participants=participants,
        seed=seed,
        now=story_start(clock.now()),
        clock=clock,
        database_path=folder / DATABASE_FILE,
        campaigns_dir=campaigns_dir,
    )
    timings: list[StepTiming] = []
    started = time.perf_counter()
    try:
        for step in STEPS if steps is None else steps:
            if on_step is not None:
                on_step(step)
            step_started = time.perf_counter()
            step.run(ctx)
            timings.append(StepTiming(step.name, round(time.perf_counter() - step_started, 3)))
    finally:
        if ctx.app is not None:
            ctx.app.close()
    return _report(ctx, timings, round(time.perf_counter() - started, 3))


def _report(ctx: DemoContext, timings: list[StepTiming], seconds: float) -> DemoReport:
    dataset = ctx.dataset
    return DemoReport(
        folder=ctx.folder,
        database=ctx.database_path,
        database_url=ctx.database_url,
        now=ctx.now,
        seed=ctx.seed,
        participants_requested=ctx.participants,
        participants_file=dataset.paths.participants if dataset else None,
        events_file=dataset.paths.events if dataset else None,
        events_written=dataset.events if dataset else 0,
        planted_bad_rows=dict(dataset.bad_rows) if dataset else {},
        participants_import=ctx.participants_import,
        events_import=ctx.events_import,
        summary=ctx.summary,
        campaigns=list(ctx.campaigns),
        steps=timings,
        seconds=seconds,
        notes=list(ctx.notes),
        next_commands=next_commands(ctx),
        extra=dict(ctx.extra),
        sections=list(ctx.sections),
    )


def next_commands(ctx: DemoContext) -> list[str]:
    """Commands to run in the demo folder, whose campaign.toml names its database."""
    base = "campaign"
    sample = None
    if ctx.summary is not None and ctx.summary.samples:
        sample = ctx.summary.samples[0].external_id
    commands = [
        f"cd {shlex.quote(str(ctx.folder))}",
        f"{base} programs list",
        f"{base} participants list --status inactive --limit 20",
    ]
    if sample is not None:
        commands.append(f"{base} participants show {sample}")
    if ctx.campaigns:
        first = ctx.campaigns[0].campaign
        commands.append(f"{base} plan {first}")
        if sample is not None:
            commands.append(f"{base} explain {first} {sample}")
        commands.append(f"{base} runs list")
        commands.append(f"{base} report campaign {first} --html report.html")
    commands.append(f"campaign demo --folder . --participants 50000 --seed {ctx.seed + 1}")
    return commands

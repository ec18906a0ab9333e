"""The program of the life-of-a-program scenario: its members, their daily files and events,
the four example campaigns adapted to it, and a driver that plays every user action through
the real CLI at a simulated instant.

Everything here is deterministic (no randomness, no wall clock): a failure names a simulated
day that replays identically.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from click.testing import CliRunner, Result

from cli import CliState, cli
from engine.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
PROGRAM_ZONE = ZoneInfo("America/New_York")
# A Monday; the 90 days cross Sydney's spring-forward (4 Oct) and New York's fall-back (1 Nov).
START = date(2026, 9, 7)
DAYS = 90
FALL_BACK = date(2026, 11, 1)

ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "Australia/Sydney")
AREA = {"America/New_York": "+1212", "America/Chicago": "+1312", "America/Los_Angeles": "+1213"}
LOCALES = ("en", "es", "zh")
MEMBER_COLUMNS = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "locale",
    "status",
    "enrolled_at",
    "last_activity_at",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "tier",
    "renewal_date",
    "consent_email",
    "consent_sms",
    "consent_call",
)
# The fields a member file sets and the scenario tracks (last_activity_at also moves with
# events, so it is not one of them).
TRACKED = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "locale",
    "status",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "tier",
    "renewal_date",
)
CONSENTS = ("consent_email", "consent_sms", "consent_call")

# Recurring campaigns (weekly, program zone) and their cron; winback-inactive is launched once.
RECURRING = {
    "activate-new": "0 9 * * MON",
    # 01:30 on Sundays: on the fall-back day that wall time happens twice.
    "points-expiring": "30 1 * * SUN",
    "renewal-due": "30 9 * * WED",
}
WEEKDAY = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}


def local(day: date, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    """An instant at a wall time of the program's zone."""
    return datetime.combine(day, time(hour, minute), tzinfo=PROGRAM_ZONE).replace(fold=fold)


def fire_times(campaign: str, until: datetime) -> list[datetime]:
    """Every fire of a recurring campaign from the first simulated day up to ``until`` (UTC),
    both passes of a repeated wall time counted as ONE fire (a user's 'Sunday 01:30')."""
    minute, hour, _, _, weekday = RECURRING[campaign].split()
    fires = []
    day = START
    while True:
        at = local(day, int(hour), int(minute))
        if at.astimezone(UTC) > until:
            return fires
        if day.weekday() == WEEKDAY[weekday]:
            fires.append(at)
        day += timedelta(days=1)


# --------------------------------------------------------------------------- campaigns


def install_campaigns(folder: Path) -> tuple[Path, Path]:
    """Copies of the four example campaigns and the templates, adapted to the scenario: three
    of them weekly recurring, winback-inactive launched by hand."""
    campaigns, templates = folder / "campaigns", folder / "templates"
    shutil.copytree(ROOT / "templates", templates)
    campaigns.mkdir()
    for source in sorted((ROOT / "campaigns").glob("*.yaml")):
        definition = yaml.safe_load(source.read_text())
        if definition["name"] in RECURRING:
            definition["schedule"] = {
                "cron": RECURRING[definition["name"]],
                "timezone": str(PROGRAM_ZONE),
            }
        (campaigns / source.name).write_text(yaml.safe_dump(definition, sort_keys=False))
    return campaigns, templates


# --------------------------------------------------------------------------- members


def _phone(index: int, zone: str) -> str:
    if zone == "Australia/Sydney":
        return f"+612937440{index % 100:02d}"
    return f"{AREA[zone]}55501{index % 100:02d}"


def base_member(index: int, joined: date | None = None) -> dict[str, Any]:
    """Member ``index`` as the program's CRM holds it. 1-12 have been inactive for months
    (win-back), 13-28 hold points that expire over the coming weeks, every base member renews
    at some point of the 90 days; a member who joined during the scenario (``joined``) is new."""
    zone = ZONES[index % len(ZONES)]
    new = joined is not None
    since = datetime.combine(START, time(12), tzinfo=UTC)
    record: dict[str, Any] = {
        "external_id": f"M{index:03d}",
        "first_name": f"Name{index}",
        "last_name": ("Garcia", "Chen", "Smith", "Nguyen")[index % 4],
        "email": f"m{index:03d}@example.com",
        "phone": _phone(index, zone),
        "timezone": zone,
        "locale": LOCALES[index % len(LOCALES)],
        "status": "inactive" if 1 <= index <= 8 else "active",
        "enrolled_at": (joined.isoformat() if joined else (since - timedelta(days=400)).date()),
        "last_activity_at": (
            None if new else (since - timedelta(days=120 if index <= 12 else 10)).date().isoformat()
        ),
        "points_balance": 0 if new else (1500 + 150 * index if 13 <= index <= 28 else 200),
        "points_expiring": 400 if 13 <= index <= 28 else 0,
        "points_expire_at": (START + timedelta(days=6 * (index - 12)))
        if 13 <= index <= 28
        else None,
        "tier": "Gold" if index % 3 == 0 else "Silver",
        "renewal_date": None if new else START + timedelta(days=2 + 3 * index),
        "consent_email": "yes",
        "consent_sms": "no" if index % 11 == 0 else "yes",
        "consent_call": "yes",
    }
    if new:
        record["enrolled_at"] = joined.isoformat() if joined else None
    return record


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else str(row[c]) for c in columns})
    return path


# --------------------------------------------------------------------------- the CLI driver


@dataclass
class Driver:
    """Plays user actions through the real CLI, each at the simulated instant ``now``."""

    database_url: str
    env: dict[str, str]
    now: datetime = field(default_factory=lambda: local(START, 8))
    runner: CliRunner = field(default_factory=CliRunner)
    invocations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per command, for the runtime

    def at(self, instant: datetime) -> None:
        self.now = instant.astimezone(UTC)

    def invoke(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        self.invocations += 1
        state = CliState(overrides={}, clock=FrozenClock(self.now))
        started = monotonic()
        try:
            return self.runner.invoke(
                cli,
                ["--database-url", self.database_url, *args],
                obj=state,
                env={**self.env, **(env or {})},
            )
        finally:
            name = " ".join(a for a in args[:2] if not a[0].isdigit() and "/" not in a)
            self.seconds[name] = self.seconds.get(name, 0.0) + monotonic() - started

    def ok(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        result = self.invoke(*args, env=env)
        if result.exit_code != 0:
            raise AssertionError(
                f"`campaign {' '.join(args)}` at {self.now.isoformat()} exited "
                f"{result.exit_code}: {result.output}{_exception(result)}"
            )
        return result.output

    def json(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", env=env))


def _exception(result: Result) -> str:
    if result.exception is None or isinstance(result.exception, SystemExit):
        return ""
    import traceback

    return "".join(traceback.format_exception(result.exception))

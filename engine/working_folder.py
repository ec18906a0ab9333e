"""`campaign init`: a coordinator's working folder from nothing.

Writes ``campaign.toml`` (the settings of the folder), ``campaigns/`` with the example campaigns
naming the new program and ``templates/`` with their templates, then says what to run next. It
writes nothing when a file it would write already exists (unless ``force``), and checks every
value before the first file is written, so a mistake leaves the folder as it was.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from engine.errors import InputError
from engine.examples import EXAMPLE_PROGRAM_KEY, example_files
from engine.programs import check_program_key
from engine.settings import DEMO_EMAIL_FROM, DEMO_POSTAL_ADDRESS, SETTINGS_FILE


@dataclass(frozen=True)
class FolderSetup:
    program: str
    name: str
    timezone: str
    region: str
    email_from: str
    postal_address: str


@dataclass(frozen=True)
class InitResult:
    folder: Path
    written: list[Path]  # relative to folder
    overwritten: list[Path]
    campaigns: list[str]
    next_commands: list[str]


def init_folder(folder: Path, setup: FolderSetup, *, force: bool = False) -> InitResult:
    _check(setup)
    files = [(SETTINGS_FILE_PATH, settings_text(setup).encode("utf-8"))]
    files += list(example_files(setup.program))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    existing = [path for path, _ in files if (folder / path).exists()]
    if existing and not force:
        shown = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise InputError(
            f"{folder} already has {shown}{more}: nothing was written; "
            "use --force to overwrite them (your other files are left alone)"
        )
    try:
        for path, content in files:
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except OSError as exc:
        raise InputError(f"cannot write in {folder}: {exc.strerror} ({exc.filename})") from exc
    campaigns = [path.stem for path, _ in files if path.parts[0] == "campaigns"]
    return InitResult(
        folder=folder,
        written=[path for path, _ in files],
        overwritten=existing,
        campaigns=campaigns,
        next_commands=next_commands(folder, setup, campaigns),
    )


SETTINGS_FILE_PATH = Path(SETTINGS_FILE)


def _check(setup: FolderSetup) -> None:
    check_program_key(setup.program)
    if setup.program == EXAMPLE_PROGRAM_KEY:
        raise InputError(
            f"program key {EXAMPLE_PROGRAM_KEY!r} is the demo's: choose your program's own key"
        )
    if not setup.name.strip():
        raise InputError("--name: give the program's display name, used in messages")
    try:
        ZoneInfo(setup.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--timezone {setup.timezone!r} is not an IANA zone") from None
    if setup.region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError(f"--region {setup.region!r} is not an ISO 3166 region code")
    if "@" not in parseaddr(setup.email_from)[1]:
        raise InputError(
            f"--email-from {setup.email_from!r} is not an email address, "
            'e.g. "Northwind Rewards <rewards@northwind.example>"'
        )
    if setup.email_from.strip() == DEMO_EMAIL_FROM:
        raise InputError("--email-from is the demo's sender: give your program's own")
    if setup.postal_address.strip() in ("", DEMO_POSTAL_ADDRESS):
        raise InputError(
            "--postal-address: give your program's postal address "
            "(it is printed in every marketing email)"
        )


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string (the same escapes).
    return json.dumps(value, ensure_ascii=False)


def settings_text(setup: FolderSetup) -> str:
    text = f"""\
# Settings of this working folder for program {setup.program!r} ({setup.name}).
# Environment variables CAMPAIGN_<NAME> win over these; every setting is in the README's
# Configuration table. Commands read this file from the folder they run in.

# The database (a SQLite file here; for production postgresql+psycopg://USER@HOST/DB).
database_url = "sqlite:///campaign.db"
default_timezone = {_toml_string(setup.timezone)}
default_region = {_toml_string(setup.region.upper())}

# Every email goes out from this sender, with this postal address in its footer (required
# for marketing email, e.g. by CAN-SPAM).
email_from = {_toml_string(setup.email_from)}
postal_address = {_toml_string(setup.postal_address)}

# Where `campaign serve` is reachable from the internet (unsubscribe links, Twilio callbacks).
# public_url = "https://campaigns.example.org"

campaigns_dir = "campaigns"
templates_dir = "templates"
# With no SendGrid / Twilio credentials, messages are written here instead of sent.
outbox_dir = "outbox"
"""
    tomllib.loads(text)  # a value that breaks the file is a bug here, never the user's
    return text


def next_commands(folder: Path, setup: FolderSetup, campaigns: list[str]) -> list[str]:
    q = shlex.quote
    first = "winback-inactive" if "winback-inactive" in campaigns else campaigns[0]
    commands = []
    if folder.resolve() != Path.cwd().resolve():
        commands.append(f"cd {q(str(folder))}")
    return [
        *commands,
        "campaign db upgrade",
        f"campaign programs add {q(setup.program)} --name {q(setup.name)} "
        f"--timezone {q(setup.timezone)} --region {q(setup.region.upper())}",
        "campaign participants import members.csv",
        "campaign events import activity.csv",
        "campaign validate",
        f"campaign plan {first}",
        f"campaign explain {first} MEMBER_ID",
        f"campaign preview {first} email-1 MEMBER_ID",
        f"campaign launch {first}",
    ]

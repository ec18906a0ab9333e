"""Programs: the client loyalty or membership programs participants belong to."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from engine.calls.business_days import UnknownCalendarError, normalise_calendar
from engine.consent.defaults import DEFAULTABLE, consent_defaults, set_consent_defaults
from engine.db import migrate
from engine.db.models import Participant, Program
from engine.db.session import make_engine
from engine.errors import EngineError, InputError, NotFoundError

log = logging.getLogger(__name__)
# `campaign validate` reads the programs' settings when a database answers; it does not wait
# long for one that does not (it needs none).
CONNECT_TIMEOUT_SECONDS = 5

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ProgramInfo:
    key: str
    name: str
    timezone: str
    region: str
    participants: int
    sms_opt_out_notice: bool
    holidays: str | None  # the public-holiday calendar business days skip; None: Mon-Fri


def add_program(
    session: Session,
    *,
    key: str,
    name: str,
    timezone: str,
    region: str,
    at: datetime,
    sms_opt_out_notice: bool = True,
    holidays: str | None = None,
    consent_default: Mapping[str, bool] | None = None,
) -> Program:
    check_program_key(key)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"program timezone {timezone!r} is not an IANA zone") from exc
    import phonenumbers  # only here: every command reads programs, few create one

    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError(f"program region {region!r} is not an ISO 3166 region code")
    calendar = holiday_calendar(holidays) if holidays is not None else None
    if session.scalar(select(Program.id).where(Program.key == key)) is not None:
        raise InputError(f"program {key!r} already exists")
    program = Program(
        key=key,
        name=name,
        timezone=timezone,
        region=region,
        created_at=at,
        sms_opt_out_notice=sms_opt_out_notice,
        holidays=calendar,
    )
    set_consent_defaults(program, consent_default or {}, at=at)
    session.add(program)
    session.flush()
    return program


def check_program_key(key: str) -> None:
    if not _KEY.match(key):
        raise InputError(
            f"program key {key!r}: use lower-case letters, digits, '-' or '_' (at most 64)"
        )


def set_sms_opt_out_notice(session: Session, key: str, on: bool) -> Program:
    """Whether the first SMS of the program's campaigns carries the opt-out sentence.

    Messages already rendered into the outbox keep their text."""
    program = get_program(session, key)
    program.sms_opt_out_notice = on
    session.flush()
    return program


def holiday_calendar(code: str) -> str:
    """``code`` checked against the holidays library and normalised (``us-ca`` -> ``US-CA``)."""
    try:
        return normalise_calendar(code)
    except UnknownCalendarError as exc:
        raise InputError(str(exc)) from None


def set_holidays(session: Session, key: str, code: str | None) -> Program:
    """Name the program's public-holiday calendar (None: Monday to Friday again). Business
    hours and days computed from now on skip its holidays (the follow-up standard, callback
    fallback, calling-plan targets); retries already scheduled keep their time."""
    program = get_program(session, key)
    program.holidays = holiday_calendar(code) if code is not None else None
    session.flush()
    return program


def set_shown_before_verification(session: Session, key: str, fields: str | None) -> Program:
    """Which account fields the console shows before the agent records a verified identity
    (a comma list of engine/calls/verification.py's names; None: the default list)."""
    from engine.calls.verification import parse_shown

    program = get_program(session, key)
    program.shown_before_verification = (
        ",".join(parse_shown(fields)) if fields is not None else None
    )
    session.flush()
    return program


def set_consent_default(
    session: Session, key: str, choices: Mapping[str, bool], *, at: datetime
) -> Program:
    """State (yes) or withdraw (no) the program's consent default per channel: members whose
    consent on it is not stated count as opted in from now on (engine/consent/defaults.py).
    Messages already queued were gated when queued and are gated again when sent."""
    program = get_program(session, key)
    set_consent_defaults(program, choices, at=at)
    session.flush()
    return program


def program_details(session: Session, key: str) -> dict[str, Any]:
    """Everything `campaign programs show` prints about program ``key``."""
    from engine.calls.verification import shown_before_verification

    program = get_program(session, key)
    members = session.scalar(
        select(func.count()).select_from(Participant).where(Participant.program_id == program.id)
    )
    defaults = consent_defaults(program)
    return {
        "key": program.key,
        "name": program.name,
        "timezone": program.timezone,
        "region": program.region,
        "participants": int(members or 0),
        "sms_opt_out_notice": program.sms_opt_out_notice,
        "holidays": program.holidays,
        "shown_before_verification": sorted(shown_before_verification(program)),
        # channel -> since when a consent not stated counts as yes; absent: it counts as no.
        "consent_default": {c: defaults.get(c) for c in DEFAULTABLE},
        "created_at": program.created_at,
    }


def sms_opt_out_notices(session: Session) -> dict[str, bool]:
    """Each program's ``sms_opt_out_notice``, by key."""
    return {
        str(key): bool(on)
        for key, on in session.execute(select(Program.key, Program.sms_opt_out_notice))
    }


def opt_out_notice_of(program: str | None, notices: Mapping[str, bool]) -> bool:
    """Whether the first SMS of a campaign of ``program`` carries the opt-out notice, from
    ``notices`` (:func:`sms_opt_out_notices`): the program's setting, else the default (on). A
    campaign that names no program runs in the only one there is (:func:`get_program`)."""
    if program is None:
        return next(iter(notices.values())) if len(notices) == 1 else True
    return notices.get(program, True)


def stored_sms_opt_out_notices(database_url: str) -> dict[str, bool]:
    """:func:`sms_opt_out_notices` for a command that needs no database (`campaign
    validate`): read from ``database_url`` when there is a database there with a current
    schema; otherwise empty, and every program gets the default (the notice on). Never
    creates the database: a SQLite file that does not exist yet is not opened."""
    engine = None
    try:
        url = make_url(database_url)
        options: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:" or not Path(url.database).is_file():
                return {}
        else:
            options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        engine = make_engine(database_url, **options)
        migrate.ensure_current(engine)
        with Session(engine) as session:
            return sms_opt_out_notices(session)
    except (EngineError, SQLAlchemyError) as exc:
        # Not a usable URL, not reachable, not migrated, not a database: validate, which
        # never needed one, still runs on the files alone.
        log.debug("programs' SMS opt-out notice settings not read: %s", exc)
        return {}
    finally:
        if engine is not None:
            engine.dispose()


def get_program(session: Session, key: str | None) -> Program:
    """The program named ``key``; with no key, the only program there is."""
    if key is not None:
        program = session.scalar(select(Program).where(Program.key == key))
        if program is None:
            raise NotFoundError(
                f"no program {key!r}; create it with `campaign programs add {key} --name ...`"
            )
        return program
    programs = session.scalars(select(Program).order_by(Program.key).limit(2)).all()
    if len(programs) == 1:
        return programs[0]
    if not programs:
        raise NotFoundError("there is no program yet; create one with `campaign programs add`")
    raise InputError("there is more than one program; name one with --program")


def list_programs(session: Session) -> list[ProgramInfo]:
    counts = (
        select(Participant.program_id, func.count().label("n"))
        .group_by(Participant.program_id)
        .subquery()
    )
    rows = session.execute(
        select(Program, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.program_id == Program.id)
        .order_by(Program.key)
    ).all()
    return [
        ProgramInfo(p.key, p.name, p.timezone, p.region, int(n), p.sms_opt_out_notice, p.holidays)
        for p, n in rows
    ]

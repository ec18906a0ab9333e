"""Programs: the client loyalty or membership programs participants belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import Participant, Program
from engine.errors import InputError, NotFoundError

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ProgramInfo:
    key: str
    name: str
    timezone: str
    region: str
    participants: int
    sms_opt_out_notice: bool


def add_program(
    session: Session,
    *,
    key: str,
    name: str,
    timezone: str,
    region: str,
    at: datetime,
    sms_opt_out_notice: bool = True,
) -> Program:
    if not _KEY.match(key):
        raise InputError(
            f"program key {key!r}: use lower-case letters, digits, '-' or '_' (at most 64)"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"program timezone {timezone!r} is not an IANA zone") from exc
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError(f"program region {region!r} is not an ISO 3166 region code")
    if session.scalar(select(Program.id).where(Program.key == key)) is not None:
        raise InputError(f"program {key!r} already exists")
    program = Program(
        key=key,
        name=name,
        timezone=timezone,
        region=region,
        created_at=at,
        sms_opt_out_notice=sms_opt_out_notice,
    )
    session.add(program)
    session.flush()
    return program


def set_sms_opt_out_notice(session: Session, key: str, on: bool) -> Program:
    """Whether the first SMS of the program's campaigns carries the opt-out sentence.

    Messages already rendered into the outbox keep their text."""
    program = get_program(session, key)
    program.sms_opt_out_notice = on
    session.flush()
    return program


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
        ProgramInfo(p.key, p.name, p.timezone, p.region, int(n), p.sms_opt_out_notice)
        for p, n in rows
    ]

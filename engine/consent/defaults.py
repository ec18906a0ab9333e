"""A program may state consent for its members: "consent by program default".

SMS and calls need a stated opt-in (engine.policy.gate). A program whose members agreed to
texts or calls when they joined (its terms say so) states it once per channel:
``campaign programs set KEY --consent-default sms=yes``. From then on a member of that program
whose consent on that channel is NOT stated (no row) counts as opted in.

Never by accident: it is unset unless a program sets it, and it fills only the gap. A member's
stated ``no`` is a row, so the default never reaches it; an opt-out (a ``no`` row) and any
suppression (checked by the gate first) always win.

Read wherever consent is decided: plan/explain (engine/planning/rules.py, in SQL through
:func:`consent_defaults` of the campaign's program), the sequencer's and dispatch's gates
(:func:`defaulted`) and the call list (:func:`says_yes` on each task's program).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from engine.db.tables.members import participant_consents, participants, programs
from engine.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.db.models import Program

# Email needs no stated consent (soft opt-in: allowed unless opted out), so only these.
DEFAULTABLE = ("sms", "call")
_COLUMNS = {"sms": programs.c.consent_default_sms_at, "call": programs.c.consent_default_call_at}
_ATTRIBUTES = {"sms": "consent_default_sms_at", "call": "consent_default_call_at"}
_YES, _NO = ("yes", "y", "true", "1", "on"), ("no", "n", "false", "0", "off")
# Participant ids per IN list: well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 5000


def parse_consent_defaults(values: Iterable[str]) -> dict[str, bool]:
    """``["sms=yes", "call=no"]`` -> ``{"sms": True, "call": False}``; one clear error."""
    choices: dict[str, bool] = {}
    for value in values:
        channel, sep, answer = value.partition("=")
        channel, answer = channel.strip().lower(), answer.strip().lower()
        if channel == "email":
            raise InputError(
                "--consent-default email: email needs no stated consent (members are emailed "
                "unless they opted out); a default applies to sms and call"
            )
        if not sep or channel not in DEFAULTABLE or answer not in _YES + _NO:
            raise InputError(
                f"--consent-default {value!r}: use CHANNEL=yes or CHANNEL=no, "
                f"CHANNEL one of {', '.join(DEFAULTABLE)} (e.g. sms=yes)"
            )
        choices[channel] = answer in _YES
    return choices


def consent_defaults(program: Any) -> dict[str, datetime]:
    """channel -> since when ``program`` (a programs row) takes consent as given on it."""
    found = {c: getattr(program, _ATTRIBUTES[c], None) for c in DEFAULTABLE}
    return {channel: since for channel, since in found.items() if since is not None}


def says_yes(program: Any, channel: str) -> bool:
    return channel in consent_defaults(program)


def set_consent_defaults(program: Program, choices: Mapping[str, bool], *, at: datetime) -> None:
    """Apply ``choices`` (from :func:`parse_consent_defaults`) to ``program``. A yes that was
    already set keeps its date: the date says since when members were taken as consenting."""
    for channel, yes in choices.items():
        attribute = _ATTRIBUTES[channel]
        if not yes:
            setattr(program, attribute, None)
        elif getattr(program, attribute) is None:
            setattr(program, attribute, at)


def unstated_but_defaulted(
    session: Session,
    participant_id: int,
    program: Any,
    channels: Iterable[str],
    *,
    stated: Collection[str] | None = None,
) -> dict[str, datetime]:
    """channel -> since when, for the channels on which the member stated nothing and their
    program's default says yes (what a call or a message to them relies on). No query unless
    the program has a default; none either given ``stated``, the channels of ``channels``
    the member stated (read by :func:`stated_channels` for many members at once)."""
    defaults = {c: s for c, s in consent_defaults(program).items() if c in set(channels)}
    if not defaults:
        return {}
    if stated is None:
        stated = set(
            session.scalars(
                select(participant_consents.c.channel).where(
                    participant_consents.c.participant_id == participant_id,
                    participant_consents.c.channel.in_(list(defaults)),
                )
            )
        )
    return {c: since for c, since in defaults.items() if c not in stated}


def stated_channels(
    session: Session, participant_ids: Collection[int], channel: str
) -> dict[int, tuple[str, ...]]:
    """participant id -> ``(channel,)`` when the member stated consent on ``channel`` (any
    answer), else ``()``: for :func:`unstated_but_defaulted` over many members, one read."""
    from engine.db.queries import among

    consent = participant_consents.c
    ids = sorted(participant_ids)
    found: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        found.update(
            session.scalars(
                select(consent.participant_id).where(
                    among(session, consent.participant_id, ids[start : start + _CHUNK]),
                    consent.channel == channel,
                )
            )
        )
    return {pid: (channel,) if pid in found else () for pid in ids}


def describe(program: Any) -> str:
    """'sms yes (set on 2026-03-02), call not set' for `programs show` and `list`."""
    defaults = consent_defaults(program)
    return ", ".join(
        f"{c} yes (set on {defaults[c]:%Y-%m-%d})" if c in defaults else f"{c} not set"
        for c in DEFAULTABLE
    )


def defaulted(
    db: Session | Connection, participant_ids: Collection[int], channels: Iterable[str]
) -> set[tuple[int, str]]:
    """(participant id, channel) for those of ``participant_ids`` whose program's default says
    yes on the channel. The caller applies it only where the member stated nothing. One read
    of the (small) programs table; the participants are read only when a program has one."""
    wanted = [c for c in sorted(set(channels)) if c in _COLUMNS]
    if not wanted or not participant_ids:
        return set()
    defaulting: dict[str, set[int]] = {c: set() for c in wanted}
    for program_id, *since in db.execute(
        select(programs.c.id, *(_COLUMNS[c] for c in wanted))
    ).all():
        for channel, value in zip(wanted, since, strict=True):
            if value is not None:
                defaulting[channel].add(program_id)
    if not any(defaulting.values()):
        return set()
    ids = sorted(participant_ids)
    result: set[tuple[int, str]] = set()
    for start in range(0, len(ids), _CHUNK):
        for pid, program_id in db.execute(
            select(participants.c.id, participants.c.program_id).where(
                participants.c.id.in_(ids[start : start + _CHUNK])
            )
        ).all():
            result.update((pid, c) for c in wanted if program_id in defaulting[c])
    return result

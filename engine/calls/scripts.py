"""What an agent sees on a call: the script, the verification questions, the account review
panel and the campaign's talking points, offer and cross-sell.

What only a call sheet needs (the verification gate, the case, consent wording, names,
templates) is imported when a task was claimed: `calls next` with nothing callable pays
for the claim alone (#18). The sheet reads the Core tables, on the claim's plain Connection
(`calls next`: no ORM imported) or on a console's Session (the task, member and program
then come from its identity map).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.calls import DIALER_PROVIDER as DIALER
from engine.calls.agent_rows import agent_row
from engine.calls.claim_form import ClaimForms
from engine.calls.claiming import take_next
from engine.calls.tasks import DEFAULT_LEASE, Claim, step_form_of
from engine.db.reading import Reader, row_by_id
from engine.db.tables.calls import call_tasks, caller_log
from engine.db.tables.members import (
    activity_events,
    participant_consents,
    participants,
    programs,
)
from engine.db.tables.outbox import message_events, outbox_messages
from engine.errors import NotFoundError
from engine.policy import candidate_zones
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.calls.verification import Gate
    from engine.templates import Renderer

# The script's member fields that may be withheld until the identity is verified.
WITHHOLDABLE = (
    "status",
    "tier",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "renewal_date",
)
# The parts of a sheet its gate shows only when the program says so, or once verified.
UNREAD_UNTIL_SHOWN = ("activity", "contacts", "case")
RECENT_ACTIVITY = 10
RECENT_CONTACTS = 30
REDEMPTION_TYPES = ("redemption",)


@dataclass(frozen=True)
class Question:
    ask: str
    expected: str


@dataclass(frozen=True)
class ContactRecord:
    at: datetime
    channel: str
    what: str  # template or disposition
    outcome: str
    by: str | None = None
    notes: str | None = None
    campaign: str | None = None


@dataclass
class CallSheet:
    task_id: int
    kind: str
    campaign: str | None
    step: str | None
    attempt: int
    max_attempts: int
    claimed_by: str | None
    claimed_until: datetime | None
    external_id: str
    name: str
    phone: str | None
    local_time: str | None
    locale: str | None
    script: str | None
    verification: list[Question]
    account: dict[str, Any]
    consents: dict[str, str]
    suppressions: list[str]
    redemptions: list[dict[str, Any]]
    activity: list[dict[str, Any]]
    contacts: list[ContactRecord]
    talking_points: list[str] = field(default_factory=list)
    offer: str | None = None
    cross_sell: str | None = None
    notes: list[str] = field(default_factory=list)
    case: Any = None  # the case this call follows up, with its history (engine/cases/views)


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def verification_questions(p: Any) -> list[Question]:
    """Questions to ask before any account detail is discussed, with the answers on file (of
    ``p``, a participants row). The agent reads the question, never the answer."""
    from engine.locales import display_name

    questions = [
        Question("Your full name, please?", display_name(p.first_name, p.last_name, p.locale))
    ]
    questions.append(Question("Your member number?", p.external_id))
    if p.email:
        questions.append(
            Question("The email address on your account?", f"{p.email} ({_mask_email(p.email)})")
        )
    attributes = p.attributes or {}
    for key, ask in (
        ("postal_code", "Your postal code?"),
        ("zip", "Your ZIP code?"),
        ("date_of_birth", "Your date of birth?"),
        ("dob", "Your date of birth?"),
    ):
        if attributes.get(key):
            questions.append(Question(ask, str(attributes[key])))
    if p.renewal_date:
        questions.append(
            Question("In which month does your membership renew?", p.renewal_date.strftime("%B"))
        )
    return questions[:4]


def _contacts(db: Reader, participant_id: int) -> list[ContactRecord]:
    records: list[ContactRecord] = []
    message = outbox_messages.c
    messages = db.execute(
        select(
            message.id,
            message.channel,
            message.campaign,
            message.step_id,
            message.template,
            message.status,
            message.status_reason,
            message.created_at,
            message.sent_at,
        )
        .where(message.participant_id == participant_id)
        .order_by(message.created_at.desc())
        .limit(RECENT_CONTACTS)
    ).all()
    event = message_events.c
    events: dict[int, list[str]] = {}
    if messages:
        for outbox_id, name in db.execute(
            select(event.outbox_id, event.event)
            .where(event.outbox_id.in_([m.id for m in messages]))
            .order_by(event.occurred_at)
        ):
            if outbox_id is not None:
                events.setdefault(outbox_id, []).append(name)
    for m in messages:
        outcome = m.status + (f" ({m.status_reason})" if m.status_reason else "")
        seen = events.get(m.id)
        if seen:
            outcome += "; events: " + ", ".join(dict.fromkeys(seen))
        records.append(
            ContactRecord(
                at=m.sent_at or m.created_at,
                channel=m.channel,
                what=f"{m.step_id} ({m.template})",
                outcome=outcome,
                campaign=m.campaign,
            )
        )
    for inbound in db.execute(
        select(event.occurred_at, event.provider, event.event, event.detail)
        .where(event.participant_id == participant_id, event.outbox_id.is_(None))
        # A dialer's imported calls are keyed there too; they show as caller-log entries.
        .where(event.provider != DIALER)
        .order_by(event.occurred_at.desc())
        .limit(RECENT_CONTACTS)
    ):
        body = inbound.detail.get("body") if isinstance(inbound.detail, dict) else None
        records.append(
            ContactRecord(
                at=inbound.occurred_at,
                channel=inbound.provider,
                what="inbound",
                outcome=inbound.event,
                notes=str(body) if body else None,
            )
        )
    entry = caller_log.c
    for logged in db.execute(
        select(
            entry.logged_at,
            entry.disposition,
            entry.record,
            entry.agent,
            entry.notes,
            entry.campaign,
        )
        .where(entry.participant_id == participant_id)
        .order_by(entry.logged_at.desc())
        .limit(RECENT_CONTACTS)
    ):
        records.append(
            ContactRecord(
                at=logged.logged_at,
                channel="call",
                what=logged.disposition,
                outcome=logged.record or "(erased)",
                by=logged.agent,
                notes=logged.notes,
                campaign=logged.campaign,
            )
        )
    records.sort(key=lambda r: r.at, reverse=True)
    return records[:RECENT_CONTACTS]


@functools.lru_cache(maxsize=8)
def script_renderer(templates_dir: str, postal_address: str, public_url: str) -> Renderer:
    """The renderer of call scripts, one per process and settings: building one per sheet
    (an environment, every script compiled again) was a sixth of the console's page. It
    looks at the files on each render (``reload``), so a script edited on disk shows on the
    next sheet, as when each sheet had its own renderer."""
    from engine.templates import Renderer

    return Renderer(
        templates_dir, postal_address=postal_address, public_url=public_url, reload=True
    )


def call_sheet(
    db: Reader,
    task_id: int,
    *,
    settings: Settings,
    at: datetime,
    withheld: Collection[str] = (),
) -> CallSheet:
    """Everything for one call task (the script rendered in the participant's locale).
    ``withheld``: member fields the script is rendered without (blank), for a console page
    shown before the agent recorded a verified identity (engine/calls/verification.py)."""
    task = row_by_id(db, call_tasks, task_id)
    if task is None:
        raise NotFoundError(f"no call task {task_id}")
    p, program = _member_of(db, task)
    return _sheet(db, task, p, program, settings=settings, at=at, withheld=withheld)


def _member_of(db: Reader, task: Any) -> tuple[Any, Any]:
    """The task's participants and programs rows."""
    p = row_by_id(db, participants, task.participant_id)
    assert p is not None  # FK
    program = row_by_id(db, programs, p.program_id)
    assert program is not None  # FK
    return p, program


def _sheet(
    db: Reader,
    task: Any,
    p: Any,
    program: Any,
    *,
    settings: Settings,
    at: datetime,
    withheld: Collection[str],
    unread: Collection[str] = (),
) -> CallSheet:
    """:func:`call_sheet` of ``task`` (a call_tasks row), its member ``p`` and their
    ``program`` (rows). ``unread``: parts of the sheet ("activity", "contacts", "case") left
    empty without a query, for a sheet that would not show them (:func:`gated_call_sheet`)."""
    from engine.consent.defaults import consent_defaults
    from engine.consent.suppression_lookup import email_hash, hash_normalised, suppressions_for
    from engine.consent.wording import program_default
    from engine.locales import display_name

    # What the sheet reads of the run's definition (the step's script, talking points, offer;
    # the campaign's name), from the run's claim form: no pydantic (#18).
    form = ClaimForms(db).for_sheet(task.run_id)
    step = step_form_of(task, form)
    notes: list[str] = []
    script_text: str | None = None
    script_name = task.script or (step.script if step else None)
    if script_name:
        # Jinja2 only when a sheet has a script to render ("nothing callable" needs none).
        from engine.templates import message_context, participant_data

        renderer = script_renderer(
            str(settings.templates_dir), settings.postal_address, settings.public_url
        )
        campaign = (
            {"name": form.name, "description": form.description}
            if form is not None
            else {"name": task.campaign or "", "description": ""}
        )
        member = participant_data(p)
        blanks: dict[str, Any] = {name: None for name in withheld if name in WITHHOLDABLE}
        context = message_context(
            replace(member, **blanks) if blanks else member,
            program,
            campaign,
            {"id": step.id if step else task.kind},
        )
        script_text = renderer.render_call_script(script_name, context, p.locale)
    else:
        notes.append("no call script for this task")
    try:
        zones = candidate_zones(
            participant_zone=p.timezone,
            phone=p.phone,
            program_zone=program.timezone,
            region=program.region,
        ).zones
        local = ", ".join(f"{at.astimezone(ZoneInfo(z)):%a %H:%M} {z}" for z in zones[:3])
    except ValueError:
        local = None
    consent = participant_consents.c
    consents = {
        channel: status
        for channel, status in db.execute(
            select(consent.channel, consent.status).where(consent.participant_id == p.id)
        )
    }
    # Not stated, but the program states it: the call relies on that (engine/consent/defaults).
    for channel, since in consent_defaults(program).items():
        consents.setdefault(channel, program_default(since))
    hashes = []
    if p.email:
        hashes.append(email_hash(p.email))
    if p.phone:
        hashes.append(hash_normalised(p.phone))
    suppressions = [f"{s.channel}: {s.reason} ({s.source})" for s in suppressions_for(db, hashes)]
    activity = activity_events.c
    events = (
        []
        if "activity" in unread
        else db.execute(
            select(
                activity.type,
                activity.occurred_at,
                activity.points,
                activity.amount,
                activity.source,
            )
            .where(activity.participant_id == p.id)
            .order_by(activity.occurred_at.desc(), activity.id.desc())
            .limit(50)
        ).all()
    )

    contacts = [] if "contacts" in unread else _contacts(db, p.id)
    case = None
    if task.case_id is not None and "case" not in unread:
        # A case's follow-up: the case's view, imported only then.
        from engine.cases.views import show_case

        case = show_case(db, task.case_id, at=at)

    def ev(e: Any) -> dict[str, Any]:
        return {
            "type": e.type,
            "at": e.occurred_at,
            "points": e.points,
            "amount": e.amount,
            "source": e.source,
        }

    return CallSheet(
        task_id=task.id,
        kind=task.kind,
        campaign=task.campaign,
        step=step.id if step else None,
        attempt=task.attempts + 1,
        max_attempts=task.max_attempts,
        claimed_by=task.claimed_by,
        claimed_until=task.claimed_until,
        external_id=p.external_id,
        name=display_name(p.first_name, p.last_name, p.locale),
        phone=p.phone,
        local_time=local,
        locale=p.locale,
        script=script_text,
        verification=verification_questions(p),
        account={
            "status": p.status,
            "tier": p.tier,
            "points_balance": p.points_balance,
            "points_expiring": p.points_expiring,
            "points_expire_at": p.points_expire_at,
            "renewal_date": p.renewal_date,
            "member_since": p.enrolled_at,
            "last_activity_at": p.last_activity_at,
            "account_manager": p.account_manager,
        },
        consents=consents,
        suppressions=suppressions,
        redemptions=[ev(e) for e in events if e.type in REDEMPTION_TYPES][:5],
        activity=[ev(e) for e in events[:RECENT_ACTIVITY]],
        contacts=contacts,
        talking_points=list(step.talking_points) if step else [],
        offer=step.offer if step else None,
        cross_sell=step.cross_sell if step else None,
        notes=notes,
        case=case,
    )


def gated_call_sheet(
    db: Reader, task: Any, *, settings: Settings, at: datetime, zone: str
) -> tuple[CallSheet, Gate]:
    """The call sheet of a claim (a call_tasks row) as the agent may see it now
    (engine/calls/verification.py): before verification the script is rendered with the gated
    fields blank and the sheet holds only the program's pre-verification fields; ``zone`` is
    the agent's, for the time shown."""
    from engine.calls.verification import gate_for

    p, program = _member_of(db, task)
    gate = gate_for(task, program, zone)
    # What gate.restrict drops is never read (five statements fewer per `calls next`, #18).
    unread = [part for part in UNREAD_UNTIL_SHOWN if not gate.shows(part)]
    sheet = _sheet(
        db, task, p, program, settings=settings, at=at, withheld=gate.hidden, unread=unread
    )
    gate = gate.with_account(sheet)
    return gate.restrict(sheet), gate


@dataclass(frozen=True)
class NextCall:
    claim: Claim
    sheet: CallSheet
    gate: Gate | None = None  # set when the sheet is gated on verification


def serve_next(
    db: Reader,
    agent: str,
    *,
    settings: Settings,
    at: datetime,
    lease: timedelta = DEFAULT_LEASE,
    gated: bool = False,
) -> NextCall | None:
    """`calls next`: :func:`take_next` and the call sheet of the task claimed. ``gated``:
    the sheet the agent may see before verifying the member (:func:`gated_call_sheet`)."""
    claim = take_next(db, agent, settings=settings, at=at, lease=lease)
    if claim is None:
        return None
    return next_call(db, claim, settings=settings, at=at, gated=gated)


def next_call(
    db: Reader, claim: Claim, *, settings: Settings, at: datetime, gated: bool = False
) -> NextCall:
    """The call sheet of ``claim`` (just taken), as :func:`serve_next` answers it."""
    if gated:
        task = row_by_id(db, call_tasks, claim.task_id)
        assert task is not None  # just claimed
        zone = agent_row(db, claim.agent).timezone
        sheet, gate = gated_call_sheet(db, task, settings=settings, at=at, zone=zone)
        return NextCall(claim, sheet, gate)
    return NextCall(claim, call_sheet(db, claim.task_id, settings=settings, at=at))

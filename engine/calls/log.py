"""Logging a call: validate against the disposition's documentation template, append to the
caller log and the contact ledger, and apply the disposition's effect to the task.

Effects (see docs/calls.md):

- ``conversion`` (CONVERTED): an activity event of the campaign goal's first event type
  (source ``call``, reference ``call:<log id>``) and the conversion matcher, so the
  conversion is attributed to the call; the task closes.
- ``recycle`` (NO_ANSWER, BUSY, VOICEMAIL, VERIFICATION_FAILED): the task is served again after
  the recycle delay, never later than the follow-up standard's business hours after this
  attempt, at an instant inside the member's calling window (engine/calls/standards.py
  ``schedule_retry``; when the window leaves no chance within the standard, the result says
  so); it closes as ``unreachable`` once it has had max(max_attempts, the standard's minimum)
  attempts.
- ``callback``: a callback task due at the time given (agent-only: the same agent).
- ``follow_up`` (PROMISED): a follow-up task after the recycle delay.
- ``escalate``: the task moves to that team's queue.
- ``do_not_call``: the number is suppressed on calls at once (every campaign, every program)
  and the participant's other open call tasks close.
- ``invalid_number`` (WRONG_NUMBER, DISCONNECTED): the number is suppressed on calls and SMS
  with reason ``invalid``.
- ``complaint`` and ``none``: the task closes.

Then cases (engine/cases/hooks.py): a COMPLAINT or ESCALATED call opens (or joins) a case,
and a call on a case's follow-up task goes into the case's history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.calls import caller_log
from engine.calls.batch_rows import MemberRow, TaskRow
from engine.calls.dispositions import (
    DispositionError,
    DispositionSet,
    ValidatedEntry,
    check_entry,
)
from engine.calls.standards import Retry, schedule_retry, standard_for
from engine.calls.tasks import DefinitionCache
from engine.cases.bulk import OPENING_EFFECTS, CaseOpenings
from engine.cases.hooks import RulesFor, after_call
from engine.clock import ensure_utc
from engine.consent.defaults import unstated_but_defaulted
from engine.consent.suppressions import add_suppression
from engine.consent.wording import program_default
from engine.db.bulk import insert_rows, update_rows
from engine.db.models import (
    ActivityEvent,
    Agent,
    CallTask,
    CampaignRun,
    Contact,
    Participant,
    Program,
)
from engine.db.session import take_write_lock
from engine.errors import InputError, NotFoundError
from engine.policy import candidate_zones, effective_window, next_allowed

# The caller-log field that says a call relied on the program's consent default (not one of a
# disposition template's fields).
CONSENT_BASIS = "consent_basis"


@dataclass(frozen=True)
class LogResult:
    log_id: int | None  # None from a batch (CallBatch writes its entries together)
    seq: int
    task_id: int
    disposition: str
    record: str
    verified: bool | None
    handle_seconds: int | None
    task_status: str
    next_due_at: datetime | None
    effect: str
    created_task_id: int | None = None
    conversions: int = 0
    closed_tasks: int = 0
    hash: str = ""
    # Set when the member's calling window leaves no chance to retry within the standard.
    standard_note: str | None = None
    # The case the call opened, joined or followed up (engine/cases/hooks.py).
    case_id: int | None = None
    case_opened: bool = False


def next_callable_for(
    participant: Participant | MemberRow, program: Program, definition: object | None
) -> Callable[[datetime], datetime | None]:
    """``t -> the earliest instant >= t inside the member's calling window`` (their zones, the
    legal hours narrowed by the campaign's call_window); no zone known: any instant."""
    return next_callable_in(callable_zones(participant, program), definition)


def next_callable_in(
    zones: tuple[str, ...] | None, definition: object | None
) -> Callable[[datetime], datetime | None]:
    """:func:`next_callable_for` given the member's :func:`callable_zones`."""
    if zones is None:
        return lambda t: t
    window = effective_window("call", getattr(definition, "call_window", None))
    return lambda t: next_allowed(t, zones, window)


def callable_zones(
    participant: Participant | MemberRow, program: Program
) -> tuple[str, ...] | None:
    """The member's candidate zones (None: no zone known, any instant is in the window)."""
    try:
        return candidate_zones(
            participant_zone=participant.timezone,
            phone=participant.phone,
            program_zone=program.timezone,
            region=program.region,
        ).zones
    except ValueError:
        return None


@dataclass(frozen=True)
class CallInput:
    """What an agent (or a dialer row) documented for one task."""

    task_id: int
    agent: str
    disposition: str
    fields: Mapping[str, str]
    verified: bool | None = None
    notes: str | None = None
    duration_seconds: int | None = None  # dialer: talk time; else claim to log


@dataclass(frozen=True)
class CallContext:
    """What `log_call` otherwise loads row by row; a batch (engine/calls/dialer.py) loads it
    for many calls at once, under the same locks, and passes it with ``checked``."""

    agent: Agent
    participant: Participant | MemberRow
    program: Program
    definition: object | None
    run_status: str | None
    # The channels of "call" the member stated consent on, read for the batch (None: not read;
    # log_call reads it when the program has a call consent default).
    stated_consent: tuple[str, ...] | None = None


# A task as log_call takes it: the ORM's (`calls log`), or the row a batch read
# (engine/calls/batch_rows.py), which only the batch writes.
LoggedTask = CallTask | TaskRow
# The effects that write nothing outside a CallBatch (or, opening a case, write it first).
BATCHED_EFFECTS = ("recycle", "escalate", "complaint", "none")
# The call task columns log_call (and a case the call opens) may change.
TASK_COLUMNS = (
    "attempts",
    "last_attempt_at",
    "outcome",
    "claimed_by",
    "claimed_until",
    "claimed_at",
    "updated_at",
    "reached_at",
    "status",
    "close_reason",
    "due_at",
    "team",
    "assigned_agent",
    "case_id",
)


class CallBatch:
    """What :func:`log_call` writes for many calls of one transaction at once (a dialer
    import chunk), each kind together at :meth:`write` (engine/db/bulk.py): caller log entries
    (through a :class:`caller_log.ChainWriter`), contact ledger rows (nothing in a log reads
    contacts back), given ``cases`` the new cases the calls open (engine/cases/bulk.py;
    their LogResult then names no case), and the logged tasks' new state (engine/db/bulk.py: one
    UPDATE of TASK_COLUMNS: the unit of work's change tracking cost more than the rest
    of a task's write). A logged task leaves the session (:meth:`updated`); whoever reads or
    writes call_tasks otherwise while tasks wait calls :meth:`write` first."""

    def __init__(self, session: Session, cases: CaseOpenings | None = None) -> None:
        self.session = session
        self.chain = caller_log.ChainWriter(session, write_pending=self.write)
        self.contacts: list[dict[str, object]] = []
        self.cases = cases
        # Retries already scheduled in this batch: schedule_retry is a function of the call's
        # time, the delay, the run (standard, calling window), the program (clock, holidays)
        # and the member's zones, which many rows of a file share.
        self.retries: dict[tuple[object, ...], Retry] = {}
        # The members' zones by what they are worked out from: a member with no zone on
        # record is placed by their phone number, which costs more than the rest of a call.
        self.zones: dict[tuple[object, ...], tuple[str, ...] | None] = {}
        # Logged tasks by id, rows or detached objects, their new state written at write().
        self.tasks: dict[int, LoggedTask] = {}

    def updated(self, task: LoggedTask) -> None:
        """The task's new state waits for :meth:`write`, where every column a call may change
        is written for every task of the batch, changed or not (one statement). An ORM task
        (one the batch read again, or a case hook read) leaves the session, so the unit of
        work never writes it too (nor tracks it): the object keeps its values, and a later
        call of the batch on it goes on from them."""
        self.tasks[task.id] = task
        if isinstance(task, CallTask) and task in self.session:  # not logged in the batch yet
            self.session.expunge(task)

    def zones_of(
        self, participant: Participant | MemberRow, program: Program
    ) -> tuple[str, ...] | None:
        """:func:`callable_zones`, once per distinct zone, number, program clock and region."""
        key = (participant.timezone, participant.phone, program.timezone, program.region)
        if key not in self.zones:
            self.zones[key] = callable_zones(participant, program)
        return self.zones[key]

    def write(self) -> None:
        self.chain.flush()
        if self.contacts:
            insert_rows(self.session.connection(), Contact.__table__, self.contacts)
            self.contacts = []
        if self.cases is not None and self.cases.waiting:
            # Before the tasks: an escalated task a new case adopts takes its case_id here.
            self.cases.write(caller_log.ids_by_seq(self.session, self.cases.seqs()))
        if self.tasks:
            rows = [
                {"id": task.id, **{name: getattr(task, name) for name in TASK_COLUMNS}}
                for task in self.tasks.values()
            ]
            update_rows(self.session.connection(), CallTask.__table__, rows)
            self.tasks = {}


def task_problems(
    task: LoggedTask | None, call: CallInput, *, task_id: int, at: datetime
) -> list[str]:
    """Why ``call`` cannot be logged on ``task`` (None: there is no such task), if at all."""
    if task is None:
        return [f"no call task {task_id}"]
    if task.status == "closed":
        return [f"task {task.id} is closed ({task.outcome or task.close_reason})"]
    if (
        task.status == "claimed"
        and task.claimed_by != call.agent
        and task.claimed_until is not None
        and task.claimed_until > at
    ):
        return [f"task {task.id} is claimed by {task.claimed_by}, not {call.agent}"]
    return []


def entry_problems(
    call: CallInput, dispositions: DispositionSet, *, at: datetime
) -> tuple[ValidatedEntry | None, list[str]]:
    """The entry checked against its disposition's documentation template, with every
    problem (None: the disposition is not one in force)."""
    try:
        disposition = dispositions.get(call.disposition)
    except DispositionError as exc:
        return None, [str(exc)]
    return check_entry(
        disposition, dict(call.fields), verified=call.verified, notes=call.notes, at=at
    )


def call_problems(
    session: Session, call: CallInput, dispositions: DispositionSet, *, at: datetime
) -> tuple[CallTask | None, ValidatedEntry | None, list[str]]:
    """Everything `log_call` checks before it writes, with EVERY problem found: the task
    exists and is open to this agent, and the entry satisfies the disposition's documentation
    template. The task row is locked (PostgreSQL), so two logs of one task never both pass."""
    task = session.get(CallTask, call.task_id, populate_existing=True, with_for_update=True)
    problems = task_problems(task, call, task_id=call.task_id, at=at)
    entry, problems_of_entry = entry_problems(call, dispositions, at=at)
    return task, entry, [*problems, *problems_of_entry]


def validate_call(
    session: Session, call: CallInput, dispositions: DispositionSet, *, at: datetime
) -> tuple[CallTask, ValidatedEntry]:
    """:func:`call_problems`, refusing a call that has any (every problem in the message)."""
    task, entry, problems = call_problems(session, call, dispositions, at=at)
    if task is None:
        raise NotFoundError("; ".join(problems))
    if entry is None:
        raise DispositionError("; ".join(problems))
    if problems:
        raise InputError("; ".join(problems))
    return task, entry


def log_call(
    session: Session,
    call: CallInput,
    dispositions: DispositionSet,
    *,
    at: datetime,
    source: str = "agent",
    lock: bool = True,
    checked: tuple[LoggedTask, ValidatedEntry] | None = None,
    case_rules: RulesFor | None = None,
    context: CallContext | None = None,
    batch: CallBatch | None = None,
) -> LogResult:
    """Validate, append to the caller log, apply the effect. On SQLite call it first in its
    transaction (``lock`` takes the write lock; a batch that took it already passes False).
    ``checked``: what :func:`validate_call` returned for ``call`` in this transaction, under
    the same locks (a batch that validated first, to report every problem). ``case_rules``:
    a program's case rules by key (default: engine/cases/config.py's defaults).

    A batch (engine/calls/dialer.py) passes ``checked`` with the ``context`` it loaded for
    many calls at once and a :class:`CallBatch` that writes caller log entries and contacts in
    bulk; the session is then not flushed here (the batch writes once for all its calls)."""
    at = ensure_utc(at)
    if lock:
        take_write_lock(session)
        # Before the task row: every logger takes the caller log's lock first, so a logger
        # holding it never waits for a row another logger holds while waiting for it.
        caller_log.serialise(session)
    if context is not None:
        assert checked is not None, "a batch passes the checks it made with the context"
        task, entry = checked
        agent, participant, program = context.agent, context.participant, context.program
        definition = context.definition
    else:
        from engine.calls.agents import get_agent

        if not call.agent.strip():
            holder = session.scalar(select(CallTask.claimed_by).where(CallTask.id == call.task_id))
            if holder is None:
                raise InputError(f"task {call.task_id} is not claimed: name the agent with --agent")
            call = replace(call, agent=holder)
        agent = get_agent(session, call.agent)
        task, entry = checked or validate_call(session, call, dispositions, at=at)
        found = session.get(Participant, task.participant_id)
        assert found is not None  # FK
        participant = found
        found_program = session.get(Program, participant.program_id)
        assert found_program is not None
        program = found_program
        definition = DefinitionCache(session).for_run(task.run_id)
    disposition = entry.disposition
    if batch is not None and batch.cases is not None and batch.cases.waits_for(participant.id):
        batch.write()  # the member's case waiting in the batch is there before this call

    if call.duration_seconds is not None:
        handle = call.duration_seconds
    elif task.claimed_at is not None and task.claimed_by == agent.login:
        handle = max(0, int((at - task.claimed_at).total_seconds()))
    else:
        handle = None
    attempt = task.attempts + (1 if disposition.counts_as_attempt else 0)
    fields = dict(entry.fields)
    # The member stated no call consent and the program's default gave it: the entry says so.
    # In the fields, so the chain covers it through the personal digest like any field, and
    # entries written before keep their hashes.
    defaulted = unstated_but_defaulted(
        session,
        participant.id,
        program,
        ["call"],
        stated=context.stated_consent if context is not None else None,
    )
    if "call" in defaulted:
        fields[CONSENT_BASIS] = f"call: {program_default(defaulted['call'])}"
    # serialised above (lock) or by the batch that passed lock=False
    append = (
        batch.chain.append
        if batch is not None
        else partial(caller_log.append, session, locked=True)
    )
    entry_row = append(
        task_id=task.id,
        participant_id=participant.id,
        external_id=participant.external_id,
        program=program.key,
        campaign=task.campaign,
        run_id=task.run_id,
        task_kind=task.kind,
        agent=agent.login,
        number_dialled=participant.phone,
        disposition=disposition.code,
        human_contact=disposition.human_contact,
        verified=entry.verified,
        fields=fields,
        notes=entry.notes,
        record=entry.record,
        claimed_at=task.claimed_at if task.claimed_by == agent.login else None,
        logged_at=at,
        handle_seconds=handle,
        attempt=attempt,
        source=source,
    )
    contact = {
        "participant_id": participant.id,
        "channel": "call",
        "run_id": task.run_id,
        "occurred_at": at,
        "kind": "call",
    }
    if batch is not None:
        batch.contacts.append(contact)
    else:
        session.add(Contact(**contact))

    task.attempts = attempt
    task.last_attempt_at = at
    task.outcome = disposition.code
    task.claimed_by = agent.login
    task.claimed_until = None
    task.updated_at = at
    if disposition.human_contact and task.reached_at is None:
        task.reached_at = at

    created: CallTask | None = None
    standard_note: str | None = None
    conversions = 0
    closed_others = 0
    effect = disposition.effect
    if batch is not None and effect not in BATCHED_EFFECTS:
        batch.write()  # the effect reads or writes call tasks: what waits is there first

    def close(reason: str) -> None:
        task.status = "closed"
        task.close_reason = reason

    def reopen(due: datetime) -> None:
        task.status = "open"
        task.due_at = due
        task.claimed_at = None

    def spawn(kind: str, due: datetime, assigned: str | None) -> CallTask:
        if batch is not None and batch.cases is not None and batch.cases.waiting:
            batch.write()  # the follow-up tasks of the cases waiting get their ids first
        child = CallTask(
            kind=kind,
            run_id=task.run_id,
            enrollment_id=task.enrollment_id,
            participant_id=task.participant_id,
            campaign=task.campaign,
            step_id=None,
            step_index=task.step_index,
            script=task.script,
            team=task.team,
            status="open",
            due_at=due,
            attempts=0,
            max_attempts=task.max_attempts,
            assigned_agent=assigned,
            parent_task_id=task.id,
            source_step_id=task.step_id or task.source_step_id,
            reached_at=None,
            created_at=at,
            updated_at=at,
        )
        session.add(child)
        session.flush()
        return child

    if effect == "recycle":
        standard = standard_for(definition)
        if attempt >= standard.effective_max_attempts(task.max_attempts):
            close(f"unreachable after {attempt} attempts (last {disposition.code})")
        else:
            delay = disposition.recycle_after or timedelta(hours=4)
            zones = (
                batch.zones_of(participant, program)
                if batch is not None
                else callable_zones(participant, program)
            )
            key = (at, delay, task.run_id, program.id, zones)
            known = batch.retries.get(key) if batch is not None else None
            retry = known or schedule_retry(
                at,
                delay,
                standard,
                program.timezone,
                next_callable_in(zones, definition),
                holidays=program.holidays,
            )
            if batch is not None:
                batch.retries[key] = retry
            reopen(retry.due)
            if not retry.feasible:
                standard_note = (
                    f"the follow-up standard ({standard.within_business_hours:g} business "
                    f"hours, until {retry.deadline.isoformat(timespec='minutes')}) cannot be "
                    "met: the member's calling window does not open before then"
                )
    elif effect == "callback":
        assert entry.callback_at is not None
        assigned = agent.login if entry.fields.get("who") == "agent" else None
        created = spawn("callback", entry.callback_at, assigned)
        close(f"callback requested for {entry.callback_at.isoformat()}")
    elif effect == "follow_up":
        delay = disposition.recycle_after or timedelta(days=2)
        created = spawn("follow_up", at + delay, None)
        close(f"promised: follow-up task {created.id}")
    elif effect == "escalate":
        team = str(entry.fields["team"]).strip().lower()
        task.team = team
        task.assigned_agent = None
        reopen(at)
        task.close_reason = f"escalated to {team}: {entry.fields.get('reason')}"
    elif effect == "do_not_call":
        if participant.phone:
            add_suppression(
                session,
                participant.phone,
                "call",
                "do_not_call",
                f"call:{agent.login}",
                f"caller log {entry_row.seq}",
                at=at,
                default_region=program.region,
            )
        close("do not call")
        closed_others = _close_open_tasks(session, participant.id, task.id, at, "DO_NOT_CALL")
    elif effect == "invalid_number":
        if participant.phone:
            for channel in ("call", "sms"):
                add_suppression(
                    session,
                    participant.phone,
                    channel,
                    "invalid",
                    f"call:{agent.login}",
                    f"{disposition.code} (caller log {entry_row.seq})",
                    at=at,
                    default_region=program.region,
                )
        close(f"number invalid ({disposition.code})")
        closed_others = _close_open_tasks(session, participant.id, task.id, at, disposition.code)
    elif effect == "conversion":
        close("converted on the call")
        conversions = _record_conversion(
            session, task, participant, definition, entry, at, entry_row.id
        )
    else:
        close(disposition.code.lower().replace("_", " "))
    touched = None
    openings = batch.cases if batch is not None else None
    if openings is not None and openings.takes(task, effect, participant.id):
        openings.add(
            task=task,
            participant=participant,
            program=program,
            effect=effect,
            fields=entry.fields,
            agent=agent.login,
            at=at,
            seq=entry_row.seq,
            rules_for=case_rules,
        )
    elif batch is None or effect in OPENING_EFFECTS or task.case_id is not None:
        if batch is not None:  # the cases waiting first: ids in the order of the calls
            batch.write()
            if openings is not None:
                openings.touched(participant.id)
        touched = after_call(
            session,
            task=task,
            created=created,
            effect=effect,
            fields=dict(entry.fields),
            human_contact=disposition.human_contact,
            record_text=entry.record,
            log_id=lambda: entry_row.id,  # asked only when a case records the call
            agent=agent.login,
            at=at,
            rules_for=case_rules,
        )
    run_status = context.run_status if context is not None else _run_status(session, task)
    _close_if_run_cancelled(task, created, run_status)
    if batch is None:
        session.flush()
    else:
        batch.updated(task)
    return LogResult(
        log_id=entry_row.id if batch is None else None,
        seq=entry_row.seq,
        task_id=task.id,
        disposition=disposition.code,
        record=entry.record,
        verified=entry.verified,
        handle_seconds=handle,
        task_status=task.status,
        next_due_at=task.due_at if task.status == "open" else (created.due_at if created else None),
        effect=effect,
        created_task_id=created.id if created else None,
        conversions=conversions,
        closed_tasks=closed_others,
        hash=entry_row.hash,
        standard_note=standard_note,
        case_id=touched.case_id if touched else None,
        case_opened=touched.opened if touched else False,
    )


def _run_status(session: Session, task: LoggedTask) -> str | None:
    if task.run_id is None:
        return None
    return session.scalar(select(CampaignRun.status).where(CampaignRun.id == task.run_id))


def _close_if_run_cancelled(
    task: LoggedTask, created: CallTask | None, run_status: str | None
) -> None:
    """The run was cancelled while the agent was on the call (cancel leaves a held task to its
    agent): the call is logged, but nobody is called again for that run. A member's own SMS
    reply (a follow-up with no parent) is answered whatever became of the run."""
    if task.run_id is None or run_status != "cancelled":
        return
    inbound = task.kind == "follow_up" and task.parent_task_id is None
    for item in (task, created):
        if item is not None and item.status == "open" and not (item is task and inbound):
            item.status = "closed"
            item.close_reason = "run_cancelled"


def _close_open_tasks(
    session: Session, participant_id: int, except_id: int, at: datetime, outcome: str
) -> int:
    result = session.execute(
        update(CallTask)
        .where(
            CallTask.participant_id == participant_id,
            CallTask.id != except_id,
            CallTask.status.in_(("open", "claimed")),
        )
        .values(
            status="closed",
            close_reason=f"{outcome} logged on task {except_id}",
            claimed_until=None,
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _record_conversion(
    session: Session,
    task: LoggedTask,
    participant: Participant | MemberRow,
    definition: object | None,
    entry: ValidatedEntry,
    at: datetime,
    log_id: int,
) -> int:
    goal = getattr(definition, "goal", None)
    event_type = goal.events[0] if goal is not None else "call_conversion"
    points = entry.fields.get("points")
    amount = entry.fields.get("amount")
    exists = session.scalar(
        select(ActivityEvent.id).where(
            ActivityEvent.program_id == participant.program_id,
            ActivityEvent.reference == f"call:{log_id}",
        )
    )
    if exists is None:
        from decimal import Decimal

        session.add(
            ActivityEvent(
                program_id=participant.program_id,
                participant_id=participant.id,
                type=event_type,
                occurred_at=at,
                points=-int(float(points)) if points else None,
                amount=Decimal(str(amount)) if amount else None,
                reference=f"call:{log_id}",
                source="call",
                created_at=at,
            )
        )
        session.flush()
    # The ORM's member, whose last activity the unit of work writes (a batch holds a row;
    # `calls log` loaded the member already, so no statement then).
    member = session.get(Participant, participant.id)
    assert member is not None  # FK
    if member.last_activity_at is None or member.last_activity_at < at:
        member.last_activity_at = at
    from engine.conversions import match_conversions

    return match_conversions(session, at=at, participant_ids=[participant.id])


def dispositions_for(session: Session, settings_file: object, task_id: int) -> DispositionSet:
    """The dispositions in force for a task's program (standard + configured)."""
    program = session.scalar(
        select(Program.key)
        .join(Participant, Participant.program_id == Program.id)
        .join(CallTask, CallTask.participant_id == Participant.id)
        .where(CallTask.id == task_id)
    )
    if program is None:
        raise NotFoundError(f"no call task {task_id}")
    return program_dispositions(settings_file, program)


def program_dispositions(settings_file: object, program: str) -> DispositionSet:
    """The dispositions in force for ``program`` (key): for a caller that has loaded the
    task's program already (the console's page and log)."""
    from pathlib import Path

    from engine.calls.config import load_dispositions

    return load_dispositions(Path(str(settings_file)) if settings_file else None, program)

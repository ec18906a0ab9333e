"""Working with an external dialer: export the call list as CSV, import the outcomes.

Import file (CSV with a header row, UTF-8):

    call_id,called_at,task_id,agent,disposition,verified,duration_seconds,notes,field.reason,...

``task_id``, ``agent`` and ``disposition`` are required; ``call_id`` (the dialer's id of the
call) or ``called_at`` (when it was made, ISO 8601 with an offset) identifies the call, so
that importing the file again logs nothing twice. ``field.NAME`` columns carry the
disposition's documentation fields (empty cells are absent).

Every row is validated exactly like ``calls log``. Every good row is logged; every bad row
goes to the rejects file (its line, every reason, the original cells) and nothing of it is
written: fix those rows and import the rejects file, or the whole file again.
"""

from __future__ import annotations

import gc
import io
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.app import App
from engine.calls import DIALER_PROVIDER, caller_log
from engine.calls.agents import agent_key, get_agent, unknown_agent
from engine.calls.batch_rows import locked_task_rows, member_rows
from engine.calls.config import load_dispositions
from engine.calls.dispositions import DispositionSet, parse_yes_no
from engine.calls.listing import list_calls
from engine.calls.log import (
    CallBatch,
    CallContext,
    CallInput,
    LoggedTask,
    LogResult,
    call_problems,
    entry_problems,
    log_call,
    task_problems,
)
from engine.calls.rules import DEFAULT_RULES, CallRules
from engine.calls.tasks import DefinitionCache
from engine.cases.bulk import CaseOpenings
from engine.clock import ensure_utc
from engine.consent.defaults import consent_defaults, stated_channels
from engine.consent.provider_events import event_key, event_row, record_events, record_new_events
from engine.csv_safe import SafeDictWriter
from engine.db.models import (
    Agent,
    CallTask,
    CampaignRun,
    MessageEvent,
    Participant,
    Program,
)
from engine.db.queries import among
from engine.db.session import take_write_lock
from engine.errors import EngineError, InputError
from engine.participants.reader import SourceFile, SourceRow, original_text
from engine.participants.results import RejectsWriter, default_rejects_path

EXPORT_COLUMNS = (
    "task_id",
    "position",
    "kind",
    "external_id",
    "name",
    "phone",
    "callable_at",
    "campaign",
    "step",
    "team",
    "assigned_agent",
    "attempt",
    "max_attempts",
    "why",
)
REQUIRED_COLUMNS = ("task_id", "agent", "disposition")
FIELD_PREFIX = "field."
PROVIDER = DIALER_PROVIDER
MAX_CALL_ID = 100
IMPORT_CHUNK = 1000  # rows per transaction: loaded, checked and written together
# A dialer's clock may run a little ahead of ours.
FUTURE_TOLERANCE = timedelta(minutes=5)


def export_rows(
    session: Session,
    *,
    at: datetime,
    agent: str | None = None,
    day: date | None = None,
    rules: CallRules = DEFAULT_RULES,
) -> list[dict[str, object]]:
    """The callable tasks of the call list in serving order (refused ones left out)."""
    rows = []
    for t in list_calls(session, at=at, agent=agent, day=day, rules=rules):
        if t.blocked is not None:
            continue
        rows.append(
            {
                "task_id": t.task_id,
                "position": t.position,
                "kind": t.kind,
                "external_id": t.external_id,
                "name": t.name,
                "phone": t.phone,
                "callable_at": t.callable_at.isoformat() if t.callable_at else "",
                "campaign": t.campaign or "",
                "step": t.step or "",
                "team": t.team or "",
                "assigned_agent": t.assigned_agent or "",
                "attempt": t.attempts + 1,
                "max_attempts": t.max_attempts,
                "why": t.why,
            }
        )
    return rows


def to_csv(rows: Iterable[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = SafeDictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportSummary:
    """read = applied + unchanged + rejected. ``unchanged``: rows whose call is on the caller
    log already (a re-run of the file, or a row repeated); nothing is applied twice."""

    file: str
    read: int
    applied: int
    unchanged: int
    rejected: int
    rejects_path: Path | None
    by_disposition: dict[str, int]
    seconds: float


@dataclass(frozen=True)
class _Row:
    call: CallInput
    called_at: datetime | None
    key: str  # what makes the row's call the same call on a re-run


def _parse_time(text: str, at: datetime) -> tuple[datetime | None, str | None]:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, f"called_at {text!r} is not a date-time; use ISO 8601 with an offset"
    if parsed.tzinfo is None:
        return None, f"called_at {text!r} has no UTC offset; add one, e.g. -05:00"
    if parsed > at + FUTURE_TOLERANCE:
        return None, f"called_at {text!r} is in the future"
    return ensure_utc(parsed), None


def parse_row(values: dict[str, str], at: datetime) -> tuple[_Row | None, list[str]]:
    """One file row as a call to log, or every reason it is not one."""

    def cell(name: str) -> str:
        return (values.get(name) or "").strip()

    reasons: list[str] = []
    for name, value in values.items():
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 (kept by surrogateescape)
            reasons.append(f"{name} is not UTF-8 text")
    if reasons:
        return None, reasons
    task_text = cell("task_id")
    if not task_text.isdigit():
        reasons.append(f"task_id {task_text!r} is not a task number")
    agent = cell("agent")
    if not agent:
        reasons.append("agent is empty")
    disposition = cell("disposition")
    if not disposition:
        reasons.append("disposition is empty (see `campaign calls dispositions`)")
    verified: bool | None = None
    if cell("verified"):
        try:
            verified = parse_yes_no(cell("verified"), "verified")
        except EngineError as exc:
            reasons.append(str(exc))
    duration_text = cell("duration_seconds")
    if duration_text and not duration_text.isdigit():
        reasons.append(f"duration_seconds {duration_text!r} is not whole seconds")
    called_at: datetime | None = None
    if cell("called_at"):
        called_at, problem = _parse_time(cell("called_at"), at)
        if problem:
            reasons.append(problem)
    call_id = cell("call_id")
    if len(call_id) > MAX_CALL_ID:
        reasons.append(f"call_id is longer than {MAX_CALL_ID} characters")
    if not call_id and not cell("called_at"):
        reasons.append("needs a call_id or a called_at (what makes a re-run change nothing)")
    if reasons:
        return None, reasons
    fields = {
        key[len(FIELD_PREFIX) :]: value.strip()
        for key, value in values.items()
        if key.startswith(FIELD_PREFIX) and value and value.strip()
    }
    call = CallInput(
        task_id=int(task_text),
        agent=agent,
        disposition=disposition,
        fields=fields,
        verified=verified,
        notes=cell("notes") or None,
        duration_seconds=int(duration_text) if duration_text else None,
    )
    key = (
        f"call:{call_id}"
        if call_id
        else f"task:{call.task_id}@{called_at.isoformat() if called_at else ''}"
    )
    return _Row(call, called_at, key), []


class _Dispositions:
    """The dispositions in force per task's program (standard + the configured file)."""

    def __init__(self, session: Session, path: Path | None) -> None:
        self.session, self.path = session, path
        self._by_program: dict[str | None, DispositionSet] = {}

    def for_program(self, program: str | None) -> DispositionSet:
        if self.path is None:  # no configured dispositions: the standard set everywhere
            program = None
        if program not in self._by_program:
            self._by_program[program] = (
                DispositionSet.standard()
                if self.path is None
                else load_dispositions(self.path, program)
            )
        return self._by_program[program]

    def for_task(self, task_id: int) -> DispositionSet:
        if self.path is None:
            return self.for_program(None)
        return self.for_program(
            self.session.scalar(
                select(Program.key)
                .join(Participant, Participant.program_id == Program.id)
                .join(CallTask, CallTask.participant_id == Participant.id)
                .where(CallTask.id == task_id)
            )
        )


def _already_logged(session: Session, key: str) -> bool:
    return (
        session.scalar(
            select(MessageEvent.id).where(
                MessageEvent.provider == PROVIDER, MessageEvent.provider_event_id == event_key(key)
            )
        )
        is not None
    )


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["applied", "unchanged", "rejected"]
    reasons: list[str] = field(default_factory=list)  # why it was rejected
    disposition: str | None = None  # what was logged


def _apply(
    session: Session, row: _Row, dispositions: _Dispositions, *, at: datetime, line: int, file: str
) -> _Outcome:
    """Log one row's call, unless it is on the caller log already or fails a check (the
    row-by-row path: a chunk :func:`_apply_chunk` could not write is redone with it)."""
    if _already_logged(session, row.key):
        return _Outcome("unchanged")
    when = row.called_at or at
    call = row.call
    reasons: list[str] = []
    try:
        get_agent(session, call.agent)
    except EngineError as exc:
        reasons.append(str(exc))
    dispositions_in_force = dispositions.for_task(call.task_id)
    task, entry, problems = call_problems(session, call, dispositions_in_force, at=when)
    reasons += problems
    if reasons or task is None or entry is None:
        return _Outcome("rejected", reasons)
    try:
        with session.begin_nested() as savepoint:
            result = log_call(
                session,
                call,
                dispositions_in_force,
                at=when,
                source="dialer",
                lock=False,
                checked=(task, entry),
            )
            fresh = record_events(session, [_event(row, result, task, at=at, line=line, file=file)])
            if not fresh:  # a concurrent import of the same call got there first
                savepoint.rollback()
                return _Outcome("unchanged")
    except EngineError as exc:
        return _Outcome("rejected", [str(exc)])
    return _Outcome("applied", disposition=result.disposition)


class _Redo(Exception):
    """Something only found while writing a chunk's calls (an error no check predicted, or a
    call another import recorded meanwhile): the chunk is rolled back and redone row by row,
    each row in its own savepoint, exactly as `calls log` would take them one at a time."""


class _Loaded:
    """A chunk's tasks (locked), their members, programs and runs, and the agents named,
    loaded with one query each; what a row needs that the chunk did not load (a task a
    previous row created) is fetched on its own."""

    def __init__(self, session: Session, rows: list[tuple[int, _Row]]) -> None:
        self.session = session
        logins = sorted({agent_key(row.call.agent) for _, row in rows})
        self.agents = {
            a.login: a for a in session.scalars(select(Agent).where(Agent.login.in_(logins)))
        }
        # Tasks and members as plain rows, not ORM objects (engine/calls/batch_rows.py):
        # CallBatch writes the tasks; of a member, a call reads only its ids, number and zone.
        self.tasks: dict[int, LoggedTask] = dict(
            locked_task_rows(session, sorted({row.call.task_id for _, row in rows}))
        )
        self.participants = member_rows(
            session, sorted({t.participant_id for t in self.tasks.values()})
        )
        program_ids = sorted({p.program_id for p in self.participants.values()})
        self.programs = {
            p.id: p for p in session.scalars(select(Program).where(Program.id.in_(program_ids)))
        }
        run_ids = sorted({t.run_id for t in self.tasks.values() if t.run_id is not None})
        self.run_status: dict[int, str] = {
            int(ident): str(status)
            for ident, status in session.execute(
                select(CampaignRun.id, CampaignRun.status).where(CampaignRun.id.in_(run_ids))
            )
        }
        self.definitions = DefinitionCache(session)
        # Whether each member stated call consent, when a program takes it as given otherwise
        # (what the entry says it relied on): one read here instead of one per call.
        self.stated_consent = (
            stated_channels(session, list(self.participants), "call")
            if any("call" in consent_defaults(p) for p in self.programs.values())
            else {}
        )
        # Members whose other tasks a bulk UPDATE closed (do not call, invalid number): their
        # loaded tasks are read again before they are checked.
        self.stale: set[int] = set()

    def task(self, task_id: int) -> LoggedTask | None:
        """The task as it stands. The caller wrote what its batch keeps waiting first when
        the task was not loaded or its member is stale. A task an earlier call logged keeps
        its new values (a row, or an ORM object CallBatch.updated took out of the session);
        one the session holds (a case hook read it since) is the newer."""
        task = self.session.identity_map.get(self.session.identity_key(CallTask, task_id))
        if task is None:
            task = self.tasks.get(task_id)
        if task is None or task.participant_id in self.stale:
            self.session.flush()
            task = self.session.get(CallTask, task_id, with_for_update=True, populate_existing=True)
            if task is not None:
                self.tasks[task_id] = task
        return task

    def needs_reading(self, task_id: int) -> bool:
        """Whether :meth:`task` reads the task from the database."""
        task = self.tasks.get(task_id)
        return task is None or task.participant_id in self.stale

    def context(self, task: LoggedTask, agent: Agent) -> CallContext:
        participant = self.participants.get(task.participant_id)
        if participant is None:  # a task another row of the chunk made (a case's)
            participant = member_rows(self.session, [task.participant_id])[task.participant_id]
            self.participants[participant.id] = participant
        program = self.programs.get(participant.program_id) or self.session.get(
            Program, participant.program_id
        )
        assert program is not None  # FK
        definition = self.definitions.for_run(task.run_id)
        if task.run_id is not None and task.run_id not in self.run_status:
            self.run_status[task.run_id] = str(
                self.session.scalar(select(CampaignRun.status).where(CampaignRun.id == task.run_id))
            )
        return CallContext(
            agent=agent,
            participant=participant,
            program=program,
            definition=definition,
            run_status=self.run_status.get(task.run_id) if task.run_id is not None else None,
            stated_consent=self.stated_consent.get(participant.id),
        )


def _apply_chunk(
    session: Session,
    rows: list[tuple[int, _Row]],
    dispositions: _Dispositions,
    *,
    at: datetime,
    file: str,
) -> list[_Outcome]:
    """Log a chunk's calls with a few statements for the whole chunk: what the rows need is
    loaded with one query per table, every row is checked by the same functions as `calls
    log` (:func:`task_problems`, :func:`entry_problems`) and logged by the same
    :func:`log_call`, whose caller log entries, checkpoints, contacts, message_events keys
    and the cases it opens (engine/cases/bulk.py) are then written together, one statement
    per table for the chunk (engine/db/bulk.py: COPY and UPDATE ... FROM unnest on
    PostgreSQL; the tasks too, CallBatch.updated). A call
    that touches a case otherwise (joins one, follows one up) writes what is pending first and
    goes through the case hook alone. The caller holds the write lock and the caller log's
    lock. Raises :class:`_Redo` when a row fails only while being written."""
    wanted = sorted({event_key(row.key) for _, row in rows})
    logged = set(
        session.scalars(
            select(MessageEvent.provider_event_id).where(
                MessageEvent.provider == PROVIDER,
                among(session, MessageEvent.provider_event_id, wanted, String),
            )
        )
    )
    loaded = _Loaded(session, rows)
    batch = CallBatch(session, CaseOpenings(session, loaded.participants))
    events: list[dict[str, object]] = []
    outcomes: list[_Outcome] = []
    for line, row in rows:
        key = event_key(row.key)
        if key in logged:  # on the caller log already, or earlier in this chunk
            outcomes.append(_Outcome("unchanged"))
            continue
        when = row.called_at or at
        call = row.call
        reasons: list[str] = []
        agent = loaded.agents.get(agent_key(call.agent))
        if agent is None:
            reasons.append(str(unknown_agent(call.agent)))
        # Made by an earlier row (maybe a case's), or a bulk UPDATE closed it: read it after
        # what the batch keeps waiting is written.
        if loaded.needs_reading(call.task_id):
            try:
                batch.write()
            except EngineError as exc:  # a case opened meanwhile (engine/cases/bulk.py)
                raise _Redo(str(exc)) from exc
        task = loaded.task(call.task_id)
        context = loaded.context(task, agent) if task is not None and agent is not None else None
        in_force = dispositions.for_program(context.program.key if context else None)
        if task is not None and context is None:  # the agent is unknown: still every reason
            in_force = dispositions.for_task(task.id)
        reasons += task_problems(task, call, task_id=call.task_id, at=when)
        entry, problems = entry_problems(call, in_force, at=when)
        reasons += problems
        if reasons or task is None or entry is None or context is None:
            outcomes.append(_Outcome("rejected", reasons))
            continue
        try:
            result = log_call(
                session,
                call,
                in_force,
                at=when,
                source="dialer",
                lock=False,
                checked=(task, entry),
                context=context,
                batch=batch,
            )
        except EngineError as exc:
            raise _Redo(str(exc)) from exc
        if result.closed_tasks:
            loaded.stale.add(task.participant_id)
        logged.add(key)
        events.append(_event(row, result, task, at=at, line=line, file=file))
        outcomes.append(_Outcome("applied", disposition=result.disposition))
    try:
        batch.write()
    except EngineError as exc:  # a case opened meanwhile (engine/cases/bulk.py)
        raise _Redo(str(exc)) from exc
    try:  # new: looked up above under the caller log's lock, which every import takes
        record_new_events(session, events)
    except IntegrityError as exc:  # recorded meanwhile all the same: take the rows one by one
        raise _Redo("a call of this chunk was recorded meanwhile") from exc
    session.flush()
    return outcomes


def _event(
    row: _Row, result: LogResult, task: LoggedTask, *, at: datetime, line: int, file: str
) -> dict[str, object]:
    """The message_events row that records the row's call as imported (its key)."""
    return event_row(
        provider=PROVIDER,
        provider_event_id=row.key,
        event="call_logged",
        occurred_at=row.called_at or at,
        received_at=at,
        participant_id=task.participant_id,
        detail={
            "task_id": row.call.task_id,
            "caller_log_seq": result.seq,
            "disposition": result.disposition,
            "file": file[-200:],
            "line": line,
        },
    )


@contextmanager
def _collector_spared() -> Iterator[None]:
    """The garbage collector's full collections leave what the process held before the
    import alone (gc.freeze): a chunk's rows live until it commits, so they reach the oldest
    generation and set off full collections, each of which walked every module, mapper and
    object of the process too (about a tenth of an import's CPU on SQLite)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def import_results(
    app: App,
    path: Path | str,
    *,
    at: datetime,
    dispositions_file: Path | None = None,
    rejects_path: Path | str | None = None,
    chunk_size: int = IMPORT_CHUNK,
) -> ImportSummary:
    """Log every good row of a dialer's results file exactly like `calls log`; every bad row
    goes to the rejects file with the original cells, its line and every reason.

    Idempotent: each applied row records its call's key (``call_id``, else task and
    ``called_at``) under provider ``dialer`` in message_events (UNIQUE), so re-running a file
    logs nothing twice. Streams the file and commits every ``chunk_size`` rows; each chunk
    takes the write lock (SQLite) and the caller log's lock (PostgreSQL) first, then each row
    locks its task, in the order `calls log` takes them."""
    at = ensure_utc(at)
    started = time.perf_counter()
    path = Path(path)
    source = SourceFile(path, "csv", required=REQUIRED_COLUMNS)
    if "call_id" not in source.columns and "called_at" not in source.columns:
        source.close()
        raise InputError(
            f"{path}: line 1: needs a call_id or a called_at column (the dialer's id or time "
            "of each call), so that importing the file again logs nothing twice"
        )
    rejects = RejectsWriter(
        Path(rejects_path) if rejects_path else default_rejects_path(path), source.columns
    )
    read = applied = unchanged = 0
    by_disposition: Counter[str] = Counter()
    try:

        def transaction(rows: list[tuple[int, _Row]], *, batched: bool) -> list[_Outcome]:
            with app.sessions() as session, session.begin():
                take_write_lock(session)
                caller_log.serialise(session)
                dispositions = _Dispositions(session, dispositions_file)
                if batched:
                    return _apply_chunk(session, rows, dispositions, at=at, file=str(path))
                return [
                    _apply(session, row, dispositions, at=at, line=line, file=str(path))
                    for line, row in rows
                ]

        def work(rows: list[SourceRow]) -> None:
            nonlocal read, applied, unchanged
            failures: list[tuple[int, list[str], list[str]]] = []
            good: list[tuple[int, _Row]] = []
            originals: dict[int, list[str]] = {}
            for source_row in rows:
                if source_row.error is not None:
                    failures.append(
                        (source_row.line, [source_row.error], original_text(source_row))
                    )
                    continue
                row, reasons = parse_row(source.mapping(source_row), at)
                if row is None:
                    failures.append((source_row.line, reasons, original_text(source_row)))
                else:
                    good.append((source_row.line, row))
                    originals[source_row.line] = original_text(source_row)
            outcomes: list[_Outcome] = []
            if good:  # a chunk of bad rows only writes nothing, nor takes a lock
                try:
                    outcomes = transaction(good, batched=True)
                except _Redo:
                    outcomes = transaction(good, batched=False)
            for (line, _), outcome in zip(good, outcomes, strict=True):
                if outcome.kind == "applied":
                    applied += 1
                    by_disposition[str(outcome.disposition)] += 1
                elif outcome.kind == "unchanged":
                    unchanged += 1
                else:
                    failures.append((line, outcome.reasons, originals[line]))
            read += len(rows)
            # The rejects file keeps the file's order.
            for line, reasons, original in sorted(failures, key=lambda failure: failure[0]):
                rejects.write(line, reasons, original)

        batch: list[SourceRow] = []
        with _collector_spared():
            for source_row in source:
                batch.append(source_row)
                if len(batch) >= chunk_size:
                    work(batch)
                    batch = []
            if batch:
                work(batch)
    finally:
        source.close()
        rejects.close()
    assert read == applied + unchanged + rejects.count
    return ImportSummary(
        file=str(path),
        read=read,
        applied=applied,
        unchanged=unchanged,
        rejected=rejects.count,
        rejects_path=rejects.path if rejects.count else None,
        by_disposition=dict(sorted(by_disposition.items())),
        seconds=time.perf_counter() - started,
    )

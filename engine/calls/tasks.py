"""Call lists: which call tasks an agent may be served, in what order, when each becomes
callable, and claim-next with a lease.

Serving order (also the order of ``calls list``):

1. tasks callable now before tasks that are not;
2. callbacks before follow-ups before campaign calls (a callback is a promise of a time);
3. the campaign's priority: within each campaign call step the tasks are ranked by the step's
   ``priority`` keys (participant fields, asc/desc, empty values last), and the ranks of
   different campaigns interleave (the best of each campaign first);
4. due time, then task id.

A task is eligible for an agent when it names them (an agent-only callback), or when it names
no agent and its team is one of theirs (a task with no team is anyone's), or when the agent is
the participant's account manager. Tasks of paused, cancelled or completed runs, and of
converted or exited enrollments, are never served; a follow-up of an inbound SMS reply is
served whatever the state of the run whose message was answered.

At claim time the consent/suppression gate and the calling window (08:00-21:00 recipient
local time, narrowed by the campaign's call_window) are checked again; a task the gate refuses
is closed with the reason, a task outside its window waits. A task over a frequency cap waits
until the cap frees, and an agent-only callback falls back to the team when its agent is
disabled or has not taken it in time (engine/calls/rules.py).
"""

from __future__ import annotations

import functools
import heapq
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)

from engine.calls.agent_rows import locked_agent
from engine.calls.claim_form import ClaimForm, ClaimForms, StepForm
from engine.calls.held_claim import HELD_CONDITIONS, HELD_ORDER, held_claim_params
from engine.calls.language_routing import LanguageRouting, apply_language_routing
from engine.calls.priority import priority_order, rank
from engine.calls.rules import (
    DEFAULT_RULES,
    CallRules,
    active_logins,
    cap_exempt,
    caps_for,
    contacts_by_participant,
    fallback_reason,
    past_due_callback_of_another,
    wait_for_caps,
)
from engine.clock import ensure_utc
from engine.consent.defaults import says_yes
from engine.consent.suppression_lookup import hash_normalised, suppressed_hashes_query
from engine.db.queries import any_of_bound, gathered, gathered_values
from engine.db.reading import dialect_name
from engine.db.session import take_write_lock
from engine.db.tables.calls import agents, call_tasks
from engine.db.tables.members import participant_consents, participants, programs, suppressions
from engine.db.tables.runs import campaign_runs, enrollments
from engine.db.types import UTCDateTime
from engine.errors import InputError, NotFoundError
from engine.policy import (
    Decision,
    ParticipantFacts,
    SendNow,
    Skip,
    WaitUntil,
    candidate_zones,
    decide,
    gate,
)
from engine.sending.deadlines import (
    close_expired_call_tasks,
    mark_not_standing,
    not_standing_case,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.audience import BoundAt
    from engine.db.reading import Reader
    from engine.definitions.schema import CampaignDefinition, Step

DEFAULT_LEASE = timedelta(minutes=30)
KIND_RANK = {"callback": 0, "follow_up": 1, "campaign": 2}
TASK_COLUMNS = (
    "id",
    "kind",
    "run_id",
    "enrollment_id",
    "campaign",
    "step_id",
    "source_step_id",
    "team",
    "assigned_agent",
    "parent_task_id",
    "due_at",
    "attempts",
    "max_attempts",
    "outcome",
    "case_id",
)
PERSON_COLUMNS = (
    "id",
    "program_id",
    "external_id",
    "first_name",
    "last_name",
    "locale",
    "phone",
    "timezone",
    "account_manager",
)
# How far ahead `calls list` looks for tasks that become due (for --date, that whole day).
LOOKAHEAD = timedelta(days=1)


# --------------------------------------------------------------------------- context


class DefinitionCache:
    """Run definitions parsed once per run (the text a run was launched with), and only when
    asked for: a claim that meets no task of a run never parses its definition."""

    def __init__(self, session: Reader) -> None:
        self.session = session
        self._runs: dict[int, CampaignDefinition | None] = {}
        self._sources: dict[int, tuple[str, str]] = {}  # text and label, read not yet parsed
        self.program_ids: dict[int, int] = {}  # of the runs load_active read

    def for_run(self, run_id: int | None) -> CampaignDefinition | None:
        if run_id is None:
            return None
        if run_id not in self._runs:
            if run_id not in self._sources:
                found = self._run(run_id)
                if found is None:
                    self._runs[run_id] = None
                    return None
                self._sources[run_id] = (
                    found.definition_source,
                    f"run {run_id}: {found.campaign}.yaml",
                )
            # pydantic and the schema are imported here, when a task of a run is met (#18).
            from engine.definitions.stored import stored_definition

            self._runs[run_id] = stored_definition(*self._sources.pop(run_id))
        return self._runs[run_id]

    def _run(self, run_id: int) -> Any:
        """The run's row (its campaign and definition text), or None."""
        if isinstance(self.session, Connection):
            run = campaign_runs.c
            return self.session.execute(
                select(run.campaign, run.definition_source).where(run.id == run_id)
            ).first()
        # An ORM session may hold the run already (a console page reads it with the claim).
        from engine.db.models import CampaignRun

        return self.session.get(CampaignRun, run_id)

    def load_active(self) -> list[int]:
        """Read every active run's definition text with one query (one load per run was a
        statement each), to be parsed when a task of the run needs it. Returns their ids."""
        run = campaign_runs.c
        found = self.session.execute(
            select(run.id, run.campaign, run.definition_source, run.program_id).where(
                run.status == "active"
            )
        ).all()
        for run_id, campaign, source, program_id in found:
            self.program_ids[run_id] = program_id
            if run_id not in self._runs:
                self._sources[run_id] = (source, f"run {run_id}: {campaign}.yaml")
        return [run_id for run_id, _, _, _ in found]


def step_of(task: Any, definition: CampaignDefinition | None) -> Step | None:
    step_id = task.step_id or task.source_step_id
    if definition is None or step_id is None:
        return None
    try:
        return definition.step(step_id)
    except KeyError:
        return None


def step_form_of(task: Any, form: ClaimForm | None) -> StepForm | None:
    """:func:`step_of` as a claim reads it: from the run's claim form."""
    step_id = task.step_id or task.source_step_id
    if form is None or step_id is None:
        return None
    try:
        return form.step(step_id)
    except KeyError:
        return None


@dataclass
class Candidate:
    """One task with everything needed to order it and to decide whether it is callable."""

    task: Any  # the call_tasks row (attribute access by column name)
    participant: Any  # the participants row
    program: Any  # the programs row
    form: ClaimForm | None  # what the claim reads of the run's definition
    step: StepForm | None
    zones: tuple[str, ...] = ()
    callable_at: datetime | None = None
    blocked: str | None = None  # the gate's refusal, when it refuses
    rank: int = 0
    waits_for: str | None = None  # "calling_window" or "frequency_cap" when not callable now
    fallback: str | None = None  # why another agent's callback is served to this one
    facts: ParticipantFacts | None = None  # what the calling-window decision was made on
    held_for_language: str | None = None  # waits for an agent who speaks it (waits_for)

    @cached_property
    def call_window(self) -> Any:
        return self.form.call_window if self.form is not None else None

    @property
    def callable_now(self) -> bool:
        return (
            self.blocked is None and self.callable_at is not None and self.callable_at <= self._at
        )

    _at: datetime = field(default=datetime.min, repr=False)

    def order_key(self) -> tuple[Any, ...]:
        return (
            0 if self.callable_now else 1,
            KIND_RANK.get(self.task.kind, 3),
            self.rank,
            self.callable_at or self.task.due_at,
            self.task.due_at,
            self.task.id,
        )


def _suppressed_by_hash(session: Reader, people: Sequence[Any]) -> dict[str, set[str]]:
    """The call suppressions of the participants' numbers matched by hash (an erasure entry
    keeps no address)."""
    hashes = sorted({hash_normalised(p.phone) for p in people if p.phone})
    suppressed: dict[str, set[str]] = {}
    statement = suppressed_hashes_query(dialect_name(session) == "postgresql", with_channel=True)
    for chunk_h in _chunks(hashes):
        values = {"hashes": list(chunk_h), "channels": ["call", "all"]}
        for digest, channel in session.execute(statement, values):
            suppressed.setdefault(digest, set()).add(channel)
    return suppressed


def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def evaluate(
    session: Reader,
    candidates: Sequence[Candidate],
    at: datetime,
    *,
    exact: bool = False,
    rules: CallRules = DEFAULT_RULES,
    routing: LanguageRouting | None = None,
    suppressed_known: dict[str, set[str]] | None = None,
) -> None:
    """Fill each candidate's zones, gate verdict and earliest callable instant (>= due),
    held for a speaker of the member's language when ``routing`` says so.

    The list query brings each participant's call consent and whether their number is
    suppressed (by address); ``exact`` (the re-check of the one task about to be claimed) also
    matches suppressions by hash, which catches an erasure entry that kept no address
    (``suppressed_known``: those of the hashes the caller has read already).
    Many tasks share their zones and window (and, once overdue, the instant asked about), so
    zone resolution and window search are memoised for the call."""
    suppressed: dict[str, set[str]] = {}
    if exact:
        known = suppressed_known or {}
        people = [c.participant for c in candidates]
        unread = [p for p in people if p.phone and hash_normalised(p.phone) not in known]
        suppressed = {**_suppressed_by_hash(session, unread), **known}
    zone_cache: dict[tuple[Any, ...], tuple[str, ...] | None] = {}
    window_cache: dict[tuple[Any, ...], Decision] = {}
    for c in candidates:
        p = c.participant
        c._at = at
        zkey = (p.timezone, p.phone, c.program.timezone, c.program.region)
        if zkey not in zone_cache:
            try:
                zone_cache[zkey] = candidate_zones(
                    participant_zone=p.timezone,
                    phone=p.phone,
                    program_zone=c.program.timezone,
                    region=c.program.region,
                ).zones
            except ValueError:
                zone_cache[zkey] = None
        zones = zone_cache[zkey]
        if zones is None:
            c.blocked = "no_time_zone"
            continue
        c.zones = zones
        status = p.call_consent  # read by the scan's own statement (one row per channel)
        if status is None and says_yes(c.program, "call"):
            status = "opted_in"  # the program states it for members who did not
        blocked_on: set[str] = set()
        if p.phone:
            if exact:
                blocked_on = suppressed.get(hash_normalised(p.phone), set())
            elif p.call_suppressed:
                blocked_on = {"call"}
        facts = ParticipantFacts(
            address=p.phone,
            consent=status if status in ("opted_in", "opted_out") else None,
            zones=zones,
            suppressed_channels=blocked_on,
        )
        c.facts = facts
        start = max(at, c.task.due_at)
        refused = gate(
            "call",
            address=facts.address,
            consent=facts.consent,
            suppressed_channels=facts.suppressed_channels,
            invalid_address=False,
        )
        if refused.reason is not None:
            c.blocked = refused.reason
            continue
        window = c.call_window
        wkey = (
            zones,
            None if window is None else (window.start, window.end, tuple(window.days)),
            start,
        )
        verdict = window_cache.get(wkey)
        if verdict is None:
            verdict = window_cache[wkey] = decide("call", facts, start, call_window=c.call_window)
        if isinstance(verdict, Skip):
            c.blocked = verdict.reason
        elif isinstance(verdict, SendNow):
            c.callable_at = start
        elif isinstance(verdict, WaitUntil):
            c.callable_at = verdict.until
            c.waits_for = "calling_window"
    mark_not_standing(session, candidates, at)  # an account closed since launch
    _apply_caps(session, candidates, at, rules)
    apply_language_routing(candidates, routing)


def _apply_caps(
    session: Reader, candidates: Sequence[Candidate], at: datetime, rules: CallRules
) -> None:
    """Move each capped task's callable instant to when the caps free (the dispatcher's rule
    over the same ledger); a cap that never frees (max 0) blocks it."""
    capped = [
        c for c in candidates if c.blocked is None and c.callable_at and not cap_exempt(c.task)
    ]
    if not capped:
        return
    caps = {id(c): caps_for(c.form, rules) for c in capped}
    lookback = max(cap.per for found in caps.values() for cap in found)
    contacts = contacts_by_participant(
        session, (c.participant.id for c in capped), at - lookback, at
    )
    for c in capped:
        assert c.callable_at is not None
        times = contacts.get(c.participant.id)
        if not times:
            continue
        when = wait_for_caps(times, c.callable_at, c.zones, c.call_window, caps[id(c)])
        if when is None:
            c.blocked = "frequency_cap"
        elif when > c.callable_at:
            c.callable_at, c.waits_for = when, "frequency_cap"


# The members an agent manages, looked up by their own index (0034) as a set of ids: the
# claim's scan can then keep to the agent's teams' tasks before it joins the members, where a
# condition on the joined member row made it join every open task of every team first.
_MANAGED = participants.alias("managed")


# The scan's conditions are built once per process for each shape of scan (an agent's or the
# coordinator's, with teams or none, on which database), its values bound when it runs
# (_Scan.params): a claim builds none of them, and each statement keeps one text whatever the
# agent, instant or number of agents signed in, so psycopg reuses its parsed form (#19).
_AT = bindparam("scan_at", type_=UTCDateTime())
_UNTIL = bindparam("scan_until", type_=UTCDateTime())
_LOGIN = bindparam("scan_agent", type_=String())
# An active agent's callback falls back ``callback_fallback_after`` business hours after its
# time, never sooner than as many hours of clock time: one due after this has not (a claim
# would otherwise read and drop every other agent's fresh callbacks each time).
_FALLBACK_DUE = bindparam("scan_fallback_due", type_=UTCDateTime())


_OPEN_OR_CLAIMED = text("call_tasks.status IN ('open', 'claimed')")


@functools.cache
def _scan_criteria(*, postgres: bool, agent: bool, teams: bool) -> tuple[Any, ...]:
    """The conditions of the scan of this shape (see above)."""
    return (
        # Implied by the next condition; named in the text of ix_call_tasks_open_queue's
        # condition, as SQLite reads a partial index only for a query that names it.
        _OPEN_OR_CLAIMED,
        or_(
            call_tasks.c.status == "open",
            and_(call_tasks.c.status == "claimed", call_tasks.c.claimed_until < _AT),
        ),
        call_tasks.c.due_at <= _UNTIL,
        # Past its deadline: never served (closed by close_expired_call_tasks).
        or_(call_tasks.c.expires_at.is_(None), call_tasks.c.expires_at > _AT),
        or_(
            call_tasks.c.run_id.is_(None),
            campaign_runs.c.status == "active",
            # A member who texted back is answered whatever became of the run whose SMS
            # they answered (it may have completed since); the gate still applies.
            and_(call_tasks.c.kind == "follow_up", call_tasks.c.parent_task_id.is_(None)),
        ),
        or_(
            call_tasks.c.enrollment_id.is_(None),
            enrollments.c.state.notin_(("converted", "exited")),
        ),
        *((_eligible(postgres=postgres, teams=teams),) if agent else ()),
    )


_STEP = func.coalesce(call_tasks.c.step_id, call_tasks.c.source_step_id)


@functools.cache
def _scan_groups(*, postgres: bool, agent: bool, teams: bool) -> Any:
    """The groups query of the scan of this shape (serving_order streams each group). It reads
    every due task, so it joins only what its conditions read: not the members (a task has
    exactly one, its participant_id a non-null key), whose join was a third of its cost."""
    return (
        _with_runs_and_enrollments(
            select(call_tasks.c.run_id, _STEP, call_tasks.c.kind).select_from(call_tasks)
        )
        .where(*_scan_criteria(postgres=postgres, agent=agent, teams=teams))
        .group_by(call_tasks.c.run_id, _STEP, call_tasks.c.kind)
    )


def _with_runs_and_enrollments(query: Any) -> Any:
    return query.outerjoin(campaign_runs, campaign_runs.c.id == call_tasks.c.run_id).outerjoin(
        enrollments, enrollments.c.id == call_tasks.c.enrollment_id
    )


def _scanned(query: Any, criteria: tuple[Any, ...]) -> Any:
    """``query`` over the tasks with their members, runs and enrollments, kept to ``criteria``."""
    return _with_runs_and_enrollments(
        query.join(participants, participants.c.id == call_tasks.c.participant_id)
    ).where(*criteria)


def _eligible(*, postgres: bool, teams: bool) -> Any:
    team_ok = (
        or_(
            call_tasks.c.team.is_(None),
            any_of_bound(call_tasks.c.team, "scan_teams", postgres, String()),
        )
        if teams
        else call_tasks.c.team.is_(None)
    )
    may_have_fallen_back = or_(
        any_of_bound(call_tasks.c.assigned_agent, "scan_active", postgres, String(), negate=True),
        call_tasks.c.due_at <= _FALLBACK_DUE,
    )
    return or_(
        call_tasks.c.assigned_agent == _LOGIN,
        and_(
            or_(
                call_tasks.c.assigned_agent.is_(None),
                past_due_callback_of_another(_LOGIN, _AT, may_have_fallen_back),
            ),
            or_(
                team_ok,
                call_tasks.c.participant_id.in_(
                    select(_MANAGED.c.id).where(_MANAGED.c.account_manager == _LOGIN)
                ),
            ),
        ),
    )


_PROGRAMS = select(programs)
# The scans' statements, built once per shape, person columns and runs' standing conditions
# with their instant bound (#19): building one cost ~10 ms, more than running it. Insertion
# ordered; the oldest go first past this many (runs come and go).
_SELECTS: dict[tuple[Any, ...], tuple[Any, BoundAt]] = {}
_SELECTS_KEPT = 32
_SELECTS_LOCK = threading.Lock()


class _Scan:
    """The one query behind lists and claims: open (or abandoned) tasks due by ``until`` that
    may be served to ``agent``, with only the columns the order and the checks read (loading
    whole rows costs more than all the rest of a claim on a long list), the participant's call
    consent and whether their number is suppressed."""

    def __init__(
        self,
        session: Reader,
        *,
        at: datetime,
        agent: Any,
        until: datetime,
        rules: CallRules = DEFAULT_RULES,
        active: set[str] | None = None,
    ) -> None:
        self.session, self.at, self.agent, self.until = session, at, agent, until
        self.rules = rules
        # The active agents' logins (a claim reads them with the agent's live claim).
        self.active = active_logins(session) if active is None else active
        self.rows_read = 0  # rows the last load read, before the callback fallback filter
        self.forms = ClaimForms(session)
        self.person_names = [*PERSON_COLUMNS]  # and the priority fields (select)
        self.active_runs = self.forms.load_active()
        # The active runs whose claim forms the select reads (priority fields, standing):
        # all of them, unless the claim narrowed them to the runs its tasks belong to.
        self.runs: list[int] = self.active_runs
        self.programs = {program.id: program for program in session.execute(_PROGRAMS)}
        self.routing = LanguageRouting.for_agent(session, agent, rules.language_routing_wait)
        self.steps: dict[tuple[Any, ...], StepForm | None] = {}
        self._select: Any = None  # built once: building the expression costs ~10 ms
        self.postgres = dialect_name(session) == "postgresql"
        # The values of the scan's bound parameters (_scan_criteria), given to every statement
        # built on it.
        self.params: dict[str, Any] = {"scan_at": at, "scan_until": until}
        if agent is not None:
            self.params |= {
                "scan_agent": agent.login,
                "scan_teams": list(agent.teams or []),
                "scan_active": sorted(self.active),
                "scan_fallback_due": at - rules.callback_fallback_after,
            }

    def serve_only(self, run_ids: Collection[int | None]) -> None:
        """Read the claim forms of these runs only (those the tasks found belong to): a run
        with nothing due for the agent adds nothing to the select. Once the select is built
        (it read them all), nothing changes."""
        if self._select is None:
            self.runs = [run_id for run_id in self.active_runs if run_id in run_ids]

    def where(self, query: Any) -> Any:
        return _scanned(query, self._criteria())

    def _criteria(self) -> tuple[Any, ...]:
        return _scan_criteria(**self._shape())

    def groups(self) -> Any:
        """The (run, step, kind) groups of the tasks the scan may serve."""
        return _scan_groups(**self._shape())

    def _shape(self) -> dict[str, bool]:
        return {
            "postgres": self.postgres,
            "agent": self.agent is not None,
            "teams": bool(self.agent is not None and self.agent.teams),
        }

    def select(self) -> Any:
        if self._select is None:
            forms = {run_id: self.forms.for_run(run_id) for run_id in self.runs}
            for form in forms.values():
                for step in form.steps.values() if form else ():
                    for key in step.priority:
                        name = "attributes" if key.field.startswith("attributes.") else key.field
                        if name not in self.person_names:
                            self.person_names.append(name)
            standing = {
                run_id: (form.standing, self.programs[self.forms.program_ids[run_id]].timezone)
                for run_id, form in forms.items()
                if form is not None
            }
            # What the statement is made of, its instant aside (bound): the same for every
            # claim until a run starts or ends or a program's zone changes.
            made_of = (
                tuple(sorted(self._shape().items())),
                tuple(self.person_names),
                tuple((run_id, repr(f), tz) for run_id, (f, tz) in standing.items()),
            )
            built = _SELECTS.get(made_of)
            if built is None:
                built = self._build_select(standing)
                with _SELECTS_LOCK:  # the console's claims run in threads
                    _SELECTS[made_of] = built
                    while len(_SELECTS) > _SELECTS_KEPT:
                        del _SELECTS[next(iter(_SELECTS))]
            self._select, at = built
            self.params |= at.params(self.at)
        return self._select

    def _build_select(self, standing: dict[int, tuple[Any, str]]) -> tuple[Any, BoundAt]:
        from engine.audience import BoundAt  # imported by the standing check anyway

        task_t, person_t = call_tasks, participants
        at = BoundAt("standing_at_")
        return self.where(
            select(
                *(task_t.c[name] for name in TASK_COLUMNS),
                *(person_t.c[name] for name in self.person_names),
                select(participant_consents.c.status)
                .where(
                    participant_consents.c.participant_id == person_t.c.id,
                    participant_consents.c.channel == "call",
                )
                .limit(1)
                .scalar_subquery(),
                select(suppressions.c.id)
                .where(
                    suppressions.c.address == person_t.c.phone,
                    suppressions.c.channel.in_(("call", "all")),
                )
                .limit(1)
                .exists(),
                # The standing check of every active run in the same statement (one query
                # per run and page before): NULL for another run's task.
                not_standing_case(standing, at),
            ).select_from(task_t)
        ), at

    def load(self, query: Any, params: dict[str, Any] | None = None) -> list[Candidate]:
        """The candidates of ``query`` (the select, narrowed and ordered), its parameters
        the scan's and ``params``."""
        found: list[Candidate] = []
        split = len(TASK_COLUMNS)
        base = split + len(self.person_names)
        self.rows_read = 0
        for row in self.session.execute(query, self.params | (params or {})):
            self.rows_read += 1
            task = SimpleNamespace(**dict(zip(TASK_COLUMNS, row[:split], strict=True)))
            person = SimpleNamespace(**dict(zip(self.person_names, row[split:base], strict=True)))
            person.call_consent, person.call_suppressed = row[base], bool(row[base + 1])
            person.not_standing = row[base + 2]  # None: not known (read by mark_not_standing)
            # The re-check's: the channels suppressed for the listed number's hash.
            person.listed_hash_suppressions = row[base + 3] if len(row) > base + 3 else None
            fallback = None
            if self.agent is not None and task.assigned_agent not in (None, self.agent.login):
                # Another agent's callback: only once it has fallen back to the team.
                fallback = fallback_reason(
                    task,
                    zone=self.programs[person.program_id].timezone,
                    active=self.active,
                    at=self.at,
                    rules=self.rules,
                    holidays=self.programs[person.program_id].holidays,
                )
                if fallback is None:
                    continue
            form = self.forms.for_run(task.run_id)
            step_key = (task.run_id, task.step_id or task.source_step_id)
            if step_key not in self.steps:
                self.steps[step_key] = step_form_of(task, form)
            found.append(
                Candidate(
                    task=task,
                    participant=person,
                    program=self.programs[person.program_id],
                    form=form,
                    step=self.steps[step_key],
                    fallback=fallback,
                )
            )
        return found


def candidates(
    session: Reader,
    *,
    at: datetime,
    agent: Any = None,
    until: datetime | None = None,
    task_ids: Sequence[int] | None = None,
    rules: CallRules = DEFAULT_RULES,
    scan: _Scan | None = None,
    lock: bool = False,
    listed_phone: str | None = None,
) -> list[Candidate]:
    """Every servable task due by ``until`` (default ``at``), evaluated and in serving order.
    ``scan``: the claim's own (same agent, instant and rules), so its re-check of one task
    does not read the agents, runs and programs again. ``lock`` (PostgreSQL): lock the tasks
    read, skipping those another transaction holds (SQLite: the write lock is held).
    ``listed_phone`` (with ``task_ids``, the re-check): the number the member had when the
    task was listed; the suppressions of its hash are read in the same statement, and only a
    number changed since is looked up by a statement of its own."""
    at = ensure_utc(at)
    if scan is None:
        scan = _Scan(
            session, at=at, agent=agent, until=ensure_utc(until) if until else at, rules=rules
        )
    query = scan.select().order_by(call_tasks.c.due_at, call_tasks.c.id)
    if task_ids is not None:
        query = query.where(call_tasks.c.id.in_(task_ids))
    if lock and scan.postgres:
        query = query.with_for_update(skip_locked=True, of=call_tasks)
    params: dict[str, Any] = {}
    listed_hash = hash_normalised(listed_phone) if task_ids is not None and listed_phone else None
    if listed_hash is not None:
        query = query.add_columns(_suppressed_channels_of_hash(scan.postgres))
        params["listed_hash"] = listed_hash
    found = scan.load(query, params)
    known: dict[str, set[str]] = {}
    for c in found:
        if listed_hash is not None and c.participant.phone == listed_phone:
            known[listed_hash] = set(gathered_values(c.participant.listed_hash_suppressions))
    evaluate(
        session,
        found,
        at,
        exact=task_ids is not None,
        rules=rules,
        routing=scan.routing,
        suppressed_known=known,
    )
    rank(found)
    found.sort(key=Candidate.order_key)
    return found


@functools.cache
def _suppressed_channels_of_hash(postgres: bool) -> Any:
    """The channels (call, all) on which the number hashed ``listed_hash`` is suppressed, as
    one column of the re-check (:func:`_suppressed_by_hash`'s answer for that number)."""
    return (
        select(gathered(suppressions.c.channel, postgres))
        .where(
            suppressions.c.address_hash == bindparam("listed_hash", type_=String()),
            suppressions.c.channel.in_(("call", "all")),
        )
        .scalar_subquery()
    )


PAGE = 200
FIRST_PAGES = (10, 50)


def serving_order(
    session: Reader,
    *,
    at: datetime,
    agent: Any,
    rules: CallRules = DEFAULT_RULES,
    scan: _Scan | None = None,
) -> Iterator[Candidate]:
    """The tasks callable now (and those the gate refuses, first) in serving order, without
    evaluating the whole list: each campaign step's tasks are read a page at a time in its
    priority order, and its first callable task is its best; the steps' best are merged."""
    at = ensure_utc(at)
    if scan is None:
        scan = _Scan(session, at=at, agent=agent, until=at, rules=rules)
    step_expr = _STEP
    groups = session.execute(scan.groups(), scan.params).all()
    scan.serve_only({run_id for run_id, _, _ in groups})
    refused: list[Candidate] = []
    streams: list[Iterator[Candidate]] = []

    def stream(run_id: Any, step_id: Any, kind: str) -> Iterator[Candidate]:
        query = scan.select().where(
            call_tasks.c.run_id.is_(None) if run_id is None else call_tasks.c.run_id == run_id,
            step_expr.is_(None) if step_id is None else step_expr == step_id,
            call_tasks.c.kind == kind,
        )
        step = step_form_of(
            SimpleNamespace(step_id=step_id, source_step_id=None), scan.forms.for_run(run_id)
        )
        for page in _pages(scan, query.order_by(*priority_order(session, step)), at):
            for c in page:
                if c.blocked is not None:
                    refused.append(c)
                elif c.callable_now:
                    yield c

    for run_id, step_id, kind in groups:
        streams.append(stream(run_id, step_id, kind))
    heads: list[tuple[tuple[Any, ...], int, Candidate]] = []
    for index, it in enumerate(streams):
        first = next(it, None)
        if first is not None:
            heads.append((first.order_key(), index, first))
    yield from refused
    refused.clear()
    heapq.heapify(heads)
    while heads:
        _, index, best = heapq.heappop(heads)
        yield from refused
        refused.clear()
        yield best
        following = next(streams[index], None)
        if following is not None:
            heapq.heappush(heads, (following.order_key(), index, following))
    yield from refused


def _page_sizes() -> Iterator[int]:
    """Small first pages: the best task of a step is most often among its first few, and
    evaluating a candidate (zones, window, standing, caps) is the cost of a claim."""
    yield from FIRST_PAGES
    while True:
        yield PAGE


def _pages(scan: _Scan, query: Any, at: datetime) -> Iterator[list[Candidate]]:
    offset = 0
    for size in _page_sizes():
        page = scan.load(query.limit(size).offset(offset))
        # Read now: a claim's re-check loads through the same scan while this page is out.
        last = scan.rows_read < size
        evaluate(scan.session, page, at, rules=scan.rules, routing=scan.routing)
        for index, c in enumerate(page):
            c.rank = offset + index
        yield page
        if last:
            return
        offset += size


# --------------------------------------------------------------------------- claim


@dataclass(frozen=True)
class Claim:
    task_id: int
    agent: str
    claimed_at: datetime
    claimed_until: datetime
    resumed: bool  # the agent already held this claim
    closed_on_the_way: list[tuple[int, str]]  # tasks the gate refused while looking


@functools.cache
def _held_and_active(postgres: bool) -> Any:
    """The agent's live claim (id, claimed_at, claimed_until; NULL when none) and the active
    agents' logins, in one statement built once per database (#19). Run after the agent's
    lock, never in its statement: on PostgreSQL a statement that waited for the lock still
    reads other rows as they were when it began, and would miss the claim that the agent's
    other request committed meanwhile."""
    held, roster = call_tasks.alias("held"), agents.alias("roster")
    first_held = (
        select(call_tasks.c.id)
        .where(*HELD_CONDITIONS)
        .order_by(HELD_ORDER)
        .limit(1)
        .scalar_subquery()
    )
    active = select(gathered(roster.c.login, postgres)).where(roster.c.active.is_(True))
    return (
        select(
            held.c.id,
            held.c.claimed_at,
            held.c.claimed_until,
            active.scalar_subquery().label("active_logins"),
        )
        .select_from(agents.outerjoin(held, held.c.id == first_held))
        .where(agents.c.login == bindparam("held_by"))
    )


def claim_next(
    session: Reader,
    agent_login: str,
    *,
    at: datetime,
    lease: timedelta = DEFAULT_LEASE,
    rules: CallRules = DEFAULT_RULES,
) -> Claim | None:
    """Claim the single best task callable now for the agent, or None when there is none.

    A lease: the task is the agent's until ``at + lease``; after that it is served again.
    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent agents skip each other's rows. SQLite:
    call first in its transaction (the write lock serialises claims). An agent who already
    holds a live claim gets it back instead of a second one.
    """
    at = ensure_utc(at)
    # The first statement, and a write: on SQLite it takes the write lock (as
    # take_write_lock does).
    close_expired_call_tasks(session, at)
    # Read and held: one at a time with the agent's pause (calls/pauses.py).
    agent = locked_agent(session, agent_login)
    if not agent.active:
        raise InputError(
            f"agent {agent.login!r} is disabled; `campaign agents enable {agent.login}` first"
        )
    held = session.execute(
        _held_and_active(dialect_name(session) == "postgresql"),
        held_claim_params(agent.login, at),
    ).one()
    if held.id is not None and held.claimed_at is not None and held.claimed_until is not None:
        return Claim(held.id, agent.login, held.claimed_at, held.claimed_until, True, [])
    closed: list[tuple[int, str]] = []
    # One scan for the whole claim: the agents, runs and programs it reads do not change
    # between finding a task and re-checking it.
    active = set(gathered_values(held.active_logins))
    scan = _Scan(session, at=at, agent=agent, until=at, rules=rules, active=active)
    # Tasks the gate refuses (opted out, do-not-call, no number...) come first and are closed
    # with the reason, so they leave every list; each is re-checked under its lock.
    for c in serving_order(session, at=at, agent=agent, rules=rules, scan=scan):
        # Lock the row and re-check it with fresh facts in one statement: an opt-out may have
        # just arrived. Nothing back: another agent has it, or it is no longer servable.
        fresh = candidates(
            session,
            at=at,
            agent=agent,
            task_ids=[c.task.id],
            rules=rules,
            scan=scan,
            lock=True,
            listed_phone=c.participant.phone,
        )
        if not fresh:
            continue
        check = fresh[0]
        if check.blocked is not None:
            _set(
                session,
                check.task.id,
                status="closed",
                claimed_until=None,
                updated_at=at,
                close_reason=f"not callable: {check.blocked}",
            )
            closed.append((check.task.id, check.blocked))
            continue
        if not check.callable_now:
            continue
        _set(
            session,
            check.task.id,
            status="claimed",
            claimed_by=agent.login,
            claimed_at=at,
            claimed_until=at + lease,
            updated_at=at,
            # A new claim starts unverified, even one made at the instant of an earlier
            # claim's verification (engine/calls/verification.py is_verified).
            verified_at=None,
            verified_by=None,
        )
        return Claim(check.task.id, agent.login, at, at + lease, False, closed)
    return None


# Built once (#19): the columns set are those of the parameters given (SQLAlchemy compiles
# and caches one statement per set of them), the task's id bound as set_task_id.
_SET_TASK = update(call_tasks).where(call_tasks.c.id == bindparam("set_task_id"))


def _set(session: Reader, task_id: int, **values: Any) -> None:
    """Write a locked task's new state (an UPDATE of the row: no ORM load of it first)."""
    session.execute(_SET_TASK, {"set_task_id": task_id, **values})


def release(session: Session, task_id: int, agent_login: str, *, at: datetime) -> None:
    """Give a claimed task back to the queue at once (the agent cannot call now)."""
    from engine.db.models import CallTask  # the ORM: not on the claim's path

    take_write_lock(session)
    task = session.get(CallTask, task_id)
    if task is None or task.status != "claimed" or task.claimed_by != agent_login:
        raise NotFoundError(f"task {task_id} is not claimed by {agent_login}")
    task.status, task.claimed_until, task.updated_at = "open", None, ensure_utc(at)

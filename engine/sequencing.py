"""Advance due enrollments through their campaign's steps: messages, call tasks, exits.

:func:`advance` is what the tick and the scheduler call. It looks at every *treatment*
enrollment in state ``active`` of an ``active`` run whose ``next_action_at`` has come (paused
runs wait; holdout enrollments are never touched until their run completes) and, step by step:

- **timing**: the first step is due ``delay`` after enrollment, each next one ``delay`` after
  the previous step's due time. With ``at: HH:MM`` the step is due at that wall time in the
  recipient's zone on the local date of (base + delay); when that instant is before the base it
  moves to the next day ("0d at 09:30" launched at 15:00 goes tomorrow 09:30). Zone: the
  participant's, else the phone number's (all candidate zones: the latest instant wins, so no
  candidate sees it early), else the program's. DST-safe via
  :func:`engine.policy.windows.local_time_on_day`.
- **spacing** (issue #21; the least invasive rule that keeps "delay after the previous
  message actually sent" without a new column): when a step falls due, the message of the
  step before it (and, for ``email_not_opened``/``email_not_clicked``/``no_reply``, the latest
  earlier message of the channel the condition reads) is looked at:

  * made in this same walk for an overdue step (more than ``SLACK``, an hour, late: a run
    resumed after a pause, a stopped cron) and scheduled apart from this one: this step waits
    until ``delay`` after now (the earliest that message can go), instead of leaving with it;
  * sent more than ``SLACK`` later than its schedule: this step is due ``delay`` after it
    actually went (its time and deadline count from there);
  * read by a condition: while it has not gone (queued/sending) the step waits, and once it
    went the step is due no earlier than ``delay`` after it (an open is judged on a window
    that really passed).

  A message queued by an earlier advance that has not gone yet (an outage, a window, a cap)
  does not stop the sequence: the next message is still made on time, and the dispatcher's
  gate holds it until ``delay`` after the earlier one went (:mod:`engine.sending.deadlines`). Steps
  scheduled at one instant still go together. A wait is at least ``MIN_WAIT`` (5 minutes).
- **exit** (checked when a step falls due): the member no longer matches the campaign's
  standing conditions (engine/definitions/standing.py; ``exit_reason`` ``no_longer_eligible:
  ...``); or every channel the remaining steps use is closed by
  opt-out, suppression or missing consent (state ``exited``, ``exit_reason`` names each
  channel's reason). Conversion (state ``converted``) and run cancel are set elsewhere; such
  enrollments are simply no longer due.
- **conditions**: all of the step's conditions must hold, else the step is skipped and the
  sequence moves on: ``not_converted`` (no conversion row), ``not_reached_by_phone`` (no call
  task of the enrollment with ``reached_at``), ``email_not_opened`` / ``email_not_clicked``
  (no outbox message of the enrollment with ``opened_at`` / ``clicked_at``), ``no_reply`` (no
  ``reply`` message event of the participant since enrollment).
- **action**: an email/SMS step makes ONE ``outbox_messages`` row (status ``queued``, content
  rendered now, ``not_before`` = the due time, ``expires_at`` = its deadline
  (:mod:`engine.sending.deadlines`); ``skipped``/``expired`` when the deadline has already passed,
  ``skipped``/``no_address`` when the record has no address, ``skipped``/``render_error``
  when the template fails for this member, ``skipped``/``empty_subject``, ``empty_body``,
  ``sms_too_long`` or ``over_segment_limit`` for content a provider would refuse); a call
  step makes one ``call_tasks`` row (kind ``campaign``, status ``open``, ``due_at``,
  ``expires_at``; closed ``expired`` when already past it). When more than 5% (and at least
  5) of one step's members in a batch fail to render, the run is paused with the reason and
  that batch's enrollments of the run are left where they were (a broken template must not
  spend the audience). Before anything, a missing templates folder or file of an active run
  stops the advance (:mod:`engine.preflight`), and call tasks past their deadline are closed.
  After the last step the enrollment is ``completed``; a run with no work left (no
  enrollment with steps left, no pending message, no open call task: engine/run_work.py) is
  ``completed``, its holdout enrollments with it.

The send-time gate (windows, consent, caps) is the dispatcher's job when it claims a message.

Rendered content (``outbox_messages.content``), exactly what the dispatcher sends::

    email:            {"subject": str, "html": str, "text": str,
                       "headers": {"List-Unsubscribe": "<url>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    SendGrid dynamic: {"template_id": "d-...", "dynamic_template_data": {...}, "headers": {...}}
    sms:              {"body": str, "encoding": "GSM-7" | "UCS-2", "segments": int}

rendered by :class:`engine.templates.Renderer` exactly as ``campaign preview`` renders it
(the first SMS step of a campaign carries the opt-out notice). ``variant`` records the A/B arm
(:mod:`engine.variants`), ``template`` the template actually used.

**Never twice.** Each batch is written in one transaction that first moves the enrollments
with a conditional UPDATE (``WHERE next_step_index = <the index we read> AND state =
'active'``, RETURNING the rows it moved) and then inserts messages and call tasks only for the
enrollments it moved, with ``ON CONFLICT (enrollment_id, step_id) DO NOTHING``. Two advances at
once (threads, processes, a cron tick beside the scheduler) may both render an enrollment, but
only one moves it and the unique keys keep one row per (enrollment, step) whatever happens.

**Scale.** Due enrollments are streamed in batches in (next_action_at, id) order, and each
batch is committed on its own, so a million enrollments never sit in memory. Rendering (~25
µs per email) is the largest part, so when the first batch is full the rest is shared out to
forked worker processes (``render_workers``) that take batches in turn from one keyset
cursor (:class:`_DueCursor`), each with its own connections; on SQLite they take turns to
write. Outbox rows go in below the ORM (executemany on SQLite, COPY on PostgreSQL). See
bench/bench_materialise.py.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import os
import re
import threading
import time as monotonic
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import orjson
import psycopg
from sqlalchemy import (
    Connection,
    exists,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from engine.app import App
from engine.clock import ensure_utc
from engine.consent.defaults import defaulted
from engine.consent.unsubscribe import UnsubscribeSigner, signing_key
from engine.consent.wording import CONSENT_NOT_STATED, closed_channels, exited_label
from engine.db.models import (
    CallTask,
    CampaignRun,
    Conversion,
    Enrollment,
    MessageEvent,
    OutboxMessage,
    Program,
)
from engine.definitions.loader import parse_definition
from engine.definitions.schema import CampaignDefinition, Step
from engine.errors import EngineError, InputError
from engine.policy.gate import ConsentStatus, gate
from engine.policy.windows import local_time_on_day
from engine.policy.zones import candidate_zones
from engine.preflight import check_templates
from engine.reports.tallies import largest_outbox_id, tally_counted, tally_inserted
from engine.run_work import has_no_work
from engine.sampling import bucket
from engine.sending.content_checks import (
    REFUSALS,
    RENDER_ERROR_MIN,
    RENDER_ERROR_SHARE,
    ContentRefused,
    check_content,
    refusal_of,
)
from engine.sending.deadlines import (
    EXPIRED,
    close_expired_call_tasks,
    message_deadline,
    not_standing,
    standing_reason,
)
from engine.sending.outbox import message_uids
from engine.sending.outbox_status import QUEUED, SENDING, SKIPPED
from engine.templates import (
    Attributes,
    ParticipantData,
    Renderer,
    message_context,
)
from engine.variants import pick_variant, variant_salt

log = logging.getLogger(__name__)


# =========================================================================== pure rules


@dataclass(frozen=True)
class Facts:
    """What the database says about one enrollment, for exits and conditions."""

    converted: bool = False
    reached_by_phone: bool = False
    email_opened: bool = False
    email_clicked: bool = False
    replied: bool = False
    # channel -> why it cannot be used (engine.policy.gate reasons); open channels are absent.
    closed: Mapping[str, str] = field(default_factory=dict)
    # step index -> the enrollment's message of that step (for spacing and waiting).
    messages: Mapping[int, MessageState] = field(default_factory=dict)
    # Why the member no longer matches the campaign's standing conditions (None: still does).
    not_standing: str | None = None


@dataclass(frozen=True)
class MessageState:
    """An email/SMS of the enrollment as spacing sees it."""

    pending: bool  # queued, sending or unknown: it has not (knowingly) gone yet
    sent_at: datetime | None
    not_before: datetime
    fresh: bool = False  # made in this same walk (not yet in the database)


CONDITIONS: Mapping[str, Callable[[Facts], bool]] = {
    "not_converted": lambda f: not f.converted,
    "not_reached_by_phone": lambda f: not f.reached_by_phone,
    "email_not_opened": lambda f: not f.email_opened,
    "email_not_clicked": lambda f: not f.email_clicked,
    "no_reply": lambda f: not f.replied,
}


@dataclass(frozen=True)
class Action:
    """Step ``step_index`` is taken, due at ``due``."""

    step_index: int
    due: datetime
    expires_at: datetime | None = None
    expired: bool = False  # past its deadline already: made as skipped/expired, never queued


# Spacing (see the module docstring): a previous message that went within SLACK of its
# schedule does not move the next step; a wait is at least MIN_WAIT (never "now" again, which
# the same advance's scan would meet once more).
SLACK = timedelta(hours=1)
MIN_WAIT = timedelta(minutes=5)
# Conditions about an earlier message: the channels of the message they read.
_MESSAGE_CONDITIONS: Mapping[str, frozenset[str]] = {
    "email_not_opened": frozenset({"email"}),
    "email_not_clicked": frozenset({"email"}),
    "no_reply": frozenset({"email", "sms"}),
}

# (step, due) -> the step's deadline for this member, or None
DeadlineOf = Callable[[Step, datetime], "datetime | None"]


@dataclass(frozen=True)
class Outcome:
    """Where one enrollment goes in one advance."""

    actions: tuple[Action, ...]
    # (step index, the first condition that did not hold)
    skipped: tuple[tuple[int, str], ...]
    next_step_index: int
    next_action_at: datetime | None
    state: str  # active | exited | completed
    exit_reason: str | None = None


def step_due(base: datetime, step: Step, zones: Callable[[], Sequence[str]]) -> datetime:
    """When ``step`` is due, counted from ``base`` (enrollment, or the previous step's due
    time); see the module docstring. ``zones`` is called only for steps with ``at``."""
    moment = base + step.delay
    if step.at is None:
        return moment
    return max(_at_local(base, moment, step.at, zone) for zone in zones())


def _at_local(base: datetime, moment: datetime, at: time, zone: str) -> datetime:
    due = local_time_on_day(moment, 0, at, zone)
    if due < base:
        due = local_time_on_day(moment, 1, at, zone)
    return due


def plan_enrollment(
    steps: Sequence[Step],
    *,
    enrolled_at: datetime,
    next_step_index: int,
    next_action_at: datetime | None,
    facts: Facts,
    at: datetime,
    zones: Callable[[], Sequence[str]],
    deadline: DeadlineOf | None = None,
) -> Outcome:
    """Walk one enrollment through every step due at ``at`` (pure).

    ``next_action_at`` is the due time of step ``next_step_index``, except for step 0 whose due
    time is always computed from ``enrolled_at`` (a launch sets ``next_action_at`` to the
    enrollment instant). ``deadline`` gives a step's deadline for this member (None: no
    deadlines); a step taken past it is an action marked ``expired``.
    """
    index = next_step_index
    if index >= len(steps):
        return Outcome((), (), index, None, "completed")
    due = step_due(enrolled_at, steps[0], zones) if index == 0 else next_action_at or enrolled_at
    actions: list[Action] = []
    skipped: list[tuple[int, str]] = []
    states: dict[int, MessageState] = dict(facts.messages)
    while index < len(steps):
        if due <= at:
            due, wait = _spacing(steps, index, due, states, at, zones)
            if wait is not None:
                return Outcome(tuple(actions), tuple(skipped), index, wait, "active")
        if due > at:
            return Outcome(tuple(actions), tuple(skipped), index, due, "active")
        if facts.not_standing is not None:
            return Outcome(
                tuple(actions), tuple(skipped), index, None, "exited", facts.not_standing
            )
        reason = exit_reason(steps[index:], facts)
        if reason is not None:
            return Outcome(tuple(actions), tuple(skipped), index, None, "exited", reason)
        step = steps[index]
        failing = next((c for c in step.condition if not CONDITIONS[c](facts)), None)
        if failing is None:
            limit = deadline(step, due) if deadline is not None else None
            late = limit is not None and limit <= at
            actions.append(Action(index, due, limit, late))
            if step.channel != "call" and not late:
                states[index] = MessageState(True, None, due, fresh=True)
        else:
            skipped.append((index, failing))
        index += 1
        if index < len(steps):
            due = step_due(due, steps[index], zones)
    return Outcome(tuple(actions), tuple(skipped), index, None, "completed")


def _chain(start: datetime, steps: Sequence[Step], zones: Callable[[], Sequence[str]]) -> datetime:
    """Due time of the last of ``steps`` when the step before them happened at ``start``."""
    for step in steps:
        start = step_due(start, step, zones)
    return start


def _spacing(
    steps: Sequence[Step],
    index: int,
    due: datetime,
    states: Mapping[int, MessageState],
    at: datetime,
    zones: Callable[[], Sequence[str]],
) -> tuple[datetime, datetime | None]:
    """(the step's due time, moved on by the messages it follows; an instant to wait until
    instead, or None). See "Spacing" in the module docstring."""
    anchors: list[tuple[int, bool]] = []
    if index > 0 and steps[index - 1].channel != "call":
        anchors.append((index - 1, False))
    for condition in steps[index].condition:
        channels = _MESSAGE_CONDITIONS.get(condition)
        if channels is None:
            continue
        earlier = [j for j in range(index) if steps[j].channel in channels]
        if earlier:
            anchors.append((earlier[-1], True))
    for j, strict in anchors:
        state = states.get(j)
        if state is None:
            continue
        after = steps[j + 1 : index + 1]
        if state.pending:
            # A message queued by an earlier advance is held back at send time instead
            # (engine.sending.deadlines.send_time_refusals), so that a quiet dispatcher does not
            # stop the sequence; one made in this walk for an overdue step, or one a
            # condition reads, makes this step wait here.
            # (Steps scheduled at one instant have no spacing to keep: they go together.)
            if strict or (state.fresh and at - due > SLACK and due > state.not_before):
                earliest = _chain(max(at, state.not_before), after, zones)
                return due, max(earliest, at + MIN_WAIT)
        elif state.sent_at is not None:
            later = _chain(state.sent_at, after, zones)
            if strict or later > due + SLACK:
                due = max(due, later)
    return due, None


def exit_reason(remaining: Sequence[Step], facts: Facts) -> str | None:
    """Why the enrollment leaves the sequence, or None: every channel the remaining steps use
    is closed, and at least one by opt-out/suppression/consent not stated (a channel closed for lack
    of an address gets ``no_address`` messages, as the brief of the outbox asks)."""
    channels = sorted({step.channel for step in remaining})
    closed = {channel: facts.closed.get(channel) for channel in channels}
    if any(reason is None for reason in closed.values()):
        return None
    if all(reason == "no_address" for reason in closed.values()):
        return None
    return closed_channels({channel: str(reason) for channel, reason in closed.items()})


# =========================================================================== summary


@dataclass
class AdvanceSummary:
    at: datetime
    enrollments: int = 0  # due enrollments looked at
    messages: dict[str, int] = field(default_factory=dict)  # queued, per channel
    messages_skipped: dict[str, int] = field(default_factory=dict)  # per status_reason
    call_tasks: int = 0
    steps_skipped: dict[str, int] = field(default_factory=dict)  # per failing condition
    exited: int = 0
    exited_consent_not_stated: int = 0  # of those, with a channel closed for want of consent
    completed: int = 0  # enrollments that finished their last step
    waiting: int = 0  # enrollments whose next step is later
    lost: int = 0  # moved meanwhile by another advance, a conversion or a cancel
    runs_completed: list[int] = field(default_factory=list)
    runs_paused: dict[int, str] = field(default_factory=dict)  # run id -> why (render errors)
    errors: list[str] = field(default_factory=list)
    stopped_early: bool = False  # the deadline came first; the rest is due next time
    processes: int = 1  # forked workers that shared the work (1: this process alone)
    seconds: float = 0.0

    @property
    def queued(self) -> int:
        return sum(self.messages.values())

    def merge(self, other: AdvanceSummary) -> None:
        """Add a forked worker's counts to these."""
        for name in ("enrollments", "call_tasks", "exited", "exited_consent_not_stated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("completed", "waiting", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in (
            (self.messages, other.messages),
            (self.messages_skipped, other.messages_skipped),
            (self.steps_skipped, other.steps_skipped),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.runs_paused.update(other.runs_paused)
        self.stopped_early = self.stopped_early or other.stopped_early

    @property
    def message(self) -> str:
        parts = [f"{self.enrollments} due enrollment(s)"]
        if self.messages:
            parts.append(
                "queued " + ", ".join(f"{n} {c}" for c, n in sorted(self.messages.items()))
            )
        if self.messages_skipped:
            parts.append(
                "skipped "
                + ", ".join(f"{n} ({r})" for r, n in sorted(self.messages_skipped.items()))
            )
        if self.call_tasks:
            parts.append(f"{self.call_tasks} call task(s)")
        if self.steps_skipped:
            parts.append(
                "steps not taken: "
                + ", ".join(f"{n} {c}" for c, n in sorted(self.steps_skipped.items()))
            )
        for label, count in (
            (exited_label(self.exited_consent_not_stated), self.exited),
            ("completed", self.completed),
            ("waiting", self.waiting),
            ("moved by someone else", self.lost),
        ):
            if count:
                parts.append(f"{count} {label}")
        if self.runs_completed:
            parts.append("runs completed: " + ", ".join(map(str, self.runs_completed)))
        text_ = "Advanced " + "; ".join(parts) + "."
        for run_id, reason in sorted(self.runs_paused.items()):
            text_ += f"\nRun {run_id} {reason}."
        return text_


# =========================================================================== rendering


class RendererConfig(NamedTuple):
    """Everything a worker process needs to build its own Renderer (picklable)."""

    templates_dir: str
    postal_address: str
    public_url: str
    signing_key: bytes

    def build(self) -> Renderer:
        return Renderer(
            self.templates_dir,
            postal_address=self.postal_address,
            public_url=self.public_url,
            unsubscribe_signer=UnsubscribeSigner(self.signing_key),
        )


class RenderItem(NamedTuple):
    channel: str
    template: str
    locale: str | None
    participant: ParticipantData
    participant_id: int
    program: str
    campaign: str
    description: str
    step_id: str
    first_sms: bool
    # The program's sms_opt_out_notice: off, the first SMS goes without the opt-out sentence.
    opt_out_notice: bool = True
    # The step's sms_max_segments: a longer SMS is refused (over_segment_limit).
    max_segments: int | None = None


# (content as JSON text, None) or (None, error message)
Rendered = tuple[str | None, str | None]


def render_item(renderer: Renderer, item: RenderItem) -> Rendered:
    """One message's content (the shapes in the module docstring) as compact JSON."""
    try:
        url = renderer.unsubscribe_url(item.participant_id) if item.channel == "email" else None
        context = message_context(
            item.participant,
            item.program,
            {"name": item.campaign, "description": item.description},
            {"id": item.step_id},
            unsubscribe_url=url,
        )
        content: dict[str, Any]
        if item.channel == "email":
            email = renderer.render_email(item.template, context, item.locale)
            if email.template_id is not None:
                content = {
                    "template_id": email.template_id,
                    "dynamic_template_data": email.dynamic_template_data,
                    "headers": email.headers,
                }
            else:
                content = {
                    "subject": email.subject,
                    "html": email.html,
                    "text": email.text,
                    "headers": email.headers,
                }
        else:
            sms = renderer.render_sms(
                item.template,
                context,
                item.locale,
                first_in_campaign=item.first_sms,
                opt_out_notice=item.opt_out_notice,
            )
            content = {"body": sms.body, "encoding": sms.encoding, "segments": sms.segments}
        check_content(item.channel, content, item.max_segments)
    except EngineError as exc:
        return None, str(exc)
    return content_json(content), None


def content_json(content: dict[str, Any]) -> str:
    """Compact JSON text of a message's content. orjson is five times faster than json.dumps
    here (a large step writes a million of these); json.dumps takes what orjson refuses
    (an integer past 64 bits from an imported attribute)."""
    try:
        return orjson.dumps(content).decode()
    except TypeError:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


# =========================================================================== database


@dataclass(frozen=True)
class _Run:
    """A run's definition (from its stored source, never the current file) and program."""

    id: int
    campaign: str
    definition: CampaignDefinition
    program_name: str
    program_zone: str
    program_region: str
    first_sms: int | None
    salts: Mapping[int, int]  # step index -> variant salt
    sms_opt_out_notice: bool = True

    @property
    def steps(self) -> list[Step]:
        return self.definition.steps


class _Row(NamedTuple):
    id: int
    run_id: int
    participant_id: int
    enrolled_at: datetime
    next_action_at: datetime
    next_step_index: int
    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    status: str | None
    locale: str | None
    tier: str | None
    points_balance: int | None
    points_expiring: int | None
    points_expire_at: Any
    renewal_date: Any
    attributes: dict[str, Any] | None
    timezone: str | None
    sample_key: int


def _due_sql(dialect: str, skip_runs: Sequence[int], size: int) -> str:
    """Due treatment enrollments of active runs with their participants, in (next_action_at,
    id) order, after a keyset position.

    The keyset is what lets forked workers share one scan (see _DueCursor): each query starts
    at the row after the last one handed out, on the (state, next_action_at, id) index
    (migration 0010), instead of at the front of the due range stepping over rows other
    workers hold and, on PostgreSQL, over the index entries of rows already moved that no
    scan may prune while another worker's transaction is open (a query of 2,000 rows cost
    six times as much with two workers). Nothing a batch moves comes back into the range: a
    moved enrollment's next step is due after ``at``, or it has none.
    Plain SQL, read with the driver's own types (see _row): the ORM's result processing cost
    more than the query. Parameters: ``at`` and the keyset position (next_action_at, id).
    """
    mark = "%s" if dialect == "postgresql" else "?"
    sql = (
        "SELECT e.id, e.run_id, e.participant_id, e.enrolled_at, e.next_action_at, "
        "e.next_step_index, p.external_id, p.first_name, p.last_name, p.email, p.phone, "
        "p.status, p.locale, p.tier, p.points_balance, p.points_expiring, "
        "p.points_expire_at, p.renewal_date, p.attributes, p.timezone, p.sample_key "
        "FROM enrollments AS e "
        "JOIN participants AS p ON p.id = e.participant_id "
        "JOIN campaign_runs AS r ON r.id = e.run_id "
        "WHERE e.state = 'active' AND e.\"group\" = 'treatment' "
        f"AND e.next_action_at <= {mark} AND (e.next_action_at, e.id) > ({mark}, {mark}) "
        "AND r.status = 'active'"
    )
    if skip_runs:
        sql += f" AND e.run_id NOT IN ({_int_list(skip_runs)})"
    return sql + f" ORDER BY e.next_action_at, e.id LIMIT {int(size)}"


class _DueCursor:
    """The keyset position of an advance's scan of due rows: the (next_action_at, id) of the
    last row handed out, as the text the database returned (SQLite) or an ISO timestamp
    (PostgreSQL). Before an advance forks, :meth:`share` moves it into shared memory behind a
    process lock: the workers then take turns reading (``lock``), so every due row goes to
    exactly one worker and no read steps over another's. (An advance that does not fork, a
    minute's tick, needs no semaphore or shared memory of the system's.)"""

    def __init__(self) -> None:
        self.lock: Any = threading.Lock()
        self._time: Any = None  # shared: a char array
        self._id: Any = None  # shared: an int64
        self._local: tuple[bytes, int] = (b"", 0)

    def share(self) -> None:
        context = multiprocessing.get_context("fork")
        raw, enrollment_id = self._local
        self.lock = context.Lock()
        self._time = context.Array("c", 64, lock=False)
        self._id = context.Value("q", enrollment_id, lock=False)
        self._time.value = raw

    def position(self, sqlite_types: bool) -> tuple[Any, int]:
        """Where to start; call under ``lock``."""
        if self._time is None:
            raw, enrollment_id = self._local
        else:
            raw, enrollment_id = self._time.value, self._id.value
        if not raw:
            return ("", 0) if sqlite_types else (datetime.min.replace(tzinfo=UTC), 0)
        value = raw.decode()
        return (value if sqlite_types else datetime.fromisoformat(value)), enrollment_id

    def move_to(self, next_action_at: Any, enrollment_id: int) -> None:
        """Past this row; call under ``lock``."""
        raw = next_action_at if isinstance(next_action_at, str) else next_action_at.isoformat()
        if self._time is None:
            self._local = (raw.encode(), enrollment_id)
        else:
            self._time.value = raw.encode()
            self._id.value = enrollment_id


def _row(raw: Sequence[Any], sqlite_types: bool) -> _Row:
    """A due row as Python values. psycopg returns them typed; SQLite returns the text that
    SQLAlchemy's types store (naive UTC datetimes, ISO dates, JSON)."""
    if not sqlite_types:
        return _Row(*raw)
    values = list(raw)
    for i in (3, 4):
        values[i] = _from_sqlite_time(values[i])
    for i in (16, 17):
        if values[i] is not None:
            values[i] = date.fromisoformat(values[i])
    if values[18] is not None:
        values[18] = json.loads(values[18])
    return _Row(*values)


def _from_sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


@dataclass
class _Work:
    """One planned, rendered batch waiting for its write."""

    moves: list[tuple[_Row, Outcome]]
    messages: list[list[Any]]  # outbox rows in OUTBOX_COLUMNS order
    call_tasks: list[dict[str, Any]]
    pauses: dict[int, str] = field(default_factory=dict)  # run id -> why it is paused


OUTBOX_COLUMNS = (
    "uid",
    "run_id",
    "enrollment_id",
    "participant_id",
    "campaign",
    "step_id",
    "step_index",
    "variant",
    "channel",
    "template",
    "locale",
    "to_address",
    "content",
    "status",
    "status_reason",
    "not_before",
    "attempts",
    "last_error",
    "created_at",
    "updated_at",
    "expires_at",
)

_COLUMN_LIST = ", ".join(OUTBOX_COLUMNS)
# The staging table's columns as outbox_messages takes them (see _insert_staged).
_STAGED_COLUMNS = ", ".join("content::jsonb" if c == "content" else c for c in OUTBOX_COLUMNS)

# PostgreSQL: the per-connection staging table of _insert_staged (content as text: cast once
# on the way into outbox_messages).
_COPY_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS seq_outbox (
    uid varchar(32), run_id bigint, enrollment_id bigint, participant_id bigint,
    campaign varchar(64), step_id varchar(64), step_index integer, variant varchar(64),
    channel varchar(8), template varchar(128), locale varchar(16), to_address varchar(320),
    content text, status varchar(16), status_reason text, not_before timestamptz,
    attempts integer, last_error text, created_at timestamptz, updated_at timestamptz,
    expires_at timestamptz
)
"""


_HEX64 = re.compile(r"[0-9a-f]{64}")
# A message in these states has not gone yet (unknown may have: it left us).
PENDING = frozenset({QUEUED, SENDING})


def _tally_key(message: Sequence[Any]) -> tuple[Any, ...]:
    """An outbox row's key in outbox_tallies: run, step, channel, variant, status, and the
    reason of a skipped one."""
    status = message[13]
    return (
        message[1],
        message[5],
        message[8],
        message[7],
        status,
        message[14] if status == SKIPPED else None,
    )


def _int_list(values: Iterable[int]) -> str:
    """A literal SQL list of integers (refuses anything else)."""
    return ", ".join(str(int(v)) for v in values)


def _email_hash(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()


def _phone_hash(phone: str) -> str:
    return hashlib.sha256(phone.encode()).hexdigest()


class _Advance:
    def __init__(
        self,
        app: App,
        at: datetime,
        batch_size: int,
        limit: int | None,
        workers: int,
        deadline: float | None,
        *,
        cursor: _DueCursor | None = None,
        write_lock: Any = None,
        key: bytes | None = None,
    ) -> None:
        self.app = app
        self.deadline = deadline
        self.at = at
        self.batch_size = batch_size
        self.limit = limit
        self.workers = workers
        self.cursor = cursor if cursor is not None else _DueCursor()
        # SQLite: this advance's processes take turns to write, woken as soon as the lock is
        # free (SQLite's own busy wait sleeps 1, 2, 5, 10... ms between tries: a third of two
        # workers' time went to sleeping while the other wrote). A process lock once it forks.
        self.write_lock: Any = write_lock if write_lock is not None else threading.Lock()
        self.summary = AdvanceSummary(at=at)
        self.runs: dict[int, _Run | None] = {}
        self.dialect = app.engine.dialect.name
        self.sqlite = self.dialect == "sqlite"
        self.insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self.key = key if key is not None else self._signing_key()
        settings = app.settings
        self.config = RendererConfig(
            str(settings.templates_dir), settings.postal_address, settings.public_url, self.key
        )
        self.renderer: Renderer | None = None
        self.at_text = _sqlite_time(at)
        self._copy_table = False

    def _signing_key(self) -> bytes:
        with self.app.sessions() as session, session.begin():
            if self.dialect == "sqlite":
                # signing_key may read then insert; a transaction that first reads cannot
                # upgrade to a write while another process writes (SQLite answers "locked"
                # at once), so take the write lock first with a write that changes nothing.
                session.execute(
                    update(CampaignRun).where(text("1 = 0")).values(status=CampaignRun.status)
                )
            return signing_key(session, self.app.settings)

    # ---------------------------------------------------------------- the loop

    def run(self) -> AdvanceSummary:
        """The whole advance: batches here, or, when the first batch is full and workers are
        allowed, the rest in forked processes taking batches in turn from one cursor."""
        started = monotonic.perf_counter()
        with self._connect() as conn:
            batches = self._batches(conn)
            for index, rows in enumerate(batches):
                self._write(conn, self._plan(conn, rows))
                if index == 0 and self._fork_worthwhile(rows):
                    batches.close()
                    self._fork()
                    break
            self._complete_runs(conn)
        self.summary.seconds = round(monotonic.perf_counter() - started, 3)
        return self.summary

    def _fork_worthwhile(self, first: list[_Row]) -> bool:
        return self.workers > 1 and self.limit is None and len(first) == self.batch_size

    def run_worker(self) -> AdvanceSummary:
        """A forked worker: batches from the shared cursor until none is left."""
        with self._connect() as conn:
            for rows in self._batches(conn):
                self._write(conn, self._plan(conn, rows))
        return self.summary

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """The advance's connection. SQLite: checkpoint the WAL every 10,000 pages instead of
        1,000 meanwhile (a batch of 2,000 emails writes about 1,000: the default copied index
        pages back to the database after every commit; 2-6 µs per message at 200k rows)."""
        with self.app.engine.connect() as conn:
            if not self.sqlite:
                yield conn
                return
            with conn.begin():
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=10000")
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")

    def _fork(self) -> None:
        """Render-heavy work scales with processes (the GIL keeps threads on one core): fork
        ``workers`` processes, each with its own connections, taking batches in turn from the
        shared cursor; they write concurrently (on SQLite one at a time, ``write_lock``)."""
        global _fork_state
        self.cursor.share()
        self.write_lock = multiprocessing.get_context("fork").Lock()
        _fork_state = self
        # A frozen GC keeps the children from touching, and so copying, shared pages.
        gc.freeze()
        try:
            with multiprocessing.get_context("fork").Pool(self.workers) as pool:
                parts = pool.map(_advance_worker, range(self.workers))
        finally:
            gc.unfreeze()
            _fork_state = None
        for part in parts:
            self.summary.merge(part)
        self.summary.processes = self.workers

    def _batches(self, conn: Connection) -> Generator[list[_Row], None, None]:
        """Batches of due rows from the cursor (shared with the other workers, if any)."""
        seen = 0
        while self.limit is None or seen < self.limit:
            size = self.batch_size
            if self.limit is not None:
                size = min(size, self.limit - seen)
            skip = [run_id for run_id, run in self.runs.items() if run is None]
            sql = _due_sql(self.dialect, skip, size)
            at: Any = self.at_text if self.sqlite else self.at
            with self.cursor.lock:
                after = self.cursor.position(self.sqlite)
                with conn.begin():
                    raw = conn.exec_driver_sql(sql, (at, *after)).fetchall()
                if raw:
                    self.cursor.move_to(raw[-1][4], raw[-1][0])
            if not raw:
                return
            seen += len(raw)
            yield [_row(r, self.sqlite) for r in raw]
            if self.deadline is not None and monotonic.monotonic() >= self.deadline:
                self.summary.stopped_early = True
                return

    # ---------------------------------------------------------------- runs

    def _run(self, conn: Connection, run_id: int) -> _Run | None:
        if run_id in self.runs:
            return self.runs[run_id]
        row = conn.execute(
            select(
                CampaignRun.campaign,
                CampaignRun.definition_source,
                Program.name,
                Program.timezone,
                Program.region,
                Program.sms_opt_out_notice,
            )
            .join(Program, Program.id == CampaignRun.program_id)
            .where(CampaignRun.id == run_id)
        ).one()
        try:
            loaded = parse_definition(row.definition_source, f"run {run_id} ({row.campaign})")
        except EngineError as exc:
            # The stored text no longer validates (the schema changed since launch): leave the
            # run alone and say so rather than guess what it meant.
            self.summary.errors.append(f"run {run_id}: its stored definition is invalid: {exc}")
            self.runs[run_id] = None
            return None
        definition = loaded.definition
        first_sms = next((i for i, s in enumerate(definition.steps) if s.channel == "sms"), None)
        salts = {
            i: variant_salt(definition.name, s.id)
            for i, s in enumerate(definition.steps)
            if s.variants
        }
        run = _Run(
            run_id,
            row.campaign,
            definition,
            row.name,
            row.timezone,
            row.region,
            first_sms,
            salts,
            row.sms_opt_out_notice,
        )
        self.runs[run_id] = run
        return run

    # ---------------------------------------------------------------- planning

    def _plan(self, conn: Connection, rows: list[_Row]) -> _Work:
        self.summary.enrollments += len(rows)
        with conn.begin():
            runs = {run_id: self._run(conn, run_id) for run_id in {r.run_id for r in rows}}
            rows = [r for r in rows if runs[r.run_id] is not None]
            facts = self._facts(conn, rows, runs)
        moves: list[tuple[_Row, Outcome]] = []
        for row in rows:
            run = runs[row.run_id]
            assert run is not None
            outcome = plan_enrollment(
                run.steps,
                enrolled_at=row.enrolled_at,
                next_step_index=row.next_step_index,
                next_action_at=row.next_action_at,
                facts=facts[row.id],
                at=self.at,
                zones=_zones(row, run),
                deadline=_deadline_of(row, run),
            )
            moves.append((row, outcome))
        return self._build(moves, runs)

    def _facts(
        self, conn: Connection, rows: list[_Row], runs: Mapping[int, _Run | None]
    ) -> dict[int, Facts]:
        ids = [r.id for r in rows]
        used: set[str] = set()
        channels: set[str] = set()
        for run in runs.values():
            if run is not None:
                channels |= run.definition.channels
                for step in run.steps:
                    used.update(step.condition)

        def enrollment_ids(query: Any) -> set[int]:
            return set(conn.scalars(query).all()) if ids else set()

        converted = (
            enrollment_ids(
                select(Conversion.enrollment_id).where(Conversion.enrollment_id.in_(ids))
            )
            if "not_converted" in used
            else set()
        )
        reached = (
            enrollment_ids(
                select(CallTask.enrollment_id).where(
                    CallTask.enrollment_id.in_(ids), CallTask.reached_at.is_not(None)
                )
            )
            if "not_reached_by_phone" in used
            else set()
        )
        opened = (
            enrollment_ids(
                select(OutboxMessage.enrollment_id).where(
                    OutboxMessage.enrollment_id.in_(ids), OutboxMessage.opened_at.is_not(None)
                )
            )
            if "email_not_opened" in used
            else set()
        )
        clicked = (
            enrollment_ids(
                select(OutboxMessage.enrollment_id).where(
                    OutboxMessage.enrollment_id.in_(ids), OutboxMessage.clicked_at.is_not(None)
                )
            )
            if "email_not_clicked" in used
            else set()
        )
        replied = (
            enrollment_ids(
                select(Enrollment.id).where(
                    Enrollment.id.in_(ids),
                    exists(
                        select(1).where(
                            MessageEvent.participant_id == Enrollment.participant_id,
                            MessageEvent.event == "reply",
                            MessageEvent.occurred_at >= Enrollment.enrolled_at,
                        )
                    ),
                )
            )
            if "no_reply" in used
            else set()
        )
        closed = self._closed_channels(conn, rows, channels)
        messages = self._messages(conn, rows)
        gone = self._not_standing(conn, rows, runs)
        return {
            r.id: Facts(
                converted=r.id in converted,
                reached_by_phone=r.id in reached,
                email_opened=r.id in opened,
                email_clicked=r.id in clicked,
                replied=r.id in replied,
                closed=closed.get(r.id, {}),
                messages=messages.get(r.id, {}),
                not_standing=gone.get(r.id),
            )
            for r in rows
        }

    def _messages(self, conn: Connection, rows: list[_Row]) -> dict[int, dict[int, MessageState]]:
        """enrollment id -> step index -> its message, for the enrollments past their first
        step (spacing: see the module docstring). A queued message past its deadline will not
        go, so it holds nothing back."""
        ids = [r.id for r in rows if r.next_step_index > 0]
        if not ids:
            return {}
        result: dict[int, dict[int, MessageState]] = {}
        for enrollment_id, index, status, sent_at, not_before, expires_at in conn.execute(
            select(
                OutboxMessage.enrollment_id,
                OutboxMessage.step_index,
                OutboxMessage.status,
                OutboxMessage.sent_at,
                OutboxMessage.not_before,
                OutboxMessage.expires_at,
            ).where(text(f"outbox_messages.enrollment_id IN ({_int_list(ids)})"))
        ):
            pending = status in PENDING and (expires_at is None or expires_at > self.at)
            result.setdefault(enrollment_id, {})[index] = MessageState(pending, sent_at, not_before)
        return result

    def _not_standing(
        self, conn: Connection, rows: list[_Row], runs: Mapping[int, _Run | None]
    ) -> dict[int, str]:
        """enrollment id -> exit reason, for members who no longer match their campaign's
        standing conditions (engine/definitions/standing.py)."""
        result: dict[int, str] = {}
        by_run: dict[int, list[_Row]] = {}
        for r in rows:
            by_run.setdefault(r.run_id, []).append(r)
        for run_id, members in by_run.items():
            run = runs.get(run_id)
            if run is None:
                continue
            gone = not_standing(
                conn,
                run.definition,
                (m.participant_id for m in members),
                at=self.at,
                tz=run.program_zone,
            )
            if gone:
                reason = standing_reason(run.definition)
                result.update((m.id, reason) for m in members if m.participant_id in gone)
        return result

    def _closed_channels(
        self, conn: Connection, rows: list[_Row], channels: set[str]
    ) -> dict[int, dict[str, str]]:
        """enrollment id -> {channel: gate reason} for the channels that cannot be used now
        (engine.policy.gate with the current consents and suppressions)."""
        if not rows or not channels:
            return {}
        # Literal id lists (integers read from the database): binding thousands of
        # parameters through the expanding IN of the ORM cost more than the query itself.
        consents: dict[tuple[int, str], ConsentStatus] = {
            (pid, channel): "opted_in" if status == "opted_in" else "opted_out"
            for pid, channel, status in conn.exec_driver_sql(
                "SELECT participant_id, channel, status FROM participant_consents "
                f"WHERE participant_id IN ({_int_list(r.participant_id for r in rows)})"
            )
        }
        # A program's consent default fills only a consent the member did not state.
        for key in defaulted(conn, {r.participant_id for r in rows}, channels):
            consents.setdefault(key, "opted_in")
        hashes: dict[int, tuple[str | None, str | None]] = {
            r.id: (
                _email_hash(r.email) if r.email else None,
                _phone_hash(r.phone) if r.phone else None,
            )
            for r in rows
        }
        wanted = {h for pair in hashes.values() for h in pair if h}
        suppressed: dict[str, set[str]] = {}
        if wanted:
            # sha256 hex digests computed here: safe as literals.
            digests = ", ".join(f"'{h}'" for h in sorted(wanted) if _HEX64.fullmatch(h))
            for channel, suppressed_hash in conn.exec_driver_sql(
                f"SELECT channel, address_hash FROM suppressions WHERE address_hash IN ({digests})"
            ):
                suppressed.setdefault(suppressed_hash, set()).add(channel)
        result: dict[int, dict[str, str]] = {}
        for r in rows:
            email_digest, phone_digest = hashes[r.id]
            closed: dict[str, str] = {}
            for channel in channels:
                is_email = channel == "email"
                digest = email_digest if is_email else phone_digest
                decision = gate(
                    channel,
                    address=r.email if is_email else r.phone,
                    consent=consents.get((r.participant_id, channel)),
                    suppressed_channels=suppressed.get(digest, set()) if digest else set(),
                    invalid_address=False,
                )
                if not decision.allowed and decision.reason is not None:
                    closed[channel] = decision.reason
            if closed:
                result[r.id] = closed
        return result

    def _build(self, moves: list[tuple[_Row, Outcome]], runs: Mapping[int, _Run | None]) -> _Work:
        at = self.at
        messages: list[list[Any]] = []
        call_tasks: list[dict[str, Any]] = []
        if self.renderer is None:
            self.renderer = self.config.build()
        renderer = self.renderer
        wanted = sum(1 for _, o in moves for a in o.actions)
        uids = message_uids(wanted)
        # (run, step index) -> [members rendered, render errors]
        shares: defaultdict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
        for row, outcome in moves:
            if not outcome.actions:
                continue
            run = runs[row.run_id]
            assert run is not None
            participant: ParticipantData | None = None
            for action in outcome.actions:
                step = run.steps[action.step_index]
                if step.channel == "call":
                    call_tasks.append(
                        {
                            "kind": "campaign",
                            "run_id": row.run_id,
                            "enrollment_id": row.id,
                            "participant_id": row.participant_id,
                            "campaign": run.campaign,
                            "step_id": step.id,
                            "step_index": action.step_index,
                            "script": step.script,
                            "team": step.team,
                            "status": "closed" if action.expired else "open",
                            "close_reason": EXPIRED if action.expired else None,
                            "due_at": action.due,
                            "expires_at": action.expires_at,
                            "attempts": 0,
                            "max_attempts": step.max_attempts,
                            "created_at": at,
                            "updated_at": at,
                        }
                    )
                    continue
                variant: str | None = None
                if step.variants:
                    chosen = pick_variant(
                        step.variants, bucket(row.sample_key, run.salts[action.step_index])
                    )
                    variant, template = chosen.name, chosen.template
                else:
                    assert step.template is not None
                    template = step.template
                address = row.email if step.channel == "email" else row.phone
                status, reason, content, error = QUEUED, None, "{}", None
                if action.expired:
                    status, reason = SKIPPED, EXPIRED
                elif not address:
                    status, reason = SKIPPED, "no_address"
                else:
                    if participant is None:
                        participant = _participant(row)
                    rendered, error = render_item(
                        renderer,
                        RenderItem(
                            step.channel,
                            template,
                            row.locale,
                            participant,
                            row.participant_id,
                            run.program_name,
                            run.campaign,
                            run.definition.description,
                            step.id,
                            action.step_index == run.first_sms,
                            run.sms_opt_out_notice,
                            step.sms_max_segments,
                        ),
                    )
                    shares[(row.run_id, action.step_index)][0] += 1
                    if rendered is None:
                        status, reason = SKIPPED, refusal_of(error)
                        if reason == "render_error":
                            shares[(row.run_id, action.step_index)][1] += 1
                    else:
                        content = rendered
                # In OUTBOX_COLUMNS order.
                messages.append(
                    [
                        uids[len(messages)],
                        row.run_id,
                        row.id,
                        row.participant_id,
                        run.campaign,
                        step.id,
                        action.step_index,
                        variant,
                        step.channel,
                        template,
                        row.locale,
                        address,
                        content,
                        status,
                        reason,
                        action.due,
                        0,
                        error,
                        at,
                        at,
                        action.expires_at,
                    ]
                )
        work = _Work(moves, messages, call_tasks)
        return self._hold_back(work, shares, runs)

    def _hold_back(
        self,
        work: _Work,
        shares: Mapping[tuple[int, int], list[int]],
        runs: Mapping[int, _Run | None],
    ) -> _Work:
        """Pause a run when too many of one step's members in this batch failed to render
        (a broken template or a field it needs missing for many: fixing it and resuming must
        not find the audience already spent), and leave that run's enrollments of the batch
        where they are. A few render errors are the members' data: skipped with the reason."""
        for (run_id, index), (rendered, errors) in shares.items():
            if errors < RENDER_ERROR_MIN or errors <= rendered * RENDER_ERROR_SHARE:
                continue
            if run_id in work.pauses:
                continue
            run = runs[run_id]
            step = run.steps[index].id if run is not None else str(index)
            work.pauses[run_id] = (
                f"paused by the sequencer: {errors} of {rendered} members of step {step} "
                f"could not be rendered (first: {self._first_error(work, run_id)}); fix the "
                "template or the data, then resume"
            )
        if not work.pauses:
            return work
        held = set(work.pauses)
        work.moves = [(row, o) for row, o in work.moves if row.run_id not in held]
        work.messages = [m for m in work.messages if m[1] not in held]
        work.call_tasks = [t for t in work.call_tasks if t["run_id"] not in held]
        return work

    @staticmethod
    def _first_error(work: _Work, run_id: int) -> str:
        for message in work.messages:
            if message[1] == run_id and message[14] == "render_error":
                return str(message[17])[:300]
        return "?"

    # ---------------------------------------------------------------- writing

    def _write(self, conn: Connection, work: _Work) -> None:
        if work.pauses:
            self._pause(conn, work.pauses)
        if not work.moves:
            return
        with self.write_lock if self.sqlite else nullcontext(), conn.begin():
            moved = self._move(conn, work.moves)
            messages = [m for m in work.messages if m[2] in moved]
            tasks = [t for t in work.call_tasks if t["enrollment_id"] in moved]
            if messages:
                self._insert_messages(conn, messages)
            if tasks:
                conn.execute(
                    self.insert(CallTask).on_conflict_do_nothing(
                        index_elements=["enrollment_id", "step_id"]
                    ),
                    tasks,
                )
            exited = [row.id for row, o in work.moves if o.state == "exited" and row.id in moved]
            if exited:
                # Tasks of an exited enrollment are served to nobody (engine/calls/tasks.py):
                # closed with the reason, they do not hold its run open unseen.
                conn.execute(
                    update(CallTask)
                    .where(CallTask.enrollment_id.in_(exited), CallTask.status == "open")
                    .values(status="closed", close_reason="enrollment exited", updated_at=self.at)
                )
        self._count(work, moved, messages, tasks)

    def _pause(self, conn: Connection, pauses: Mapping[int, str]) -> None:
        with self.write_lock if self.sqlite else nullcontext(), conn.begin():
            for run_id, reason in pauses.items():
                paused = conn.execute(
                    update(CampaignRun)
                    .where(CampaignRun.id == run_id, CampaignRun.status == "active")
                    .values(status="paused", status_reason=reason, status_changed_at=self.at)
                ).rowcount
                if paused:
                    log.warning("run %s %s", run_id, reason, extra={"run_id": run_id})
                    self.summary.runs_paused[run_id] = reason
        # This process's later batches of the run are left alone (the due scan skips paused
        # runs too, for every worker).
        for run_id in pauses:
            self.runs[run_id] = None

    def _insert_messages(self, conn: Connection, messages: list[list[Any]]) -> None:
        """Insert outbox rows, ON CONFLICT (enrollment_id, step_id) DO NOTHING.

        The hot path of a large step, so below the ORM: SQLite gets one executemany of plain
        tuples (datetimes in the text form SQLAlchemy stores); PostgreSQL gets COPY (see
        below). Content arrives as JSON text and is stored as is (jsonb on PostgreSQL).
        """
        if self.dialect != "postgresql":
            for message in messages:
                message[15] = _sqlite_time(message[15])
                message[18] = message[19] = self.at_text
                message[20] = _sqlite_time(message[20])
            marks = ", ".join("?" * len(OUTBOX_COLUMNS))
            before = largest_outbox_id(conn)
            inserted = conn.exec_driver_sql(
                f"INSERT INTO outbox_messages ({_COLUMN_LIST}) VALUES ({marks}) "
                "ON CONFLICT (enrollment_id, step_id) DO NOTHING",
                [tuple(m) for m in messages],
            ).rowcount
            # No insert trigger on SQLite (migration 0007): the tallies are counted here, from
            # the batch when all of it went in, else from the rows the table took.
            if inserted == len(messages):
                tally_counted(conn, Counter(map(_tally_key, messages)))
            else:
                tally_inserted(conn, before)
            return
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor:
            # COPY straight into the outbox: this batch's enrollments were just moved by this
            # transaction, which holds their rows, so no other advance can have made their
            # messages. Should one exist anyway, the unique key refuses the COPY and the batch
            # goes again through the staging table with ON CONFLICT DO NOTHING (the route
            # every batch took before: about 5 µs more of the server's ~49 per message).
            cursor.execute("SAVEPOINT seq_copy")
            try:
                self._copy(cursor, "outbox_messages", messages)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT seq_copy")
                self._insert_staged(cursor, messages)
            cursor.execute("RELEASE SAVEPOINT seq_copy")

    @staticmethod
    def _copy(cursor: Any, table: str, messages: list[list[Any]]) -> None:
        with cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN") as copy:
            for message in messages:
                copy.write_row(message)

    def _insert_staged(self, cursor: Any, messages: list[list[Any]]) -> None:
        """PostgreSQL: COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO
        NOTHING (COPY itself cannot skip conflicts)."""
        if not self._copy_table:
            cursor.execute(_COPY_TABLE)
            self._copy_table = True
        self._copy(cursor, "seq_outbox", messages)
        cursor.execute(
            f"INSERT INTO outbox_messages ({_COLUMN_LIST}) "
            f"SELECT {_STAGED_COLUMNS} FROM seq_outbox "
            "ON CONFLICT (enrollment_id, step_id) DO NOTHING"
        )
        cursor.execute("TRUNCATE seq_outbox")

    def _move(self, conn: Connection, moves: list[tuple[_Row, Outcome]]) -> set[int]:
        """Move the batch's enrollments, each only if it is still where we
        read it (same step index, still active); returns the ids actually moved."""
        values = [
            (
                row.id,
                row.next_step_index,
                outcome.next_step_index,
                outcome.next_action_at,
                outcome.state,
                outcome.exit_reason,
            )
            for row, outcome in moves
        ]
        if self.dialect == "postgresql":
            statement = text(
                """
                UPDATE enrollments AS e
                SET next_step_index = v.new_index, next_action_at = v.next_at,
                    state = v.state, exit_reason = v.reason
                FROM unnest(CAST(:ids AS bigint[]), CAST(:old AS integer[]),
                            CAST(:new AS integer[]), CAST(:next_at AS timestamptz[]),
                            CAST(:states AS text[]), CAST(:reasons AS text[]))
                     AS v(id, old_index, new_index, next_at, state, reason)
                WHERE e.id = v.id AND e.next_step_index = v.old_index AND e.state = 'active'
                RETURNING e.id
                """
            )
            columns = list(zip(*values, strict=True))
            params: dict[str, Any] = dict(
                zip(
                    ("ids", "old", "new", "next_at", "states", "reasons"),
                    map(list, columns),
                    strict=True,
                )
            )
            return set(conn.scalars(statement, params).all())
        # SQLite plans UPDATE ... FROM <batch> as a scan of the table per batch row; an
        # IN-list on the primary key is a seek per id. Enrollments of one launch move alike
        # (same step, same due time), so grouping by outcome leaves a handful of statements.
        # The unary + keeps SQLite off the (state, ...) index, which it would otherwise walk
        # through every active enrollment for each statement (21 µs a message at 1M, not 5).
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, old, new, next_at, state, reason in values:
            groups.setdefault((old, new, next_at, state, reason), []).append(i)
        moved: set[int] = set()
        for (old, new, next_at, state, reason), ids in groups.items():
            for start in range(0, len(ids), 5000):
                moved.update(
                    row[0]
                    for row in conn.exec_driver_sql(
                        "UPDATE enrollments SET next_step_index = ?, next_action_at = ?, "
                        "state = ?, exit_reason = ? WHERE id IN "
                        f"({_int_list(ids[start : start + 5000])}) AND +next_step_index = ? "
                        "AND +state = 'active' RETURNING id",
                        (new, _sqlite_time(next_at), state, reason, old),
                    )
                )
        return moved

    def _count(
        self,
        work: _Work,
        moved: set[int],
        messages: list[list[Any]],
        tasks: list[dict[str, Any]],
    ) -> None:
        s = self.summary
        queued = Counter(m[8] for m in messages if m[13] == QUEUED)  # channel, status
        skipped = Counter(m[14] for m in messages if m[13] == SKIPPED)  # status_reason
        for key, n in queued.items():
            s.messages[key] = s.messages.get(key, 0) + n
        for key, n in skipped.items():
            s.messages_skipped[key] = s.messages_skipped.get(key, 0) + n
        s.call_tasks += len(tasks)
        for row, outcome in work.moves:
            if row.id not in moved:
                s.lost += 1
                continue
            for _, condition in outcome.skipped:
                s.steps_skipped[condition] = s.steps_skipped.get(condition, 0) + 1
            if outcome.state == "exited":
                s.exited += 1
                s.exited_consent_not_stated += CONSENT_NOT_STATED in (outcome.exit_reason or "")
            elif outcome.state == "completed":
                s.completed += 1
            else:
                s.waiting += 1

    def _complete_runs(self, conn: Connection) -> None:
        """Active runs with no work left (engine/run_work.py: no treatment enrollment with
        steps left, no pending message, no open call task) are completed, and their holdout
        enrollments with them (a completed run has no open enrollment). A run whose last step
        was a call stays active while its tasks, callbacks and recycled attempts are open."""
        with conn.begin():
            done = conn.scalars(
                update(CampaignRun)
                .where(CampaignRun.status == "active", has_no_work(self.dialect))
                .values(
                    status="completed",
                    status_reason="every enrollment finished its sequence, every message "
                    "went and every call task is closed",
                    status_changed_at=self.at,
                )
                .returning(CampaignRun.id)
            ).all()
            if done:
                conn.execute(
                    update(Enrollment)
                    .where(Enrollment.run_id.in_(done), Enrollment.state == "active")
                    .values(state="completed", next_action_at=None)
                )
        self.summary.runs_completed.extend(sorted(done))


def _sqlite_time(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy stores it in SQLite (naive UTC text), for raw inserts."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# The parent's _Advance, inherited by the forked workers of _Advance._fork.
_fork_state: _Advance | None = None


def _advance_worker(index: int) -> AdvanceSummary:
    parent = _fork_state
    assert parent is not None, "advance worker started outside _Advance._fork"
    app = parent.app
    # The parent's pooled connections are not ours to use (or to close): start afresh.
    app.engine.dispose(close=False)
    worker = _Advance(
        app,
        parent.at,
        parent.batch_size,
        None,
        1,
        parent.deadline,
        cursor=parent.cursor,
        write_lock=parent.write_lock,
        key=parent.key,
    )
    worker.runs = dict(parent.runs)
    summary = worker.run_worker()
    app.engine.dispose(close=True)
    return summary


def _participant(row: _Row) -> ParticipantData:
    return ParticipantData(
        external_id=row.external_id,
        first_name=row.first_name,
        last_name=row.last_name,
        email=row.email,
        phone=row.phone,
        status=row.status,
        locale=row.locale,
        tier=row.tier,
        points_balance=row.points_balance,
        points_expiring=row.points_expiring,
        points_expire_at=row.points_expire_at,
        renewal_date=row.renewal_date,
        attributes=Attributes(row.attributes or {}),
    )


def _deadline_of(row: _Row, run: _Run) -> DeadlineOf:
    def deadline(step: Step, due: datetime) -> datetime | None:
        dates = {"renewal_date": row.renewal_date, "points_expire_at": row.points_expire_at}
        zones = _zones(row, run)() if step.expires_before is not None else ()
        return message_deadline(due, step, dates, zones)

    return deadline


def _zones(row: _Row, run: _Run) -> Callable[[], Sequence[str]]:
    def resolve() -> Sequence[str]:
        return candidate_zones(
            participant_zone=row.timezone,
            phone=row.phone,
            program_zone=run.program_zone,
            region=run.program_region,
        ).zones

    return resolve


# =========================================================================== entry point


def advance(
    app: App,
    *,
    at: datetime | None = None,
    batch_size: int = 1000,
    limit: int | None = None,
    workers: int | None = None,
    deadline: float | None = None,
) -> AdvanceSummary:
    """Move every due treatment enrollment of every active run through its steps (see the
    module docstring). Idempotent and safe beside other advances: the database decides.

    ``at`` defaults to ``app.clock.now()``; ``limit`` caps the enrollments looked at;
    ``workers`` is the number of render processes for large batches (default: the
    ``render_workers`` setting, whose 0 means one per core, at most 4; 0 or 1 here renders in
    this process); ``deadline`` (a ``time.monotonic()`` value) stops between batches, leaving
    the rest due for the next advance.
    """
    when = ensure_utc(at) if at is not None else ensure_utc(app.clock.now())
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be 0 or more, not {limit}")
    if workers is None:
        workers = app.settings.render_workers or default_workers()
    check_templates(app, at=when)
    with app.engine.begin() as conn:
        close_expired_call_tasks(conn, when)
    return _Advance(app, when, batch_size, limit, workers, deadline).run()


__all__ = [
    "CONDITIONS",
    "REFUSALS",
    "Action",
    "AdvanceSummary",
    "ContentRefused",
    "Facts",
    "MessageState",
    "Outcome",
    "RenderItem",
    "RendererConfig",
    "advance",
    "check_content",
    "exit_reason",
    "plan_enrollment",
    "refusal_of",
    "render_item",
    "step_due",
]

"""What users of the program rely on, checked after every simulated day.

Each check states an invariant as a coordinator, an agent or a manager would, and returns the
violations it finds. The checks read the database directly (read-only SELECTs) for what no
command shows, and compare what the commands show (call lists, reports) with it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import (
    CallerLogEntry,
    CallTask,
    CampaignRun,
    Consent,
    Conversion,
    Enrollment,
    OutboxMessage,
    Participant,
)

# A step's message may go out at most this long after the step came due (the default
# `expires_after` of an email/SMS step): later, it is no longer the message that was meant.
MESSAGE_DEADLINE = timedelta(days=3)
# The compliance window for calls and texts, whatever a campaign says.
LEGAL_START, LEGAL_END = time(8), time(21)
# The global frequency cap (CAMPAIGN_FREQUENCY_CAP_MAX per CAMPAIGN_FREQUENCY_CAP_PER).
GLOBAL_CAP = (4, timedelta(days=7))
# How far ahead `calls list` looks; a task due later is scheduled, not hidden.
LIST_LOOKAHEAD = timedelta(days=1)
PENDING = ("queued", "sending", "unknown")
SENT = ("sent", "delivered", "bounced")
PROGRAM_ZONE = "America/New_York"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Violation:
    day: int
    invariant: str
    detail: str


@dataclass
class Expectations:
    """What the scenario has told the engine, that the engine must not contradict."""

    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # TRACKED fields + consents
    closed_at: dict[str, datetime] = field(default_factory=dict)  # member -> file that closed it
    paused: dict[int, list[tuple[datetime, datetime | None]]] = field(default_factory=dict)
    departed_agents: set[str] = field(default_factory=set)
    do_not_call: dict[str, datetime] = field(default_factory=dict)  # member -> when they said so
    # member -> (from when, renewal date) as the member files said it over time
    renewal_dates: dict[str, list[tuple[datetime, date]]] = field(default_factory=dict)


@dataclass
class DayView:
    """What the commands showed at the end of a day."""

    day: int
    now: datetime
    listed: dict[str, list[dict[str, Any]]]  # agent -> `calls list --agent A --json`
    reports: dict[str, dict[str, Any]]  # campaign -> `report campaign NAME --json`


# --------------------------------------------------------------------------- helpers


def _duration(text: str | int | None) -> timedelta:
    if text is None:
        return timedelta(0)
    match = re.fullmatch(r"(\d+)\s*([dhm])", str(text).strip())
    if match is None:
        raise ValueError(f"duration {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def step_due_times(
    steps: Sequence[Mapping[str, Any]], enrolled_at: datetime, zone: str
) -> list[datetime]:
    """When each step of a sequence comes due, as the campaign file says it to a user: ``delay``
    after the previous step (the first: after enrolment), at ``at`` local time when given (the
    next day when that time has already passed)."""
    tz = ZoneInfo(zone)
    due: list[datetime] = []
    base = enrolled_at
    for step in steps:
        moment = base + _duration(step.get("delay"))
        if step.get("at"):
            local_day = moment.astimezone(tz).date()
            candidate = datetime.combine(local_day, _hhmm(step["at"]), tzinfo=tz)
            if candidate < base:
                candidate = datetime.combine(
                    local_day + timedelta(days=1), _hhmm(step["at"]), tzinfo=tz
                )
            moment = candidate
        due.append(moment)
        base = moment
    return due


def _in_window(at: datetime, zone: str, window: Mapping[str, Any] | None) -> str | None:
    """None when ``at`` is inside the legal window and the campaign's, else why not."""
    local = at.astimezone(ZoneInfo(zone))
    wall = local.time()
    if not LEGAL_START <= wall < LEGAL_END:
        return f"{local:%a %H:%M} local ({zone}) is outside 08:00-21:00"
    if window:
        start, end = _hhmm(window.get("start", "00:00")), _hhmm(window.get("end", "23:59"))
        if not start <= wall < end:
            return (
                f"{local:%a %H:%M} local ({zone}) is outside the campaign's "
                f"{start:%H:%M}-{end:%H:%M}"
            )
        days = window.get("days")
        if days and DAY_NAMES[local.weekday()] not in days:
            return f"{local:%a} ({zone}) is not one of the campaign's days {days}"
    return None


@cache
def _parsed(source: str) -> dict[str, Any]:
    """A stored definition's text, parsed once: it never changes after launch, and the checks
    only read it, while re-parsing every run's YAML twice a day grew with the runs."""
    return yaml.safe_load(source)


class Definitions:
    """Each run's definition as launched (the text stored with the run)."""

    def __init__(self, session: Session) -> None:
        self.runs: dict[int, dict[str, Any]] = {
            run.id: _parsed(run.definition_source) for run in session.scalars(select(CampaignRun))
        }

    def steps(self, run_id: int) -> list[dict[str, Any]]:
        return list(self.runs[run_id].get("steps", []))

    def get(self, run_id: int, key: str) -> Any:
        return self.runs[run_id].get(key)


# --------------------------------------------------------------------------- the checks


def check_day(
    engine: Engine, view: DayView, expected: Expectations, fires: Mapping[str, Sequence[datetime]]
) -> list[Violation]:
    with Session(engine) as session:
        found: list[Violation] = []
        definitions = Definitions(session)
        # Three checks read the same sent messages: one query, in the same session, serves them.
        sent = _sent_messages(session)
        for check in (
            lambda: open_tasks_are_on_a_list(session, view, expected),
            lambda: members_hold_what_the_files_said(session, view, expected),
            lambda: messages_go_before_their_deadline(sent, view, definitions, expected),
            lambda: contacts_stay_inside_their_windows(session, sent, view, definitions, expected),
            lambda: frequency_caps_hold(sent, view, definitions),
            lambda: one_conversion_per_event(session, view),
            lambda: reports_add_up(session, view),
            lambda: runs_complete_only_without_work(session, view),
            lambda: one_run_per_fire(session, view, fires),
            lambda: paused_runs_send_nothing(session, view, expected),
            lambda: outages_fail_no_message(session, view),
            lambda: closed_accounts_are_left_alone(session, view, expected),
            lambda: do_not_call_is_honoured(session, view, expected),
            lambda: cancelled_runs_leave_nothing_open(session, view),
            lambda: renewal_reminders_before_the_date(session, view, expected),
        ):
            found.extend(check())
        return found


def open_tasks_are_on_a_list(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """Every open call task of a run that was not cancelled is on the call list of an agent
    who still works here, or has a stated reason (its run is paused, an agent holds it, it is
    due later)."""
    listed = {
        row["task_id"]
        for agent, rows in view.listed.items()
        if agent not in expected.departed_agents
        for row in rows
    }
    query = (
        select(CallTask, CampaignRun.status, Enrollment.state)
        .outerjoin(CampaignRun, CampaignRun.id == CallTask.run_id)
        .outerjoin(Enrollment, Enrollment.id == CallTask.enrollment_id)
        .where(CallTask.status.in_(("open", "claimed")))
    )
    for task, run_status, enrollment_state in session.execute(query):
        if run_status == "cancelled" or task.id in listed:
            continue
        if run_status == "paused":
            continue  # `runs list` says so: a coordinator paused it
        if task.status == "claimed" and task.claimed_until and task.claimed_until > view.now:
            continue  # an agent is on the call
        if task.due_at > view.now + LIST_LOOKAHEAD:
            continue  # a callback or a retry booked for later
        yield Violation(
            view.day,
            "open call task on no agent's list",
            f"task {task.id} ({task.kind}, {task.campaign}/{task.step_id}, team {task.team}, "
            f"agent {task.assigned_agent}) of run {task.run_id} [{run_status}], enrollment "
            f"{enrollment_state}, due {task.due_at:%Y-%m-%d %H:%M}Z",
        )


def members_hold_what_the_files_said(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """No member field changed that a member file did not carry."""
    people = {p.external_id: p for p in session.scalars(select(Participant))}
    consents: dict[tuple[int, str], str] = {
        (c.participant_id, c.channel): c.status for c in session.scalars(select(Consent))
    }
    for external_id, fields in expected.members.items():
        person = people.get(external_id)
        if person is None:
            yield Violation(view.day, "member field changed", f"{external_id} is missing")
            continue
        changed = []
        for name, value in fields.items():
            if name.startswith("consent_"):
                have = consents.get((person.id, name.removeprefix("consent_")))
                want = "opted_in" if value == "yes" else "opted_out"
                if have is not None and have != want:
                    changed.append(f"{name}: {want} -> {have}")
                continue
            have = getattr(person, name)
            if have != value:
                changed.append(f"{name}: {value!r} -> {have!r}")
        if changed:
            yield Violation(
                view.day, "member field changed", f"{external_id}: {', '.join(changed)}"
            )


Sent = list[tuple[OutboxMessage, Participant, Enrollment]]


def _sent_messages(session: Session) -> Sent:
    query = (
        select(OutboxMessage, Participant, Enrollment)
        .join(Participant, Participant.id == OutboxMessage.participant_id)
        .join(Enrollment, Enrollment.id == OutboxMessage.enrollment_id)
        .where(OutboxMessage.sent_at.is_not(None), OutboxMessage.status.in_(SENT))
        .order_by(OutboxMessage.sent_at, OutboxMessage.id)
    )
    return [(m, p, e) for m, p, e in session.execute(query)]


def zone_of(person: Participant, expected: Expectations) -> str:
    """The member's zone as the member file gave it (not as the engine may have mangled it)."""
    given = expected.members.get(person.external_id, {}).get("timezone")
    return str(given or person.timezone or PROGRAM_ZONE)


def messages_go_before_their_deadline(
    sent: Sent, view: DayView, definitions: Definitions, expected: Expectations
) -> Iterable[Violation]:
    """No message goes out more than three days after its step came due."""
    for message, person, enrollment in sent:
        steps = definitions.steps(message.run_id)
        due = step_due_times(steps, enrollment.enrolled_at, zone_of(person, expected))
        deadline = due[message.step_index] + MESSAGE_DEADLINE
        if message.sent_at is not None and message.sent_at > deadline:
            late = message.sent_at - due[message.step_index]
            yield Violation(
                view.day,
                "message sent after its deadline",
                f"message {message.id} ({message.campaign}/{message.step_id} to "
                f"{person.external_id}, run {message.run_id}) due "
                f"{due[message.step_index]:%Y-%m-%d %H:%M%z}, "
                f"sent {message.sent_at:%Y-%m-%d %H:%M}Z: {late.days} days late",
            )


def contacts_stay_inside_their_windows(
    session: Session, sent: Sent, view: DayView, definitions: Definitions, expected: Expectations
) -> Iterable[Violation]:
    """Nothing is sent and no call is made outside the recipient's 08:00-21:00, nor outside
    the campaign's own send / call window."""
    for message, person, _ in sent:
        window = definitions.get(message.run_id, "send_window")
        zone = zone_of(person, expected)
        assert message.sent_at is not None
        why = _in_window(message.sent_at, zone, window)
        if why:
            yield Violation(
                view.day,
                "contact outside the window",
                f"{message.channel} {message.id} ({message.campaign}/{message.step_id}) to "
                f"{person.external_id}: {why}",
            )
    calls = select(CallerLogEntry, Participant).join(
        Participant, Participant.id == CallerLogEntry.participant_id
    )
    for entry, person in session.execute(calls):
        at = entry.claimed_at or entry.logged_at
        window = (
            definitions.get(entry.run_id, "call_window")
            if entry.run_id is not None and entry.task_kind == "campaign"
            else None
        )
        why = _in_window(at, zone_of(person, expected), window)
        if why:
            yield Violation(
                view.day,
                "contact outside the window",
                f"call on task {entry.task_id} ({entry.campaign}) to {person.external_id} by "
                f"{entry.agent}: {why}",
            )


def _over_cap(times: Sequence[datetime], most: int, per: timedelta) -> datetime | None:
    for i in range(most, len(times)):
        if times[i] - times[i - most] < per:
            return times[i]
    return None


def frequency_caps_hold(sent: Sent, view: DayView, definitions: Definitions) -> Iterable[Violation]:
    """No member gets more messages than a campaign's frequency cap, nor than the program's."""
    by_campaign: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    overall: dict[str, list[datetime]] = defaultdict(list)
    caps: dict[str, tuple[int, timedelta]] = {}
    for message, person, _ in sent:
        assert message.sent_at is not None
        by_campaign[(person.external_id, message.campaign)].append(message.sent_at)
        overall[person.external_id].append(message.sent_at)
        cap = definitions.get(message.run_id, "frequency_cap")
        if cap:
            caps[message.campaign] = (int(cap["max"]), _duration(cap["per"]))
    for (member, campaign), times in by_campaign.items():
        if campaign in caps and (at := _over_cap(times, *caps[campaign])):
            most, per = caps[campaign]
            yield Violation(
                view.day,
                "frequency cap exceeded",
                f"{member}: more than {most} {campaign} messages within {per.days}d "
                f"({at:%Y-%m-%d})",
            )
    for member, times in overall.items():
        if at := _over_cap(times, *GLOBAL_CAP):
            yield Violation(
                view.day,
                "frequency cap exceeded",
                f"{member}: more than {GLOBAL_CAP[0]} messages in {GLOBAL_CAP[1].days}d "
                f"across campaigns ({at:%Y-%m-%d})",
            )


def one_conversion_per_event(session: Session, view: DayView) -> Iterable[Violation]:
    """An event converts a campaign's member once; a member converts once per enrolment."""
    per_event = (
        select(Conversion.event_id, Conversion.campaign, func.count())
        .where(Conversion.event_id.is_not(None))
        .group_by(Conversion.event_id, Conversion.campaign)
        .having(func.count() > 1)
    )
    for event_id, campaign, n in session.execute(per_event):
        yield Violation(
            view.day, "one conversion per event", f"event {event_id}: {n} conversions in {campaign}"
        )
    per_enrollment = (
        select(Conversion.enrollment_id, func.count())
        .group_by(Conversion.enrollment_id)
        .having(func.count() > 1)
    )
    for enrollment_id, n in session.execute(per_enrollment):
        yield Violation(
            view.day, "one conversion per event", f"enrollment {enrollment_id} converted {n} times"
        )


def reports_add_up(session: Session, view: DayView) -> Iterable[Violation]:
    """Every campaign report adds up, and agrees with what happened."""
    for campaign, report in view.reports.items():
        problems: list[str] = []

        def equal(label: str, left: Any, right: Any, problems: list[str] = problems) -> None:
            if left != right:
                problems.append(f"{label}: {left} != {right}")

        runs = report["runs"]
        enrolled = session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.run_id.in_(runs))
        )
        equal(
            "enrolled = treatment + holdout",
            report["enrolled"],
            report["treatment"] + report["holdout"],
        )
        equal("enrolled = enrolments in the database", report["enrolled"], enrolled)
        made = Counter(
            session.execute(
                select(OutboxMessage.step_id).where(OutboxMessage.run_id.in_(runs))
            ).scalars()
        )
        for step in report["message_steps"]:
            s = step["step"]
            equal(
                f"{s}: created = skipped + eligible",
                step["created"],
                step["skipped"] + step["eligible"],
            )
            equal(
                f"{s}: eligible = pending + unknown + failed + sent",
                step["eligible"],
                step["pending"] + step["unknown"] + step["failed"] + step["sent"],
            )
            equal(
                f"{s}: sent = delivered + bounced + awaiting",
                step["sent"],
                step["delivered"] + step["bounced"] + step["awaiting"],
            )
            equal(f"{s}: created = messages in the outbox", step["created"], made.get(s, 0))
        for step in report["call_steps"]:
            s = step["step"]
            equal(
                f"{s}: tasks = open + claimed + closed",
                step["tasks"],
                step["open"] + step["claimed"] + step["closed"],
            )
            tasks = session.scalar(
                select(func.count())
                .select_from(CallTask)
                .where(CallTask.run_id.in_(runs), CallTask.step_id == s)
            )
            equal(f"{s}: tasks = call tasks in the database", step["tasks"], tasks)
        groups = report["groups"]
        converted = sum(g["converted"] for g in groups.values())
        equal("conversions = treatment + holdout", report["conversions"], converted)
        equal(
            "conversions = sum by source", report["conversions"], sum(report["by_source"].values())
        )
        conversions = session.scalar(
            select(func.count()).select_from(Conversion).where(Conversion.run_id.in_(runs))
        )
        equal("conversions = conversions in the database", report["conversions"], conversions)
        touched = sum(t["conversions"] for t in report["last_touch"])
        treatment = groups.get("treatment", {}).get("converted", 0)
        if touched > treatment:
            problems.append(f"last-touch rows {touched} > treatment conversions {treatment}")
        problems.extend(_verdict_problems(report))
        if problems:
            yield Violation(
                view.day, "report does not add up", f"{campaign}: {'; '.join(problems)}"
            )


def runs_complete_only_without_work(session: Session, view: DayView) -> Iterable[Violation]:
    """A run is `completed` only when no call task is open, no message pending and no
    member has steps left."""
    for run in session.scalars(select(CampaignRun).where(CampaignRun.status == "completed")):
        tasks = session.scalar(
            select(func.count())
            .select_from(CallTask)
            .where(CallTask.run_id == run.id, CallTask.status.in_(("open", "claimed")))
        )
        pending = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.run_id == run.id, OutboxMessage.status.in_(PENDING))
        )
        active = session.scalar(
            select(func.count())
            .select_from(Enrollment)
            .where(
                Enrollment.run_id == run.id,
                Enrollment.group == "treatment",
                Enrollment.state == "active",
            )
        )
        if tasks or pending or active:
            yield Violation(
                view.day,
                "run completed with work left",
                f"run {run.id} ({run.campaign}): {tasks} open call tasks, {pending} pending "
                f"messages, {active} members with steps left",
            )


def one_run_per_fire(
    session: Session, view: DayView, fires: Mapping[str, Sequence[datetime]]
) -> Iterable[Violation]:
    """Each recurring campaign has exactly one run per weekly fire (a wall time that happens
    twice on a fall-back night is one fire)."""
    for campaign, times in fires.items():
        launched = Counter(
            (run.launched_at.astimezone(times[0].tzinfo) if times else run.launched_at).date()
            for run in session.scalars(select(CampaignRun).where(CampaignRun.campaign == campaign))
        )
        wanted = Counter(t.date() for t in times)
        for day in sorted(set(launched) | set(wanted)):
            if launched[day] != wanted[day]:
                yield Violation(
                    view.day,
                    "one run per fire",
                    f"{campaign}: {launched[day]} runs launched on {day} for {wanted[day]} fire(s)",
                )


def paused_runs_send_nothing(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """Nothing is sent for a run while it is paused."""
    for run_id, spans in expected.paused.items():
        for start, end in spans:
            query = select(OutboxMessage).where(
                OutboxMessage.run_id == run_id,
                OutboxMessage.sent_at > start,
                OutboxMessage.sent_at < (end or view.now),
            )
            for message in session.scalars(query):
                yield Violation(
                    view.day,
                    "sent while paused",
                    f"message {message.id} of paused run {run_id} sent "
                    f"{message.sent_at:%Y-%m-%d %H:%M}Z",
                )


OUTAGE = "provider outage cost messages or runs"


def outages_fail_no_message(session: Session, view: DayView) -> Iterable[Violation]:
    """A provider outage waits for the provider: it never fails a member's message nor spends
    its tries (the file sink never fails, so in this program only the outage could)."""
    spent = select(OutboxMessage).where(
        or_(OutboxMessage.status == "failed", OutboxMessage.attempts > 1)
    )
    for message in session.scalars(spent):
        yield Violation(
            view.day,
            OUTAGE,
            f"message {message.id} ({message.campaign}/{message.step_id}) {message.status} "
            f"after {message.attempts} tries: {(message.last_error or '')[:80]}",
        )


def closed_accounts_are_left_alone(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """Once the member file closes an account, nobody is messaged or called about it."""
    for external_id, closed in expected.closed_at.items():
        person = session.scalar(select(Participant).where(Participant.external_id == external_id))
        if person is None:
            continue
        messages = select(OutboxMessage).where(
            OutboxMessage.participant_id == person.id, OutboxMessage.sent_at > closed
        )
        for message in session.scalars(messages):
            yield Violation(
                view.day,
                "closed account contacted",
                f"{external_id}: {message.campaign}/{message.step_id} sent "
                f"{message.sent_at:%Y-%m-%d}",
            )
        calls = select(CallerLogEntry).where(
            CallerLogEntry.participant_id == person.id, CallerLogEntry.logged_at > closed
        )
        for entry in session.scalars(calls):
            yield Violation(
                view.day,
                "closed account contacted",
                f"{external_id}: called by {entry.agent} on {entry.logged_at:%Y-%m-%d}",
            )


def describe(violations: Sequence[Violation], *, per_invariant: int = 4) -> str:
    """A readable summary: each broken invariant, the first day it broke, a few examples."""
    if not violations:
        return "no violations"
    by_invariant: dict[str, list[Violation]] = defaultdict(list)
    for v in violations:
        by_invariant[v.invariant].append(v)
    lines = [f"{len(by_invariant)} invariant(s) broken:"]
    for invariant, found in sorted(by_invariant.items(), key=lambda kv: kv[1][0].day):
        days = sorted({v.day for v in found})
        lines.append(f"- {invariant}: first on day {days[0]}, on {len(days)} day(s) in all")
        # The first example of each day it broke on, then more of the first days.
        firsts = {v.day: v for v in reversed(found)}
        examples = [firsts[d] for d in days][:per_invariant]
        examples += [v for v in found if v not in examples][: per_invariant - len(examples)]
        for v in sorted(examples, key=lambda v: v.day):
            lines.append(f"    day {v.day}: {v.detail}")
    return "\n".join(lines)


def do_not_call_is_honoured(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """A member who told an agent not to call again is never called again."""
    for external_id, said_at in expected.do_not_call.items():
        calls = (
            select(CallerLogEntry)
            .join(Participant, Participant.id == CallerLogEntry.participant_id)
            .where(Participant.external_id == external_id, CallerLogEntry.logged_at > said_at)
        )
        for entry in session.scalars(calls):
            yield Violation(
                view.day,
                "do-not-call ignored",
                f"{external_id} called by {entry.agent} on {entry.logged_at:%Y-%m-%d %H:%M}Z",
            )


def renewal_reminders_before_the_date(
    session: Session, view: DayView, expected: Expectations
) -> Iterable[Violation]:
    """A renewal reminder never reaches a member after the renewal date it names (the date
    the member file gave when they were enrolled)."""
    query = (
        select(OutboxMessage, Participant, Enrollment)
        .join(Participant, Participant.id == OutboxMessage.participant_id)
        .join(Enrollment, Enrollment.id == OutboxMessage.enrollment_id)
        .where(OutboxMessage.campaign == "renewal-due", OutboxMessage.sent_at.is_not(None))
    )
    for message, person, enrollment in session.execute(query):
        history = expected.renewal_dates.get(person.external_id, [])
        named = [d for since, d in history if since <= enrollment.enrolled_at]
        if not named or message.sent_at is None:
            continue
        local_day = message.sent_at.astimezone(ZoneInfo(zone_of(person, expected))).date()
        if local_day > named[-1]:
            yield Violation(
                view.day,
                "message sent after its deadline",
                f"renewal reminder {message.id} ({message.step_id}) to {person.external_id} "
                f"sent {local_day} for the renewal date {named[-1]}",
            )


def cancelled_runs_leave_nothing_open(session: Session, view: DayView) -> Iterable[Violation]:
    """Cancelling a run closes its call tasks and skips its pending messages."""
    for run in session.scalars(select(CampaignRun).where(CampaignRun.status == "cancelled")):
        tasks = session.scalar(
            select(func.count())
            .select_from(CallTask)
            .where(CallTask.run_id == run.id, CallTask.status.in_(("open", "claimed")))
        )
        pending = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.run_id == run.id, OutboxMessage.status.in_(PENDING))
        )
        if tasks or pending:
            yield Violation(
                view.day,
                "cancelled run left work open",
                f"run {run.id} ({run.campaign}): {tasks} open call tasks, "
                f"{pending} pending messages",
            )


def _verdict_problems(report: dict[str, Any]) -> list[str]:
    """The manager reads the verdict, not the interval: the words must say what the interval
    says, and a verdict that cannot tell must say how small a lift the holdout could see."""
    said, lift = report["verdict"], report["lift"]
    ci = lift["difference_ci"]
    if ci is None or lift["a"]["count"] == lift["b"]["count"] == 0:
        expected = "no data"
    elif ci["low"] > 0:
        expected = "better"
    elif ci["high"] < 0:
        expected = "worse"
    elif said["outcome"] == "no detectable difference":
        expected = "no detectable difference"  # the estimate rounds to 0.0 pp
    else:
        expected = "not conclusive"
    problems = []
    if said["outcome"] != expected:
        problems.append(f"verdict {said['outcome']!r} but the interval says {expected!r}")
    undecided = said["outcome"] in ("not conclusive", "no detectable difference")
    if undecided and lift["detectable_difference"] is not None and "detect" not in said["text"]:
        problems.append(f"an undecided verdict without the detectable lift: {said['text']!r}")
    return problems

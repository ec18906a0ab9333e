"""An afternoon of the program's life worked through an external dialer (#20's dialer import).

The dialer rings each agent with the task `calls next` serves them, and the agents enter the
outcomes in the dialer, not with `calls log`: ana converts her member, ben books a callback
with himself for tomorrow 10:30, cleo leaves a voicemail. The dialer also dialled the next task
of ana's list and left its row half-filled (a CALLBACK without its time). Half an hour later
the coordinator imports the dialer's results file (`calls import-results`). The next morning
they look at what it did (the rejects file, the call lists, `report agents`), import the same
file again by mistake, and verify the caller log.

``dialer_session`` is the afternoon's action, ``dialer_next_morning`` the morning's re-import
and checks; they read the database (read-only) only for what no command shows.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from scenario_invariants import Violation
from scenario_world import PROGRAM_ZONE, local, write_csv
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import CallerLogEntry, CallTask

DIALER_COLUMNS = (
    "call_id",
    "called_at",
    "task_id",
    "agent",
    "disposition",
    "verified",
    "duration_seconds",
    "field.action",
    "field.callback_at",
    "field.who",
    "field.message_left",
)
# What each agent's dialled call came to. cleo's is retried after a day (its recycle delay),
# not by this evening's shift: the next morning shows the retry itself.
OUTCOMES = {"ana": "CONVERTED", "ben": "CALLBACK", "cleo": "VOICEMAIL"}
# The half-filled row: whose list its task came from, and the field it lacks (the reason).
BAD_AGENT, BAD_FIELD = "ana", "callback_at"
APPLIED_ONCE = "a dialer's results are applied once, and only its good rows"
SHOWN = "an imported call shows where the agent and the manager look"


@dataclass(frozen=True)
class DialledCall:
    """One row of the dialer's file, with the task as it stood when it was dialled."""

    line: int
    agent: str
    task_id: int
    external_id: str
    disposition: str
    called_at: datetime
    attempts: int  # the task's attempts before this call
    campaign: str = ""
    callback_at: datetime | None = None  # None on a CALLBACK row: the half-filled one


@dataclass
class DialerDay:
    """What the coordinator imported on the dialer's day, and what they saw then."""

    path: Path
    good: list[DialledCall]
    bad: DialledCall
    utc_day: date  # `report agents --period` of the calls
    before: dict[str, Counter[str]]  # agent -> calls by disposition, before the import
    summary: dict[str, Any] = field(default_factory=dict)  # the first import's --json


def dialer_session(program: Any, day: int, actions: Mapping[str, str]) -> DialerDay | None:
    """The afternoon's calls through the dialer (from now) and the coordinator's import of
    its results file half an hour later."""
    driver = program.driver
    started = driver.now
    called_at = started + timedelta(minutes=5)
    tomorrow = started.astimezone(PROGRAM_ZONE).date() + timedelta(days=1)
    served: list[tuple[str, dict[str, Any]]] = []
    for agent in OUTCOMES:
        sheet = driver.json("calls", "next", "--agent", agent)
        if not sheet:
            program.refused(day, f"dialer: nothing served to {agent}")
            return None
        program.served(agent, sheet["claim"]["task_id"], sheet["sheet"])
        program.calls_made += 1
        served.append((agent, sheet))
    members = {sheet["sheet"]["external_id"] for _, sheet in served}
    spare = [
        row
        for row in driver.json("calls", "list", "--agent", BAD_AGENT)
        if row["external_id"] not in members
    ]
    if not spare:
        program.refused(day, f"dialer: no other task on {BAD_AGENT}'s list to dial")
        return None
    # The half-filled row sits between good ones: its line number is what names it.
    calls = []
    for line, (agent, sheet) in enumerate(served, start=2):
        task_id = sheet["claim"]["task_id"]
        disposition = OUTCOMES[agent]
        calls.append(
            DialledCall(
                line=line if line < 4 else line + 1,
                agent=agent,
                task_id=task_id,
                external_id=sheet["sheet"]["external_id"],
                disposition=disposition,
                called_at=called_at,
                attempts=_attempts(program, task_id),
                campaign=sheet["sheet"].get("campaign") or "",
                callback_at=(
                    local(tomorrow, 10, 30).astimezone(UTC) if disposition == "CALLBACK" else None
                ),
            )
        )
    bad = DialledCall(
        line=4,
        agent=BAD_AGENT,
        task_id=spare[0]["task_id"],
        external_id=spare[0]["external_id"],
        disposition="CALLBACK",
        called_at=called_at + timedelta(minutes=3),
        attempts=_attempts(program, spare[0]["task_id"]),
    )
    rows = sorted([*calls, bad], key=lambda call: call.line)
    path = write_csv(
        program.folder / f"dialer-{day:02d}.csv",
        DIALER_COLUMNS,
        [_row(call, actions, day) for call in rows],
    )
    driver.at(started + timedelta(minutes=30))
    utc_day = called_at.date()
    before = dispositions_by_agent(driver, utc_day)
    summary = driver.json("calls", "import-results", str(path))
    return DialerDay(path, calls, bad, utc_day, before, summary)


def _attempts(program: Any, task_id: int) -> int:
    with Session(program.db()) as session:
        return int(session.scalar(select(CallTask.attempts).where(CallTask.id == task_id)) or 0)


def _row(call: DialledCall, actions: Mapping[str, str], day: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "call_id": f"dialer-{day:02d}-{call.line}",
        "called_at": call.called_at.isoformat(),
        "task_id": call.task_id,
        "agent": call.agent,
        "disposition": call.disposition,
        "duration_seconds": 95,
    }
    if call.disposition == "CONVERTED":
        row |= {"verified": "yes", "field.action": actions.get(call.campaign, "purchased")}
    elif call.disposition == "VOICEMAIL":
        row["field.message_left"] = "yes"
    elif call.disposition == "CALLBACK":
        row |= {"verified": "yes", "field.who": "agent"}
        if call.callback_at is not None:
            row["field.callback_at"] = call.callback_at.isoformat()
    return row


def dispositions_by_agent(driver: Any, utc_day: date) -> dict[str, Counter[str]]:
    """`report agents` for the day of the calls: each agent's calls by disposition."""
    shown = driver.json("report", "agents", "--period", utc_day.isoformat())
    return {row["agent"]: Counter(row["by_disposition"]) for row in shown["agents"]}


# --------------------------------------------------------------------------- the next morning


def dialer_next_morning(program: Any, day: int, today: date, dialed: DialerDay) -> None:
    """What the coordinator, the agents and their manager see the morning after the import;
    then the same file imported again, which must change nothing; then the caller log."""
    driver = program.driver
    driver.at(local(today, 8, 15))
    agents = [a for a in OUTCOMES if a not in program.expected.departed_agents]
    lists = {agent: driver.json("calls", "list", "--agent", agent) for agent in agents}
    shown = dispositions_by_agent(driver, dialed.utc_day)
    with Session(program.db()) as session:
        found = [
            *first_import(day, dialed),
            *rejects_name_the_bad_row(day, dialed),
            *outcomes_are_listed(session, day, dialed, lists),
            *calls_are_reported(day, dialed, shown),
        ]
    again = driver.json("calls", "import-results", str(dialed.path))
    after = dispositions_by_agent(driver, dialed.utc_day)
    with Session(program.db()) as session:
        found += [
            *second_import(day, dialed, again, shown, after),
            *caller_log_holds_each_call_once(session, day, dialed),
        ]
    verified = driver.invoke("calls", "verify-log", "--json")
    if verified.exit_code != 0:
        found.append(
            Violation(day, "the caller log verifies", f"after the dialer: {verified.output}")
        )
    program.record(found)


def first_import(day: int, dialed: DialerDay) -> Iterable[Violation]:
    got = dialed.summary
    wanted = {
        "read": len(dialed.good) + 1,
        "applied": len(dialed.good),
        "unchanged": 0,
        "rejected": 1,
        "by_disposition": dict(sorted(Counter(c.disposition for c in dialed.good).items())),
    }
    if {key: got.get(key) for key in wanted} != wanted:
        yield Violation(day, APPLIED_ONCE, f"first import said {got}, expected {wanted}")


def rejects_name_the_bad_row(day: int, dialed: DialerDay) -> Iterable[Violation]:
    """The rejects file holds the half-filled row alone, with its line and its reason."""
    named = dialed.summary.get("rejects_path")
    if not named or not Path(named).exists():
        yield Violation(day, APPLIED_ONCE, f"no rejects file: {named!r}")
        return
    with Path(named).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    said = [(r["line"], r["task_id"], r["reasons"]) for r in rows]
    bad = dialed.bad
    if (
        len(rows) != 1
        or rows[0]["line"] != str(bad.line)
        or rows[0]["task_id"] != str(bad.task_id)
        or BAD_FIELD not in rows[0]["reasons"]
    ):
        yield Violation(
            day,
            APPLIED_ONCE,
            f"rejects file {said}, expected line {bad.line} (task {bad.task_id}) for lacking "
            f"{BAD_FIELD}",
        )


def outcomes_are_listed(
    session: Session, day: int, dialed: DialerDay, lists: Mapping[str, list[dict[str, Any]]]
) -> Iterable[Violation]:
    """The agents' lists say what each call came to: the converted task is gone, the callback
    is on the agent's list alone at the time booked, the voicemail's task is back at its next
    attempt (or closed as unreachable, its attempts used up); the half-filled row's task is
    where it was (no attempt, no callback)."""
    listed = {(agent, row["task_id"]): row for agent, rows in lists.items() for row in rows}

    def on(task_id: int) -> dict[str, dict[str, Any]]:
        return {agent: row for (agent, t), row in listed.items() if t == task_id}

    for call in [*dialed.good, dialed.bad]:
        task = session.get(CallTask, call.task_id, populate_existing=True)
        assert task is not None
        problem = None
        if call.disposition == "CONVERTED":
            if task.status != "closed" or on(call.task_id):
                problem = f"status {task.status}, listed for {sorted(on(call.task_id))}"
        elif call.disposition == "VOICEMAIL":
            attempts = {row["attempts"] for row in on(call.task_id).values()}
            reason = task.close_reason or ""
            if (task.status == "closed" and not reason.startswith("unreachable")) or (
                task.status != "closed"
                and (attempts != {call.attempts + 1} or task.due_at <= call.called_at)
            ):
                problem = (
                    f"listed at attempts {attempts} (expected {call.attempts + 1}), due "
                    f"{task.due_at:%Y-%m-%d %H:%M}Z, status {task.status} {reason}".strip()
                )
        elif call.callback_at is not None:  # the callback booked
            callbacks = [
                (agent, row)
                for (agent, _), row in listed.items()
                if row["external_id"] == call.external_id and row["kind"] == "callback"
            ]
            due = {
                (agent, row["assigned_agent"], datetime.fromisoformat(row["due_at"]))
                for agent, row in callbacks
            }
            if task.status != "closed" or due != {(call.agent, call.agent, call.callback_at)}:
                problem = f"task {task.status}; callbacks listed (agent, assigned, due) {due}"
        else:  # the half-filled row: nothing of it
            logged = session.scalars(
                select(CallerLogEntry.source).where(
                    CallerLogEntry.task_id == call.task_id,
                    CallerLogEntry.logged_at >= call.called_at,
                )
            ).all()
            if "dialer" in logged or task.attempts != call.attempts + len(logged):
                problem = (
                    f"attempts {task.attempts} (before {call.attempts}), logged since by {logged}"
                )
        if problem:
            yield Violation(
                day,
                SHOWN,
                f"line {call.line}: {call.disposition} of task {call.task_id} "
                f"({call.agent}): {problem}",
            )


def calls_are_reported(
    day: int, dialed: DialerDay, shown: Mapping[str, Counter[str]]
) -> Iterable[Violation]:
    """`report agents` for the day counts each applied call once, under its disposition, and
    nothing of the rejected row."""
    expected = {agent: Counter(c) for agent, c in dialed.before.items()}
    for call in dialed.good:
        expected.setdefault(call.agent, Counter())[call.disposition] += 1
    if _plain(shown) != _plain(expected):
        yield Violation(
            day,
            SHOWN,
            f"report agents --period {dialed.utc_day}: {_plain(shown)}, expected "
            f"{_plain(expected)}",
        )


def second_import(
    day: int,
    dialed: DialerDay,
    again: Mapping[str, Any],
    before: Mapping[str, Counter[str]],
    after: Mapping[str, Counter[str]],
) -> Iterable[Violation]:
    said = {key: again.get(key) for key in ("read", "applied", "unchanged", "rejected")}
    wanted = {
        "read": len(dialed.good) + 1,
        "applied": 0,
        "unchanged": len(dialed.good),
        "rejected": 1,
    }
    if said != wanted:
        yield Violation(day, APPLIED_ONCE, f"the same file again: {said}, expected {wanted}")
    if _plain(after) != _plain(before):
        yield Violation(
            day,
            APPLIED_ONCE,
            f"report agents after the same file again: {_plain(after)}, before {_plain(before)}",
        )


def caller_log_holds_each_call_once(
    session: Session, day: int, dialed: DialerDay
) -> Iterable[Violation]:
    """One caller log entry per good row, by its agent with its disposition; none for the
    rejected row."""
    entries = Counter(
        tuple(row)
        for row in session.execute(
            select(CallerLogEntry.task_id, CallerLogEntry.agent, CallerLogEntry.disposition).where(
                CallerLogEntry.source == "dialer",
                CallerLogEntry.task_id.in_([c.task_id for c in [*dialed.good, dialed.bad]]),
            )
        )
    )
    wanted = Counter((c.task_id, c.agent, c.disposition) for c in dialed.good)
    if entries != wanted:
        yield Violation(
            day, APPLIED_ONCE, f"caller log entries from the dialer {dict(entries)}, "
            f"expected {dict(wanted)}"
        )  # fmt: skip


def _plain(counts: Mapping[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {agent: dict(sorted(c.items())) for agent, c in sorted(counts.items()) if c}

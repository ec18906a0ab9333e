"""The life of a program: 90 simulated days driven through the CLI, on SQLite and PostgreSQL.

A loyalty program with members in New York, Chicago, Los Angeles and Sydney (en/es/zh) gets a
member file and an events file every morning (deltas, a weekly full file, a partial file with
only consent columns, one that closes an account, one with blank cells; events that arrive
late, out of order and twice), runs the four example campaigns (three weekly recurring, one
of them at 01:30 on Sundays so the fall-back night repeats its fire time; win-back launched
by hand, paused for five weeks and resumed), ticks three times a day (and at 01:45 on
Sundays, twice on the fall-back night), has three agents work their call lists (callbacks, an
escalation, a do-not-call, an evening shift for Sydney, a lunch break paused and resumed, forgotten
on Thursdays until the next call ends it; one afternoon through a dialer whose results file
the coordinator imports, with a bad row, and imports again by mistake the next morning:
tests/scenario/scenario_dialer.py), loses one agent on day 62 and
SendGrid for a day (59). The agents speak languages (the one Chinese speaker is the one who
leaves); complaints and escalations open cases that the coordinator resolves with root causes
(closing them on Mondays, reopening one); two report subscriptions (monthly for finance,
weekly for the team leads, the latter hit by the outage) are delivered by the ticks; once a
week an operator's scrape of the metrics is compared with the database
(tests/scenario/scenario_services.py). After each day it checks what users rely on
(tests/scenario/scenario_invariants.py) and at the end lists every invariant that broke, the
first day it broke and examples. Each violation is kept once, on the first day it showed.

Every step runs its command unconditionally (a step that switched itself off when a command
was not found hid the leaver's disabling once the CLI loaded its commands lazily); PLAN gives
the day of each event. SCENARIO_DAYS=N plays only the first N
days (for a quick look while fixing something; the full 90 days are the test).
"""

from __future__ import annotations

import json
import os
import time as wallclock
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scenario_dialer import DialerDay, dialer_next_morning, dialer_session
from scenario_invariants import (
    OUTAGE,
    DayView,
    Definitions,
    Expectations,
    Violation,
    check_day,
    describe,
)
from scenario_services import (
    COMPLAINT_CATEGORIES,
    LANGUAGES,
    RESOLVE_AFTER,
    ROOT_CAUSES,
    ROUTING_WAIT,
    ServedCall,
    Services,
    check_services,
    install_subscriptions,
)
from scenario_world import (
    CONSENTS,
    DAYS,
    FALL_BACK,
    MEMBER_COLUMNS,
    RECURRING,
    START,
    TRACKED,
    Driver,
    base_member,
    fire_times,
    install_campaigns,
    local,
    write_csv,
)
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from engine import app as engine_app
from engine.clock import FrozenClock
from engine.db.models import CallTask
from engine.db.session import make_engine
from engine.metrics.collector import scrape
from engine.settings import load_settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned

BASE_MEMBERS = 40
AGENTS = {
    "ana": ("renewals", "escalations", "loyalty"),
    "ben": ("loyalty", "retention", "onboarding"),
    "cleo": ("onboarding", "retention", "renewals"),
}
# The days (0 = the first Monday) of the one-off events of the program's life.
PLAN = {
    "pause winback": 2,
    "partial consent file": 20,
    "close an account": 30,
    "resume winback": 37,
    "blank cells file": 44,
    "sendgrid from": 58,
    "sendgrid outage": 59,
    "sendgrid until": 60,
    "agent leaves": 62,
    "events sent twice": 15,
    "cancel a renewal run": 40,
    "reopen a case": 50,
    "dialer results": 38,
}
CLOSED_MEMBER = "M006"
LEAVER = "cleo"
DISPOSITIONS = (
    "NO_ANSWER",
    "CALLBACK",
    "VOICEMAIL",
    "CONVERTED",
    "NOT_INTERESTED",
    "CALLBACK_ANYONE",
    "PROMISED",
    "BUSY",
)
ACTION = {
    "renewal-due": "renewed",
    "points-expiring": "redeemed",
    "activate-new": "activated",
    "winback-inactive": "purchased",
}
PROVIDER_ENV = (
    "SENDGRID_API_KEY",
    "CAMPAIGN_SENDGRID_HOST",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_MESSAGING_SERVICE_SID",
    "CAMPAIGN_SMS_FROM",
    "CAMPAIGN_TWILIO_BASE_URL",
)


@dataclass
class Program:
    """The scenario's state: the CRM the member files come from and the events to come."""

    folder: Path
    driver: Driver
    expected: Expectations = field(default_factory=Expectations)
    crm: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # arrival day -> rows
    violations: list[Violation] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    winback_run: int | None = None
    calls_made: int = 0
    # (agent, UTC date) -> seconds of break the agents took that day (`agents pause/resume`).
    breaks: dict[tuple[str, date], int] = field(default_factory=dict)
    sendgrid: FakeSendGrid | None = None
    services: Services = field(default_factory=Services)
    reader: Engine | None = None  # the scenario's own read-only look at the database
    dialer: DialerDay | None = None  # the dialer's results file the coordinator imported

    # -- the member file

    def import_members(
        self, day: int, rows: list[dict[str, Any]], columns: tuple[str, ...]
    ) -> None:
        if not rows:
            return
        path = write_csv(self.folder / f"members-{day:02d}.csv", columns, rows)
        result = self.driver.json("participants", "import", str(path))
        if result["rejected"]:
            self.refused(day, f"member file of day {day}: {result['rejected']} rows rejected")
        for row in rows:
            self.expect(row, columns)

    def expect(self, row: dict[str, Any], columns: tuple[str, ...]) -> None:
        """What a user expects the engine to hold after this row: every cell the file carried
        (a blank cell or an absent column carries nothing)."""
        held = self.expected.members.setdefault(row["external_id"], {})
        for column in columns:
            value = row.get(column)
            if (column not in TRACKED and column not in CONSENTS) or value in (None, ""):
                continue
            if column in ("points_balance", "points_expiring"):
                value = int(value)
            elif column in ("points_expire_at", "renewal_date") and isinstance(value, str):
                value = date.fromisoformat(value)
            held[column] = value
            if column == "renewal_date":
                history = self.expected.renewal_dates.setdefault(row["external_id"], [])
                if not history or history[-1][1] != value:
                    history.append((self.driver.now, value))
        if row.get("status") == "closed":
            self.expected.closed_at.setdefault(row["external_id"], self.driver.now)

    # -- events

    def event(self, arrives: int, member: str, kind: str, occurred: datetime, **extra: Any) -> None:
        self.events.setdefault(arrives, []).append(
            {
                "external_id": member,
                "type": kind,
                "occurred_at": occurred.isoformat(),
                "reference": f"{member}-{kind}-{occurred:%Y%m%d%H%M}",
                **extra,
            }
        )

    def import_events(self, day: int) -> None:
        rows = list(self.events.get(day, []))
        if day == PLAN["events sent twice"]:
            rows += self.events.get(day - 1, [])  # yesterday's feed sent again
        if not rows:
            return
        rows.sort(key=lambda r: r["occurred_at"], reverse=True)  # feeds are not in order
        columns = ("external_id", "type", "occurred_at", "points", "amount", "reference")
        path = write_csv(self.folder / f"events-{day:02d}.csv", columns, rows)
        result = self.driver.json("events", "import", str(path))
        if result["rejected"]:
            self.refused(day, f"events of day {day}: {result['rejected']} rows rejected")

    # -- the service side

    def db(self) -> Engine:
        if self.reader is None:
            self.reader = create_engine(self.driver.database_url)
        return self.reader

    def served(self, agent: str, task_id: int, sheet: dict[str, Any]) -> None:
        """Note a task as `calls next` served it (its due time before anyone logs a call)."""
        with Session(self.db()) as session:
            task = session.scalars(select(CallTask).where(CallTask.id == task_id)).one()
            member = sheet["external_id"]
            self.services.served.append(
                ServedCall(
                    agent=agent,
                    external_id=member,
                    locale=sheet.get("locale"),
                    zone=str(self.crm.get(member, {}).get("timezone") or "America/New_York"),
                    task_id=task_id,
                    kind=task.kind,
                    run_id=task.run_id,
                    assigned_agent=task.assigned_agent,
                    due_at=task.due_at,
                    at=self.driver.now,
                )
            )

    # -- bookkeeping

    def refused(self, day: int, detail: str) -> None:
        self.violations.append(Violation(day, "a user action was refused", detail))

    def record(self, found: list[Violation]) -> None:
        """Keep each violation once, on the first day it shows."""
        for v in found:
            key = (v.invariant, v.detail)
            if key not in self.seen:
                self.seen.add(key)
                self.violations.append(v)


# --------------------------------------------------------------------------- the program's days


def plan_activity(program: Program) -> None:
    """Every member's activity over the 90 days, as events that arrive in the feeds."""
    for index in range(1, BASE_MEMBERS + 1):
        member = base_member(index)
        ext = member["external_id"]
        if index % 2 == 0 and member["renewal_date"] is not None:
            renewed = local(member["renewal_date"] - timedelta(days=4), 10, 15)
            day = (renewed.date() - START).days
            if 0 <= day < DAYS - 1:
                # Every third renewal reaches the feed two days late.
                late = 3 if index % 3 == 0 else 1
                program.event(day + late, ext, "renewal", renewed, amount="99.00")
        if 13 <= index <= 28 and index % 2 == 1 and member["points_expire_at"] is not None:
            redeemed = local(member["points_expire_at"] - timedelta(days=8), 12, 40)
            day = (redeemed.date() - START).days
            if 0 <= day < DAYS - 1:
                program.event(day + 1, ext, "redemption", redeemed, points="-1000")
    # Win-back: two come back while the run is live, one while it is paused, one after.
    program.event(4, "M002", "login", local(START + timedelta(days=3), 19, 5))
    program.event(11, "M004", "redemption", local(START + timedelta(days=8), 13, 0), points="-300")
    program.event(21, "M008", "login", local(START + timedelta(days=20), 9, 0))
    program.event(41, "M010", "login", local(START + timedelta(days=40), 18, 30))


def member_file(program: Program, day: int) -> None:
    """The morning's member file: new joiners and changes (renewed dates, redeemed points,
    upgrades); on Sundays the full file; on some days the odd files of PLAN."""
    today = START + timedelta(days=day)
    changed: dict[str, dict[str, Any]] = {}
    if day == 0:
        for index in range(1, BASE_MEMBERS + 1):
            program.crm[f"M{index:03d}"] = base_member(index)
        changed = dict(program.crm)
    if day % 3 == 1:  # a new member joins every third day
        index = BASE_MEMBERS + 1 + day // 3
        record = base_member(index, joined=today - timedelta(days=1))
        program.crm[record["external_id"]] = record
        changed[record["external_id"]] = record
    for row in program.events.get(day, []):  # yesterday's renewals and redemptions
        record = program.crm.get(row["external_id"])
        if record is None:
            continue
        if row["type"] == "renewal" and record["renewal_date"] is not None:
            record["renewal_date"] = record["renewal_date"] + timedelta(days=365)
            changed[record["external_id"]] = record
        if row["type"] == "redemption" and record["points_balance"] >= 1000:
            record["points_balance"] -= 1000
            record["points_expiring"] = 0
            changed[record["external_id"]] = record
    if day % 10 == 5:  # an upgrade now and then
        record = program.crm[f"M{day // 10 + 30:03d}"]
        record["tier"] = "Platinum"
        changed[record["external_id"]] = record
    if day == PLAN["close an account"]:
        program.crm[CLOSED_MEMBER]["status"] = "closed"
        changed[CLOSED_MEMBER] = program.crm[CLOSED_MEMBER]
    if today.weekday() == 6:
        changed = dict(program.crm)
    rows = [dict(r) for r in changed.values()]
    if day == PLAN["blank cells file"]:
        # An export that leaves the cells it does not know blank: they change nothing.
        rows = [dict(r) for r in program.crm.values()]
        for row in rows:
            if row["tier"] == "Gold":
                row["tier"] = ""
            row["phone"] = "" if row["external_id"] in ("M012", "M013") else row["phone"]
    program.import_members(day, rows, MEMBER_COLUMNS)
    if day == PLAN["partial consent file"]:
        # The preferences centre's file: three columns only, for a handful of members.
        partial = [
            {
                "external_id": f"M{i:03d}",
                "consent_sms": "no" if i == 10 else "yes",
                "consent_call": "yes",
            }
            for i in (3, 10, 14, 15, 22, 33)
        ]
        for row in partial:
            program.crm[row["external_id"]].update(row)
        program.import_members(day, partial, ("external_id", "consent_sms", "consent_call"))
        coordinator_previews_after_consent_file(program, day)


def coordinator_previews_after_consent_file(program: Program, day: int) -> None:
    """The coordinator looks at what the preferences centre changed: `preview` of the SMS
    step says first that it cannot reach M010 any more (said no), and nothing of the kind for
    M003 (said yes), whatever the audience says of them today."""
    for member, closed in (("M010", "sms is closed for M010: opted out"), ("M003", None)):
        result = program.driver.invoke("preview", "winback-inactive", "sms-1", member)
        if result.exit_code != 0:
            program.refused(day, f"preview sms-1 {member}: {result.output.strip()}")
            continue
        warnings = [line for line in result.output.splitlines() if line.startswith("NOT ")]
        said = [line for line in warnings if line.startswith("NOT REACHABLE NOW: ")]
        wanted = [] if closed is None else [closed]
        if [line.removeprefix("NOT REACHABLE NOW: ").split(",")[0] for line in said] != wanted:
            program.record(
                [Violation(day, "preview says whom a step cannot reach", f"{member}: {said}")]
            )


def work_calls(program: Program, day: int, agent: str, calls: int) -> None:
    """An agent claims the next callable task and documents the call, ``calls`` times."""
    driver = program.driver
    for _ in range(calls):
        served = driver.json("calls", "next", "--agent", agent)
        if not served:
            return
        task = served["claim"]["task_id"]
        member = served["sheet"]["external_id"]
        campaign = served["sheet"].get("campaign") or ""
        program.served(agent, task, served["sheet"])
        program.calls_made += 1
        n = program.calls_made
        code = DISPOSITIONS[n % len(DISPOSITIONS)]
        if n % 37 == 9:
            code = "ESCALATED"
        elif n == 14:
            code = "DO_NOT_CALL"
        elif n % 29 == 20:
            code = "COMPLAINT"
        args = ["calls", "log", str(task), "--no-input"]
        later = (driver.now + timedelta(days=1, hours=1)).isoformat()
        if code == "CALLBACK":
            args += [
                "--disposition",
                "CALLBACK",
                "--field",
                f"callback_at={later}",
                "--field",
                "who=agent",
            ]
        elif code == "CALLBACK_ANYONE":
            args += [
                "--disposition",
                "CALLBACK",
                "--field",
                f"callback_at={later}",
                "--field",
                "who=anyone",
            ]
        elif code == "CONVERTED":
            args += [
                "--disposition",
                code,
                "--field",
                f"action={ACTION.get(campaign, 'purchased')}",
            ]
        elif code == "NOT_INTERESTED":
            args += ["--disposition", code, "--field", "reason=too busy this month"]
        elif code == "PROMISED":
            args += ["--disposition", code, "--field", "action=renew"]
        elif code == "COMPLAINT":
            category = COMPLAINT_CATEGORIES[n % len(COMPLAINT_CATEGORIES)]
            args += [
                "--disposition",
                code,
                "--field",
                f"category={category}",
                "--field",
                f"summary={category} complaint on call {n}",
            ]
        elif code == "ESCALATED":
            args += [
                "--disposition",
                code,
                "--field",
                "team=escalations",
                "--field",
                "reason=billing dispute",
            ]
        else:
            args += ["--disposition", code]
        if code not in ("NO_ANSWER", "VOICEMAIL", "BUSY"):
            verify_the_member(program, day, agent, task, served)
            args += ["--verified", "yes"]
        result = driver.invoke(*args)
        if code == "DO_NOT_CALL" and result.exit_code == 0:
            program.expected.do_not_call.setdefault(member, driver.now)
        if code == "COMPLAINT" and result.exit_code == 0:
            program.services.complaints += 1
        if code == "ESCALATED" and result.exit_code == 0:
            program.services.escalations += 1
        if result.exit_code != 0:
            program.refused(
                day, f"{agent}: `calls log {task} --disposition {code}`: {result.output.strip()}"
            )


def verify_the_member(
    program: Program, day: int, agent: str, task: int, served: dict[str, Any]
) -> None:
    """The agent asks the verification questions before discussing the account: `calls next`
    showed only what a program shows before verification, `calls verify` records it and shows
    the whole account (#19)."""
    gate = served.get("gate") or {}
    account = served["sheet"].get("account") or {}
    leaked = [name for name in gate.get("hidden") or () if name in account]
    if gate.get("verified") is not False or leaked:
        program.violations.append(
            Violation(
                day,
                "an account is shown only after verification",
                f"task {task}: `calls next` showed verified={gate.get('verified')!r}, "
                f"gated fields {leaked}",
            )
        )
    result = program.driver.invoke("calls", "verify", str(task), "--agent", agent, "--json")
    if result.exit_code != 0:
        program.refused(day, f"{agent}: `calls verify {task}`: {result.output.strip()}")
        return
    after = json.loads(result.output)
    missing = sorted(set(account) - set(after["sheet"].get("account") or {}))
    if not after["gate"]["verified"] or missing or len(after["sheet"]["account"]) <= len(account):
        program.violations.append(
            Violation(
                day,
                "an account is shown only after verification",
                f"task {task}: after `calls verify` verified={after['gate']['verified']!r}, "
                f"{len(after['sheet']['account'])} account fields against {len(account)} before",
            )
        )


def work_cases(program: Program, day: int) -> None:
    """The coordinator's afternoon round of the cases: resolve, with a root cause, those that
    have had their follow-up calls (or waited long enough); close last week's resolved ones
    on Mondays; reopen one a member complains about again."""
    driver = program.driver
    today = START + timedelta(days=day)
    driver.at(local(today, 16, 30))
    for row in driver.json("cases", "list"):
        age = driver.now - datetime.fromisoformat(row["opened_at"])
        if age < RESOLVE_AFTER:
            continue
        shown = driver.json("cases", "show", str(row["id"]))
        calls = [h for h in shown["history"] if h["kind"] == "call"]
        if len(calls) < 2 and age < 3 * RESOLVE_AFTER:
            continue
        cause = ROOT_CAUSES[row["id"] % len(ROOT_CAUSES)]
        result = driver.invoke(
            "cases", "resolve", str(row["id"]), "--root-cause", cause,
            "--resolution", f"explained and put right ({cause})", "--by", "ana",
        )  # fmt: skip
        if result.exit_code != 0:
            program.refused(day, f"cases resolve {row['id']}: {result.output.strip()}")
    if today.weekday() == 0 or day == PLAN["reopen a case"]:
        done = driver.json("cases", "list", "--all")
        for row in done:
            if row["status"] == "resolved":
                driver.ok("cases", "close", str(row["id"]), "--by", "ana")
        if day == PLAN["reopen a case"]:
            closed = [row for row in done if row["status"] in ("resolved", "closed")]
            if not closed:
                program.refused(day, "no closed case to reopen")
                return
            driver.ok("cases", "reopen", str(closed[0]["id"]), "--by", "ana", "--reason",
                      "charged again")  # fmt: skip


def tick(program: Program, day: int, at: datetime, env: dict[str, str] | None = None) -> None:
    program.driver.at(at)
    if program.services.subscriptions_seen is None:
        program.services.subscriptions_seen = program.driver.now
    summary = program.driver.json("tick", env=env)
    for error in summary.get("definition_errors") or []:
        program.refused(day, f"tick: {error}")
    for launched in summary.get("launched") or []:
        if launched.get("error"):
            program.refused(
                day, f"tick could not launch {launched['campaign']}: {launched['error']}"
            )


def live_day(program: Program, day: int) -> None:
    driver = program.driver
    today = START + timedelta(days=day)
    env = sendgrid_env(program, day)
    if today.weekday() == 6:  # the night tick that fires points-expiring at 01:30
        tick(program, day, local(today, 1, 45), env)
        if today == FALL_BACK:  # 01:45 again, an hour later
            tick(program, day, local(today, 1, 45, fold=1), env)

    driver.at(local(today, 7))
    member_file(program, day)
    program.import_events(day)

    driver.at(local(today, 8))
    if day == 0:
        for login, teams in AGENTS.items():
            team_args = [arg for team in teams for arg in ("--team", team)]
            driver.ok(
                "agents",
                "add",
                login,
                "--name",
                login.title(),
                "--timezone",
                "America/New_York",
                "--daily-target",
                "6",
                *team_args,
                *[arg for language in LANGUAGES[login] for arg in ("--language", language)],
            )
        launched = driver.json("launch", "winback-inactive")
        program.winback_run = launched["run_id"]
        # The cron tick is switched on before Monday's 09:00 fire: the engine sees the
        # schedules before their first fire of the program (a schedule starts from the next
        # fire after it is first seen; earlier ones are skipped, never sent late).
        tick(program, day, local(today, 8, 5), env)
    if day == PLAN["pause winback"]:
        assert program.winback_run is not None
        result = driver.invoke("pause", str(program.winback_run), "--reason", "offer under review")
        if result.exit_code == 0:
            program.expected.paused[program.winback_run] = [(driver.now, None)]
        else:
            program.refused(day, f"pause win-back: {result.output.strip()}")
    if day == PLAN["resume winback"] and program.winback_run in program.expected.paused:
        result = driver.invoke("resume", str(program.winback_run))
        if result.exit_code == 0:
            start, _ = program.expected.paused[program.winback_run][-1]
            program.expected.paused[program.winback_run][-1] = (start, driver.now)
        else:
            program.refused(day, f"resume win-back: {result.output.strip()}")
    if day == PLAN["cancel a renewal run"]:
        cancel_a_run_with_calls(program, day)
    if day == PLAN["dialer results"] + 1:
        if program.dialer is None:
            program.refused(day, "no dialer results file was imported yesterday")
        else:
            dialer_next_morning(program, day, today, program.dialer)
    if day == PLAN["agent leaves"]:
        program.expected.departed_agents.add(LEAVER)
        program.services.departed[LEAVER] = driver.now
        driver.ok("agents", "disable", LEAVER)

    agents = [a for a in AGENTS if a not in program.expected.departed_agents]
    tick(program, day, local(today, 9, 35), env)
    driver.at(local(today, 11))
    for agent in agents:
        work_calls(program, day, agent, 2)
    lunch_break(program, day, agents)
    tick(program, day, local(today, 14), env)
    driver.at(local(today, 15, 30))
    if day == PLAN["dialer results"]:  # the afternoon's calls go through the dialer
        program.dialer = dialer_session(program, day, ACTION)
    else:
        for agent in agents:
            work_calls(program, day, agent, 2)
    work_cases(program, day)
    driver.at(local(today, 20, 30))  # the evening shift calls Sydney's morning
    work_calls(program, day, "ana", 1)
    tick(program, day, local(today, 22), env)
    if day == PLAN["sendgrid outage"]:
        after_outage(program, day)


def lunch_break(program: Program, day: int, agents: list[str]) -> None:
    """Each agent pauses for lunch at 12:30 and resumes at 13:15; on Thursdays ben forgets
    to resume, and his next `calls next` (15:30) ends the pause. `report agents` must count
    exactly that paused time (checked at the end of the day)."""
    driver = program.driver
    today = START + timedelta(days=day)
    forgetful = "ben" if today.weekday() == 3 else None
    started = local(today, 12, 30)
    driver.at(started)
    paused = []
    for agent in agents:
        result = driver.invoke("agents", "pause", agent, "--code", "break")
        if result.exit_code == 0:
            paused.append(agent)
        else:
            program.refused(day, f"`agents pause {agent}`: {result.output.strip()}")
    driver.at(local(today, 13, 15))
    for agent in paused:
        ended = local(today, 15, 30) if agent == forgetful else driver.now
        if agent != forgetful:
            driver.ok("agents", "resume", agent)
        key = (agent, started.astimezone(UTC).date())
        program.breaks[key] = program.breaks.get(key, 0) + int((ended - started).total_seconds())


def paused_time(
    driver: Any, day: int, today: date, breaks: dict[tuple[str, date], int]
) -> list[Violation]:
    """`report agents` for the day of the breaks counts each agent's, no more and no less."""
    utc_day = local(today, 12, 30).astimezone(UTC).date()
    shown = driver.json("report", "agents", "--period", utc_day.isoformat())
    reported = {p["agent"]: p["seconds"] for p in shown["pauses"] if p["code"] == "break"}
    expected = {agent: s for (agent, d), s in breaks.items() if d == utc_day}
    if reported != expected:
        return [
            Violation(
                day,
                "paused time is reported as taken",
                f"report agents --period {utc_day}: break seconds {reported}, expected {expected}",
            )
        ]
    return []


def cancel_a_run_with_calls(program: Program, day: int) -> None:
    """The coordinator cancels the renewal run of three weeks ago (wrong offer): it still has
    call tasks open, which the cancel must close."""
    runs = program.driver.json("runs", "list", "--campaign", "renewal-due")
    target = [
        r for r in runs if r["launched_at"] < (program.driver.now - timedelta(days=14)).isoformat()
    ]
    if not target:
        program.refused(day, "no renewal run three weeks old to cancel")
        return
    run = target[0]  # newest first
    result = program.driver.invoke("cancel", str(run["id"]), "--reason", "wrong offer")
    if result.exit_code != 0:
        program.refused(day, f"cancel run {run['id']} ({run['status']}): {result.output.strip()}")


def sendgrid_env(program: Program, day: int) -> dict[str, str] | None:
    """Email through (a fake) SendGrid on a few days, which is down for one whole day."""
    if not PLAN["sendgrid from"] <= day <= PLAN["sendgrid until"]:
        return None
    if program.sendgrid is None:
        program.sendgrid = FakeSendGrid(validate=False, record=False)
        program.sendgrid.start()
    program.sendgrid.clear()
    if day == PLAN["sendgrid outage"]:
        program.sendgrid.script("/v3/mail/send", *[Canned(status=503)] * 5000)
        # The weekly report due this Thursday morning meets the outage.
        today = START + timedelta(days=day)
        program.services.outage_fire = local(today, 7).astimezone(UTC)
    return {"SENDGRID_API_KEY": "SG.test-key", "CAMPAIGN_SENDGRID_HOST": program.sendgrid.url}


def after_outage(program: Program, day: int) -> None:
    """The coordinator resumes the runs the dispatcher paused because SendGrid was down."""
    runs = program.driver.json("runs", "list")
    for run in runs:
        if run["status"] == "paused" and run["id"] != program.winback_run:
            program.violations.append(
                Violation(day, OUTAGE, f"run {run['run_id']} ({run['campaign']}) was paused")
            )
            result = program.driver.invoke("resume", str(run["id"]))
            if result.exit_code != 0:
                program.refused(day, f"resume run {run['run_id']}: {result.output.strip()}")


def end_of_day(program: Program, day: int) -> None:
    driver = program.driver
    today = START + timedelta(days=day)
    driver.at(local(today, 23))
    listed = {
        agent: driver.json("calls", "list", "--agent", agent)
        for agent in AGENTS
        if agent not in program.expected.departed_agents
    }
    campaigns = sorted({run["campaign"] for run in driver.json("runs", "list")})
    reports = {name: driver.json("report", "campaign", name) for name in campaigns}
    view = DayView(day=day, now=driver.now, listed=listed, reports=reports)
    fires = {name: fire_times(name, driver.now) for name in RECURRING}
    # The program's one reading engine (not a new one a day): its compiled statements serve
    # every day's checks.
    engine = program.db()
    program.record(check_day(engine, view, program.expected, fires))
    cases = {
        "overdue": driver.json("cases", "list", "--overdue"),
        "complaints": driver.json("report", "complaints"),
    }
    deliveries = {"problems": driver.json("reports", "deliveries", "--problems")}
    # An operator's scrape, in-process, once a week and on the days of the outage.
    metrics = None
    if today.weekday() == 5 or PLAN["sendgrid from"] <= day <= PLAN["sendgrid until"]:
        metrics = scrape_metrics(driver.database_url, driver.now)
    with Session(engine) as session:
        program.record(
            check_services(
                session,
                view,
                program.services,
                Definitions(session),
                cases,
                deliveries,
                metrics,
            )
        )
    if today in HOLIDAY_WEEKS:
        program.record(holiday_week_targets(driver, day, today))
    program.record(paused_time(driver, day, today, program.breaks))


def scrape_metrics(database_url: str, now: datetime) -> str:
    """What `GET /metrics` of `campaign serve` would answer now."""
    app = engine_app.build_app(
        load_settings(database_url=database_url), clock=FrozenClock(now), check_schema=False
    )
    return scrape(app).decode()


# Weeks with a US public holiday on a weekday: Labor Day (the program's first day) and
# Thanksgiving. The program names the US calendar, so they have 4 business days, not 5.
HOLIDAY_WEEKS = {date(2026, 9, 7), date(2026, 11, 26)}


def holiday_week_targets(driver: Any, day: int, today: date) -> list[Violation]:
    """An agent's weekly target, derived from the daily one, counts the business days the
    program's holiday calendar leaves in the week: 4 in a week with a holiday."""
    login = next(iter(AGENTS))
    shown = driver.json("agents", "show", login, "--date", today.isoformat())
    week = next(f for f in shown["calling_plan"]["figures"] if f["period"] == "week")
    expected = (6 * 4, "daily × 4 business days, US holidays skipped")
    if (week["target"], week["target_source"]) != expected:
        return [
            Violation(
                day,
                "a public holiday is not a business day",
                f"{login}'s week of {today}: target {week['target']} "
                f"({week['target_source']}), expected {expected}",
            )
        ]
    return []


@pytest.fixture
def program(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Program]:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    shared = share_engines(monkeypatch)
    campaigns, templates = install_campaigns(tmp_path)
    env = {
        "CAMPAIGN_CAMPAIGNS_DIR": str(campaigns),
        "CAMPAIGN_TEMPLATES_DIR": str(templates),
        "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "outbox"),
        "CAMPAIGN_DEFAULT_TIMEZONE": "America/New_York",
        # The sink and the fake provider take any rate; real time must not pace simulated days.
        "CAMPAIGN_DISPATCH_EMAIL_RATE": "10000",
        "CAMPAIGN_DISPATCH_SMS_RATE": "10000",
        "CAMPAIGN_RENDER_WORKERS": "1",
        "CAMPAIGN_SECRET_KEY": "scenario-secret-key-0123456789abcdef",
        "CAMPAIGN_LANGUAGE_ROUTING_WAIT": f"{int(ROUTING_WAIT.total_seconds() // 60)}m",
        "CAMPAIGN_REPORTS_DIR": str(install_subscriptions(tmp_path)),
    }
    driver = Driver(database_url=database_url, env=env)
    driver.at(local(START, 6))
    driver.ok(
        "programs",
        "add",
        "demo",
        "--name",
        "Demo Rewards",
        "--timezone",
        "America/New_York",
        "--holidays",
        "US",
    )
    world = Program(folder=tmp_path, driver=driver)
    world.services.outbox = tmp_path / "outbox"
    plan_activity(world)
    yield world
    if world.sendgrid is not None:
        world.sendgrid.stop()
    if world.reader is not None:
        world.reader.dispose()
    close_shared(shared)


def share_engines(monkeypatch: pytest.MonkeyPatch) -> dict[str, Engine]:
    """Every CLI invocation of the scenario gets the same SQLAlchemy engine for a URL (each
    still builds its settings, app and sessions and checks the schema). A new engine per
    invocation, as a real process has, recompiles every statement: that alone would make the
    2,900 invocations several times slower.

    On PostgreSQL the invocations also share the pool's connections, as the scheduler daemon's
    ticks do: the app's close at the end of an invocation leaves them open (they are closed at
    the end of the test). A new server backend per invocation (connect, cold catalog caches)
    made the PostgreSQL case three times slower than SQLite's; SQLite's connections are cheap,
    so there each invocation closes its own, as a real process does. A fresh process is
    tested by the subprocess tests (tests/test_startup.py, the scheduler and tick ones)."""
    engines: dict[str, Engine] = {}

    def make(url: str, **kwargs: Any) -> Engine:
        if url not in engines:
            engine = make_engine(url, **kwargs)
            if engine.dialect.name == "postgresql":
                monkeypatch.setattr(engine, "dispose", _keep_connections)
            engines[url] = engine
        return engines[url]

    monkeypatch.setattr(engine_app, "make_engine", make)
    return engines


def _keep_connections(close: bool = True) -> None:
    """An invocation's ``engine.dispose()`` in the scenario on PostgreSQL (share_engines)."""


def close_shared(engines: dict[str, Engine]) -> None:
    for engine in engines.values():
        Engine.dispose(engine)  # the class's: the instance's may be _keep_connections


# 90 days of ~1,900 CLI invocations: minutes, not the suite's 300 s per-test limit.
@pytest.mark.timeout(1200)
def test_ninety_days_of_a_program(program: Program, capsys: pytest.CaptureFixture[str]) -> None:
    started = wallclock.monotonic()
    days = int(os.environ.get("SCENARIO_DAYS", DAYS))
    for day in range(days):
        live_day(program, day)
        end_of_day(program, day)
    seconds = wallclock.monotonic() - started
    with capsys.disabled():
        print(
            f"\n[scenario] {days} days, {program.driver.invocations} CLI invocations, "
            f"{program.calls_made} calls ({program.services.complaints} complaints, "
            f"{program.services.escalations} escalations), {seconds:.1f} s; by command: "
            + ", ".join(
                f"{k} {v:.1f}"
                for k, v in sorted(program.driver.seconds.items(), key=lambda kv: -kv[1])
            )
        )
    assert not program.violations, describe(program.violations)

"""The program's service side in the life-of-a-program scenario: agents who speak the members'
languages, cases opened by complaints and escalations and worked until resolved, report
subscriptions delivered by the tick, and the metrics a scrape would show.

The actions here are what the coordinator and the agents do (through the CLI); the checks
state what they rely on and read the database (read-only) to see whether it holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from prometheus_client.parser import text_string_to_metric_families
from scenario_invariants import DayView, Definitions, Violation, _in_window
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import CallTask, CampaignRun, Case, OutboxMessage, ReportDelivery

# Who speaks what: cleo is the program's only Chinese speaker (and leaves on day 62).
LANGUAGES = {"ana": ("en",), "ben": ("en", "es"), "cleo": ("en", "zh")}
# Longer than the default 15 minutes so that the morning's tasks of Chinese-speaking members
# are still held from the others when the agents start calling at 11:00.
ROUTING_WAIT = timedelta(hours=3)
ACTIVE_CASES = ("open", "waiting_on_us", "waiting_on_member")
# The root causes the coordinator gives, in turn (all from the default list of docs/cases.md).
ROOT_CAUSES = ("billing_error", "points_not_credited", "communication_unclear", "no_fault_found")
COMPLAINT_CATEGORIES = ("billing", "points", "service")
# A case is resolved once it is this old and has had its follow-up calls.
RESOLVE_AFTER = timedelta(days=2)
REPORT_ZONE = ZoneInfo("America/New_York")
# Report subscriptions: name -> (file body, its fires as a function of the local date).
FINANCE_RECIPIENTS = ["finance@example.com", "cfo@example.com"]
SUBSCRIPTIONS: dict[str, dict[str, Any]] = {
    "finance-monthly": {
        "name": "finance-monthly",
        "description": "Monthly results for finance",
        "program": "demo",
        "reports": [{"report": "campaign", "campaign": "renewal-due"}, {"report": "complaints"}],
        "period": "last calendar month",
        "format": ["html", "csv"],
        "recipients": FINANCE_RECIPIENTS,
        "schedule": {"cron": "0 7 1 * *"},
    },
    "agents-weekly": {
        "name": "agents-weekly",
        "description": "Last week's calling for the team leads",
        "program": "demo",
        "reports": [{"report": "agents"}],
        "period": "last week",
        "format": ["html"],
        "recipients": ["leads@example.com"],
        "schedule": {"cron": "0 7 * * THU"},
    },
}


def install_subscriptions(folder: Path) -> Path:
    reports = folder / "reports"
    reports.mkdir()
    for name, body in SUBSCRIPTIONS.items():
        (reports / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return reports


def subscription_fires(name: str, first_seen: datetime, until: datetime) -> list[datetime]:
    """The fires a user expects delivered: every 07:00 (program zone) on the 1st of a month
    (monthly) or on a Thursday (weekly), after the tick first saw the file, up to ``until``."""
    fires = []
    day = first_seen.astimezone(REPORT_ZONE).date()
    while True:
        at = datetime.combine(day, time(7), tzinfo=REPORT_ZONE)
        if at > until:
            return fires
        wanted = day.day == 1 if name == "finance-monthly" else day.weekday() == 3
        if wanted and at > first_seen:
            fires.append(at)
        day += timedelta(days=1)


@dataclass(frozen=True)
class ServedCall:
    """A task an agent was served by `calls next`, as it stood when it was served."""

    agent: str
    external_id: str
    locale: str | None
    zone: str
    task_id: int
    kind: str
    run_id: int | None
    assigned_agent: str | None
    due_at: datetime
    at: datetime


@dataclass
class Services:
    """What the scenario did on the service side, that the checks compare with."""

    served: list[ServedCall] = field(default_factory=list)
    departed: dict[str, datetime] = field(default_factory=dict)  # agent -> when disabled
    subscriptions_seen: datetime | None = None  # the first tick that read reports/
    outbox: Path | None = None
    outage_fire: datetime | None = None  # a weekly fire the SendGrid outage hit
    complaints: int = 0
    escalations: int = 0


def speaks(agent: str, language: str | None, at: datetime, services: Services) -> bool:
    return language in LANGUAGES[agent] and not (
        agent in services.departed and services.departed[agent] <= at
    )


def _language(locale: str | None) -> str | None:
    return locale.replace("_", "-").split("-")[0].lower() if locale else None


def first_callable(due: datetime, zone: str, window: Mapping[str, Any] | None) -> datetime:
    """The earliest instant at or after ``due`` inside the legal and the campaign's window
    (a stricter state rule can only make the engine's later)."""
    if _in_window(due, zone, window) is None:
        return due
    tz = ZoneInfo(zone)
    day = due.astimezone(tz).date()
    start = max(time(8), time.fromisoformat((window or {}).get("start", "08:00")))
    for offset in range(9):
        candidate = datetime.combine(day + timedelta(days=offset), start, tzinfo=tz)
        if candidate > due and _in_window(candidate, zone, window) is None:
            return candidate
    return due


# --------------------------------------------------------------------------- checks


def check_services(
    session: Session,
    view: DayView,
    services: Services,
    definitions: Definitions,
    cases: Mapping[str, Any],
    deliveries: Mapping[str, Any],
    metrics: str | None,
) -> list[Violation]:
    found: list[Violation] = []
    for check in (
        lambda: speakers_are_served_first(view, services, definitions),
        lambda: nothing_waits_for_nobody(view, services),
        lambda: cases_have_an_owner_and_a_due_time(session, view, services),
        lambda: overdue_cases_are_listed(session, view, cases["overdue"]),
        lambda: root_causes_add_up(session, view, cases["complaints"]),
        lambda: each_report_fire_delivered_once(session, view, services, deliveries),
        lambda: metrics_agree_with_the_database(session, view, metrics),
    ):
        found.extend(check())
    return found


SPEAKERS_FIRST = "a member's call goes to a speaker of their language first"


def speakers_are_served_first(
    view: DayView, services: Services, definitions: Definitions
) -> Iterable[Violation]:
    """A Chinese-speaking member's call goes to an agent who speaks Chinese first, and to the
    others only once it has waited the routing wait after it could first be called. A
    callback the member booked with one agent is that agent's: language holds nothing there."""
    for call in services.served:
        language = _language(call.locale)
        if speaks(call.agent, language, call.at, services):
            continue
        if not any(speaks(a, language, call.at, services) for a in LANGUAGES):
            continue  # nobody here speaks it: nobody to wait for
        if call.assigned_agent == call.agent:
            continue
        window = None
        if call.kind == "campaign" and call.run_id in definitions.runs:
            window = definitions.get(call.run_id, "call_window")
        opened = first_callable(call.due_at, call.zone, window)
        if call.at < opened + ROUTING_WAIT:
            yield Violation(
                view.day,
                SPEAKERS_FIRST,
                f"{call.agent} was served {language} member {call.external_id}'s task "
                f"{call.task_id} ({call.kind}) at {call.at:%Y-%m-%d %H:%M}Z, "
                f"{(call.at - opened)} after it could be called",
            )


def nothing_waits_for_nobody(view: DayView, services: Services) -> Iterable[Violation]:
    """No task on a list waits for a speaker of a language nobody here speaks any more, and a
    callback booked with an agent never waits on that agent's own list for language."""
    for agent, rows in view.listed.items():
        for row in rows:
            if row.get("waits_for") != "language":
                continue
            held = _language_of_row(row)
            if row.get("assigned_agent") == agent:
                yield Violation(
                    view.day,
                    SPEAKERS_FIRST,
                    f"{agent}'s own callback {row['task_id']} for {row['external_id']} waits "
                    f"for another language's speaker: {row['why']}",
                )
            elif held is not None and not any(
                speaks(a, held, view.now, services) for a in LANGUAGES
            ):
                yield Violation(
                    view.day,
                    "nothing is left unserved because of language",
                    f"task {row['task_id']} on {agent}'s list: {row['why']}",
                )


def _language_of_row(row: Mapping[str, Any]) -> str | None:
    marker = "waits for an agent who speaks "
    text = str(row.get("why") or "")
    return text.split(marker, 1)[1].split()[0] if marker in text else None


def cases_have_an_owner_and_a_due_time(
    session: Session, view: DayView, services: Services
) -> Iterable[Violation]:
    """Every case being worked has an owner (a team, or an agent who still works here) and a
    due time; every resolved or closed case has a root cause."""
    for case in session.scalars(select(Case)):
        if case.status in ACTIVE_CASES:
            gone = case.owner_agent in services.departed
            if not (case.owner_agent or case.owner_team) or gone or case.due_at is None:
                yield Violation(
                    view.day,
                    "every open case has an owner and a due time",
                    f"case {case.id} ({case.category}, {case.status}): owner agent "
                    f"{case.owner_agent} team {case.owner_team}"
                    + (" (no longer works here)" if gone else "")
                    + f", due {case.due_at}",
                )
        elif not case.root_cause:
            yield Violation(
                view.day,
                "every resolved case has a root cause",
                f"case {case.id} {case.status} without a root cause",
            )


def overdue_cases_are_listed(
    session: Session, view: DayView, listed: list[dict[str, Any]]
) -> Iterable[Violation]:
    """`cases list --overdue` lists exactly the cases being worked past their due time."""
    late = {
        case.id
        for case in session.scalars(select(Case).where(Case.status.in_(ACTIVE_CASES)))
        if case.due_at < view.now
    }
    shown = {row["id"] for row in listed}
    if late != shown:
        yield Violation(
            view.day,
            "overdue cases are listed",
            f"past due and being worked: {sorted(late)}; `cases list --overdue`: {sorted(shown)}",
        )


def root_causes_add_up(
    session: Session, view: DayView, report: Mapping[str, Any]
) -> Iterable[Violation]:
    """`report complaints`' root-cause figures add up to the cases opened in its period: by
    category and root cause, opened and resolved."""
    start = view.now - timedelta(days=30)
    opened: Counter[tuple[str, str]] = Counter()
    resolved: Counter[tuple[str, str]] = Counter()
    query = select(Case).where(Case.opened_at >= start, Case.opened_at < view.now)
    for case in session.scalars(query):
        done = case.status not in ACTIVE_CASES and case.root_cause
        key = (case.category, case.root_cause if done else "(unresolved)")
        opened[key] += 1
        if done:
            resolved[key] += 1
    rows = report["cases"]["rows"]
    shown_opened = Counter({(r["category"], r["root_cause"]): r["opened"] for r in rows})
    shown_resolved = Counter({(r["category"], r["root_cause"]): r["resolved"] for r in rows})
    if +shown_opened != +opened or +shown_resolved != +resolved:
        yield Violation(
            view.day,
            "report does not add up",
            f"report complaints' cases: opened {dict(shown_opened)} resolved "
            f"{dict(shown_resolved)}; the cases: opened {dict(opened)} resolved {dict(resolved)}",
        )


REPORTS_ONCE = "a subscribed report arrives once per fire"
# The days the scenario sends email through (a fake) SendGrid: no .eml is written then.
SENDGRID_DAYS = (date(2026, 11, 4), date(2026, 11, 6))


def through_sendgrid(fire: datetime) -> bool:
    return SENDGRID_DAYS[0] <= fire.astimezone(REPORT_ZONE).date() <= SENDGRID_DAYS[1]


def each_report_fire_delivered_once(
    session: Session, view: DayView, services: Services, deliveries: Mapping[str, Any]
) -> Iterable[Violation]:
    """Each subscription's fire is delivered exactly once (one email per recipient, never a
    second one however many ticks run); a fire not delivered yet is listed as a problem, and
    the one the outage hit has gone by the end of the next day."""
    if services.subscriptions_seen is None or services.outbox is None:
        return
    problems = {row["id"] for row in deliveries["problems"]}
    emls = Counter(int(path.name.split("-")[1]) for path in services.outbox.glob("report-*-*.eml"))
    for name, body in SUBSCRIPTIONS.items():
        wanted = [
            f.astimezone(UTC)
            for f in subscription_fires(name, services.subscriptions_seen, view.now)
            # the 09:35 tick delivers a 07:00 fire
            if f + timedelta(hours=3) <= view.now
        ]
        rows = list(
            session.scalars(
                select(ReportDelivery).where(
                    ReportDelivery.subscription == name, ReportDelivery.manual.is_(False)
                )
            )
        )
        fires = Counter(row.fire_at for row in rows)
        if sorted(fires) != wanted or any(n > 1 for n in fires.values()):
            yield Violation(
                view.day,
                REPORTS_ONCE,
                f"{name}: deliveries for {sorted(f'{f:%m-%d}' for f in fires.elements())}, "
                f"fires {[f'{f:%m-%d}' for f in wanted]}",
            )
        outage_hit = services.outage_fire is not None and name == "agents-weekly"
        for row in rows:
            fire = row.fire_at
            recipients = len(body["recipients"])
            if row.status != "sent":
                if row.id not in problems:
                    yield Violation(
                        view.day,
                        "a failed report delivery is listed",
                        f"{name} delivery {row.id} ({fire:%m-%d}) is {row.status}, not listed "
                        "by `reports deliveries --problems`",
                    )
                if not (outage_hit and fire == services.outage_fire) or view.day > 60:
                    yield Violation(
                        view.day,
                        REPORTS_ONCE,
                        f"{name} delivery {row.id} ({fire:%m-%d}): {row.status} after "
                        f"{row.attempts} attempts: {row.last_error}",
                    )
            elif outage_hit and fire == services.outage_fire and row.attempts < 2:
                yield Violation(
                    view.day,
                    "a failed report delivery is retried",
                    f"{name} delivery {row.id} during the outage went in {row.attempts} attempt",
                )
            elif not through_sendgrid(fire) and emls.get(row.id, 0) != recipients:
                # Through the file sink: one .eml per recipient.
                yield Violation(
                    view.day,
                    REPORTS_ONCE,
                    f"{name} delivery {row.id} ({fire:%m-%d}): {emls.get(row.id, 0)} "
                    f"emails written for {recipients} recipients",
                )


def metrics_agree_with_the_database(
    session: Session, view: DayView, scraped: str | None
) -> Iterable[Violation]:
    """What an operator's scrape shows agrees with the database: messages by channel and
    status, runs by status, open call tasks by team, messages sent by channel."""
    if scraped is None:
        return
    shown: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            shown.setdefault(sample.name, {})[labels] = sample.value

    def compare(metric: str, truth: Mapping[tuple[str, ...], int]) -> Iterable[Violation]:
        scraped_values = {k: int(v) for k, v in shown.get(metric, {}).items() if v}
        wanted = {k: v for k, v in truth.items() if v}
        if scraped_values != wanted:
            yield Violation(
                view.day,
                "the metrics agree with the database",
                f"{metric}: scraped {scraped_values}, database {wanted}",
            )

    o = OutboxMessage
    by_status = session.execute(
        select(o.channel, o.status, func.count()).group_by(o.channel, o.status)
    )
    yield from compare(
        "campaign_outbox_messages",
        {(("channel", c), ("status", s)): n for c, s, n in by_status},
    )
    runs = session.execute(select(CampaignRun.status, func.count()).group_by(CampaignRun.status))
    yield from compare("campaign_runs", {(("status", s),): n for s, n in runs})
    tasks = session.execute(
        select(CallTask.team, CallTask.status, func.count())
        .where(CallTask.status.in_(("open", "claimed")))
        .group_by(CallTask.team, CallTask.status)
    )
    yield from compare(
        "campaign_call_tasks_open",
        {(("status", s), ("team", t or "")): n for t, s, n in tasks},
    )
    sent = session.execute(
        select(o.channel, func.count()).where(o.sent_at.is_not(None)).group_by(o.channel)
    )
    yield from compare("campaign_messages_sent_total", {(("channel", c),): n for c, n in sent})

"""The follow-up standard inside the member's calling window (#15): the next attempt is placed
where the member may be called within the 8 business hours, and a standard the window makes
impossible is reported as such, not as a breach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calls_helpers import make_world, task_row, unit

from engine.app import App
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.reporting import agent_performance
from engine.calls.standards import DEFAULT_STANDARD, schedule_retry
from engine.policy import Window, effective_window, next_allowed
from engine.reports.agents import agents_report
from engine.reports.common import parse_period

NY = "America/New_York"
# Weekends only: a standard of business hours (Monday to Friday) is hard to keep.
WEEKENDS = {"start": "10:00", "end": "18:00", "days": ["sat", "sun"]}


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    """March 2026, New York wall time (EST to the 8th, EDT after)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=ZoneInfo(NY)).astimezone(UTC)


def legal(t: datetime) -> datetime | None:
    return next_allowed(t, [NY], effective_window("call", None))


def weekends(t: datetime) -> datetime | None:
    window = Window.of(WEEKENDS["start"], WEEKENDS["end"], WEEKENDS["days"])
    return next_allowed(t, [NY], effective_window("call", window))


def test_a_retry_the_window_closes_on_moves_to_its_next_opening() -> None:
    # Monday 20:00: 4 hours later is midnight; the window opens Tuesday 08:00, inside the
    # standard (8 business hours run out Tuesday 17:00; none pass until Wednesday 09:00).
    retry = schedule_retry(ny(2, 20), timedelta(hours=4), DEFAULT_STANDARD, NY, legal)
    assert (retry.due, retry.deadline, retry.feasible) == (ny(3, 8), ny(4, 9), True)


def test_a_retry_moves_earlier_when_the_window_reopens_only_after_the_standard() -> None:
    # Weekends only, called Sunday 10:00 with two days' delay: the standard runs out Monday
    # 17:00 (Tuesday 09:00 at the latest), the window reopens Saturday; the last chance is
    # Sunday's last quarter hour.
    retry = schedule_retry(ny(15, 10), timedelta(days=2), DEFAULT_STANDARD, NY, weekends)
    assert retry.feasible and retry.deadline == ny(17, 9)
    assert retry.due == ny(15, 17, 45)
    assert weekends(retry.due) == retry.due  # inside the window


def test_a_standard_the_window_makes_impossible_is_said_so() -> None:
    # Called Sunday 18:30 (after the window: a dialer's row): it reopens Saturday.
    retry = schedule_retry(ny(15, 18, 30), timedelta(hours=4), DEFAULT_STANDARD, NY, weekends)
    assert not retry.feasible
    assert retry.due == ny(21, 10)  # still the first chance there is


def log(app: App, task: int, code: str, when: datetime):  # type: ignore[no-untyped-def]
    with unit(app) as s:
        return log_call(s, CallInput(task, "ana", code, {}), DispositionSet.standard(), at=when)


def test_logging_places_the_retry_in_the_window_and_reports_an_impossible_standard(
    app: App,
) -> None:
    w = make_world(app, call_window=WEEKENDS)
    w.agent("ana")
    placed = w.task(w.member(timezone=NY), due_at=ny(15, 10))
    stuck = w.task(w.member(timezone=NY), due_at=ny(15, 10))

    first = log(app, placed, "NO_ANSWER", ny(15, 15))
    # 4 hours later is 19:00, after the window, which reopens after the standard: 17:45.
    assert first.task_status == "open" and task_row(app, placed).due_at == ny(15, 17, 45)
    assert first.standard_note is None

    late = log(app, stuck, "NO_ANSWER", ny(15, 18, 30))
    assert late.standard_note is not None and "cannot be met" in late.standard_note
    assert task_row(app, stuck).due_at == ny(21, 10)

    # Both retried next Saturday: one breach the agent could have avoided (Sunday 17:45 was
    # there), one the window made impossible.
    log(app, placed, "NO_ANSWER", ny(21, 10, 5))
    log(app, stuck, "NO_ANSWER", ny(21, 10, 10))
    with app.sessions() as s:
        (ana,) = agent_performance(s, start=ny(15, 0), end=ny(16, 0), at=ny(21, 12))
    assert (ana.follow_ups_due, ana.follow_ups_on_time, ana.follow_ups_breached) == (1, 0, 1)
    assert ana.follow_ups_impossible == 1
    with app.sessions() as s:
        report = agents_report(
            s,
            at=ny(21, 12),
            settings=app.settings,
            period=parse_period("2026-03-15", at=ny(21, 12)),
        )
    table = report.tables()[0]
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert row["follow-ups on time"] == "0/1 (1 impossible in the calling window)"
    assert row["follow-up breaches"] == 1

"""`report complaints`' root-cause section, with figures worked out by hand (both databases)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cases_helpers import make_world, unit
from click.testing import CliRunner

from cli import CliState, cli
from engine.app import App
from engine.cases import store
from engine.cases.config import DEFAULT_RULES
from engine.cases.report import root_cause_report
from engine.clock import FrozenClock
from engine.db.models import Participant


def ny(day: int, hour: int) -> datetime:
    """March 2026 in New York (EST, UTC-5, before the DST change on the 8th)."""
    return datetime(2026, 3, day, hour + 5, 0, tzinfo=UTC)


REPORT_AT = ny(6, 12)  # Friday


def _case(
    app: App,
    world: object,
    category: str,
    opened: datetime,
    *,
    resolved: list[tuple[datetime, str]] = (),  # type: ignore[assignment]
    reopened: list[datetime] = (),  # type: ignore[assignment]
    summary: str = "",
) -> int:
    member = world.member()  # type: ignore[attr-defined]
    with unit(app) as s:
        participant = s.get(Participant, member)
        assert participant is not None
        opened_case = store.open_case(
            s, participant, category=category, summary=summary or f"{category} problem",
            source="manual", by="ann", at=opened, rules=DEFAULT_RULES, owner_agent="ann",
        )  # fmt: skip
        case = store.get_case(s, opened_case.case_id)
        for index, (when, cause) in enumerate(resolved):
            store.resolve(s, case, root_cause=cause, resolution=f"fixed {index}", by="ann",
                          at=when, rules=DEFAULT_RULES)  # fmt: skip
            if index < len(reopened):
                store.reopen(s, case, by="ann", at=reopened[index], rules=DEFAULT_RULES,
                             reason="again")  # fmt: skip
        return case.id


def test_root_cause_figures_match_the_hand_count(app: App) -> None:
    world = make_world(app)
    world.agent("ann")
    # Billing, due 2 business days after opening (Mon 10:00 -> Wed 10:00).
    a = _case(app, world, "billing", ny(2, 10), resolved=[(ny(2, 14), "billing_error")])
    b = _case(app, world, "billing", ny(2, 10), resolved=[(ny(5, 10), "billing_error")])
    c = _case(app, world, "billing", ny(3, 9),
              resolved=[(ny(3, 11), "billing_error"), (ny(3, 16), "billing_error")],
              reopened=[ny(3, 12)])  # fmt: skip
    _case(app, world, "points", ny(2, 10))  # still open on Friday: overdue
    _case(app, world, "points", ny(2, 10), resolved=[(ny(2, 11), "points_not_credited")])
    _case(app, world, "billing", ny(2, 10) - (ny(20, 0) - ny(6, 0)))  # before the period

    with app.sessions() as s:
        report = root_cause_report(s, start=ny(1, 0), end=ny(7, 0), at=REPORT_AT, label="1-6 March")
    rows = {(r.category, r.root_cause): r for r in report.rows}
    assert set(rows) == {
        ("billing", "billing_error"),
        ("points", "(unresolved)"),
        ("points", "points_not_credited"),
    }
    billing = rows["billing", "billing_error"]
    # A: Mon 10-14 = 4 business hours; B: Mon 7 + Tue 8 + Wed 8 + Thu 1 = 24 (resolved after
    # its due time: overdue); C: Tue 09:00 to its last resolution at 16:00 = 7, reopened once.
    assert (billing.opened, billing.resolved, billing.overdue, billing.reopened) == (3, 3, 1, 1)
    # Nearest rank over [4, 7, 24]: median the 2nd, p90 the 3rd.
    assert (billing.median_hours_to_resolve, billing.p90_hours_to_resolve) == (7.0, 24.0)
    open_points = rows["points", "(unresolved)"]
    assert (open_points.opened, open_points.resolved, open_points.overdue) == (1, 0, 1)
    assert open_points.median_hours_to_resolve is None
    quick = rows["points", "points_not_credited"]
    assert (quick.opened, quick.resolved, quick.overdue, quick.median_hours_to_resolve) == (
        1, 1, 0, 1.0
    )  # fmt: skip
    # The most recent summaries per root cause, newest first.
    assert [x.case_id for x in report.recent["billing_error"]] == [c, b, a]
    assert [x.resolution for x in report.recent["billing_error"]] == [
        "fixed 1", "fixed 0", "fixed 0"
    ]  # fmt: skip


def test_report_complaints_json_keeps_its_keys_and_adds_the_cases(app: App) -> None:
    world = make_world(app)
    world.agent("ann")
    _case(app, world, "billing", ny(2, 10), resolved=[(ny(2, 14), "billing_error")])
    result = CliRunner().invoke(
        cli,
        ["report", "complaints", "--period", "2026-03-01..2026-03-06", "--json"],
        obj=CliState(
            overrides={"database_url": app.settings.database_url}, clock=FrozenClock(REPORT_AT)
        ),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "counts" in data and data["program"] is None
    assert [(r["category"], r["root_cause"], r["opened"]) for r in data["cases"]["rows"]] == [
        ("billing", "billing_error", 1)
    ]
    text = CliRunner().invoke(
        cli,
        ["report", "complaints", "--period", "2026-03-01..2026-03-06"],
        obj=CliState(
            overrides={"database_url": app.settings.database_url}, clock=FrozenClock(REPORT_AT)
        ),
    )
    assert text.exit_code == 0, text.output
    assert "Cases by category and root cause" in text.output
    assert "Most recent cases with root cause billing_error" in text.output

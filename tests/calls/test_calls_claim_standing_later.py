"""A claim's standing check is at the claim's own instant, also now that the claim's
statement is built once with its instant bound (engine/calls/tasks.py _SELECTS, #19): a
member who matched the run's relative standing condition at one claim and no longer does at
a later one is refused ``no_longer_eligible`` then, not served on the first claim's time."""

from __future__ import annotations

from datetime import timedelta

from calls_helpers import TEST_NOW, make_world, unit

from engine.app import App
from engine.calls.tasks import claim_next, release
from engine.db.models import CallTask

AUDIENCE = {
    "all": [{"field": "status", "eq": "active"}, {"field": "renewal_date", "within_next": "30d"}]
}


def test_a_later_claim_checks_a_relative_standing_condition_at_its_own_instant(
    app: App,
) -> None:
    w = make_world(app, audience=AUDIENCE, standing=["status", "renewal_date"])
    w.agent("ana")
    renews = (TEST_NOW + timedelta(days=20)).date()
    task = w.task(w.member(status="active", renewal_date=renews))
    with unit(app) as s:
        first = claim_next(s, "ana", at=TEST_NOW)
    assert first is not None and first.task_id == task
    with unit(app) as s:
        release(s, task, "ana", at=TEST_NOW)
    later = TEST_NOW + timedelta(days=25)  # a Friday, 11:00 in New York: callable hours
    with unit(app) as s:
        second = claim_next(s, "ana", at=later)
    assert second is None
    with unit(app) as s:
        row = s.get(CallTask, task)
        assert row is not None
        assert (row.status, row.close_reason) == ("closed", "not callable: no_longer_eligible")

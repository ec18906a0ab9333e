"""Claim-next reads a page of a step ranked by no member field from the open tasks' queue
index (0038) in due order, on both databases, instead of a run's every task (#19)."""

from __future__ import annotations

from typing import Any

from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import event

from engine.app import App
from engine.calls.tasks import claim_next


def _plans_of_the_claims_pages(app: App) -> list[str]:
    """The query plan of each page of tasks (LIMIT, OFFSET) a claim reads."""
    pages: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        page = statement.startswith("SELECT call_tasks.id") and "OFFSET" in statement
        if page and "call_tasks.id IN" not in statement:  # not the re-check of one task
            pages.append((statement, parameters))

    event.listen(app.engine, "before_cursor_execute", keep)
    try:
        with unit(app) as s:
            assert claim_next(s, "ana", at=TEST_NOW) is not None
    finally:
        event.remove(app.engine, "before_cursor_execute", keep)
    assert pages
    plans = []
    with app.engine.begin() as c:
        if app.engine.dialect.name == "sqlite":
            for statement, parameters in pages:
                rows = c.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans.append(" ".join(str(row[3]) for row in rows))
        else:
            # A few rows: without this the planner reads the table whatever its indexes.
            c.exec_driver_sql("SET LOCAL enable_seqscan = off")
            for statement, parameters in pages:
                rows = c.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plans.append(" ".join(str(row[0]) for row in rows))
    return plans


def test_a_claim_reads_an_unranked_steps_page_from_the_queue_index(app: App) -> None:
    w = make_world(app, step={"priority": []})
    w.agent("ana")
    for _ in range(30):
        w.task(w.member())
    plans = _plans_of_the_claims_pages(app)
    for plan in plans:
        assert "ix_call_tasks_open_queue" in plan, plan

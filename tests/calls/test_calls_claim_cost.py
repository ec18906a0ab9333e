"""Claim-next's cost: the statements one claim runs do not grow with the queue (no N+1), and
the claim still serves the head of the listed order when the best task of a campaign step is
past the first pages claim-next reads (engine/calls/tasks.py: serving_order)."""

from __future__ import annotations

from calls_helpers import TEST_NOW, World, campaign_source, make_run, make_world, unit
from sqlalchemy import update

from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.tasks import FIRST_PAGES, claim_next, release
from engine.consent.suppressions import add_suppression
from engine.db.models import CallTask
from engine.db.tables.runs import campaign_runs
from engine.definitions.stored import stored_definition
from engine.testing.statements import statements_of

# What a claim may cost with two campaign steps: the claim's own statements (expired tasks,
# which on SQLite also takes the write lock, the agent read and locked in one statement, then
# its held claim with the active agents' logins in one), the runs and programs once, the
# steps, and for each step a page (its standing check a column of it) and its frequency-cap
# contacts with the live claims (one UNION ALL), then the re-check of the task (locked and
# read with the suppressions of its number's hash in one statement), its contacts, and the
# claim's UPDATE: 14 on SQLite (its BEGIN counted), 13 on PostgreSQL. It was 16 and 15 before
# the held claim and the active logins, and the re-check and the suppressions by hash, were
# read together; 25 and 23 before #19's second pass, 32 and 30 before the claim shared one
# scan.
MAX_STATEMENTS = {"sqlite": 14, "postgresql": 13}


def _queue(w: World, other: int, size: int) -> None:
    """``size`` tasks in each of two steps, with members the claim must pass over."""
    for i in range(size):
        night = i % 4 == 1  # Honolulu: before 08:00 at TEST_NOW, waits for the window
        w.task(
            w.member(
                points_balance=i * 13 % 97,
                consent="opted_out" if i % 9 == 4 else "opted_in",
                timezone="Pacific/Honolulu" if night else "America/New_York",
            )
        )
        w.task(w.member(attributes={"score": i * 7 % 31}), run_id=other)


def _claim_statements(app: App, login: str) -> int:
    with statements_of(app.engine) as statements, unit(app) as s:
        claim = claim_next(s, login, at=TEST_NOW)
    assert claim is not None
    with unit(app) as s:
        release(s, claim.task_id, login, at=TEST_NOW)
    return len(statements)


def _world(app: App) -> tuple[World, int]:
    w = make_world(app)
    other = make_run(
        app,
        w.program_id,
        campaign_source(
            "score-calls", step={"priority": [{"field": "attributes.score", "order": "asc"}]}
        ),
    )
    return w, other


def test_statements_per_claim_do_not_grow_with_the_queue(app: App) -> None:
    w, other = _world(app)
    w.agent("ana")
    _queue(w, other, 8)
    _claim_statements(app, "ana")  # the first claim also closes the opted-out on its way
    small = _claim_statements(app, "ana")
    _queue(w, other, 120)
    _claim_statements(app, "ana")
    large = _claim_statements(app, "ana")
    assert large == small, (small, large)
    assert large <= MAX_STATEMENTS[app.engine.dialect.name], large


def test_the_claim_serves_the_head_of_the_list_past_the_first_pages(app: App) -> None:
    w, other = _world(app)
    w.agent("ana")
    first = sum(FIRST_PAGES)
    # The best-ranked tasks of both steps are not callable now (night, opted out, do not
    # call): the first callable task of each step is past the first pages claim-next reads.
    for i in range(first + 5):
        w.task(w.member(points_balance=10_000 - i, timezone="Pacific/Honolulu"))
        w.task(w.member(attributes={"score": i}, timezone="Pacific/Honolulu"), run_id=other)
    refused = w.member(points_balance=5_000, consent="opted_out")
    w.task(refused)
    dnc = w.member(points_balance=4_999, phone="+12024567890")  # no other test uses 202-456
    w.task(dnc)
    with unit(app) as s:
        add_suppression(s, "+12024567890", "call", "do_not_call", "test", at=TEST_NOW)
    for i in range(4):
        w.task(w.member(points_balance=100 + i))
        w.task(w.member(attributes={"score": 500 + i}), run_id=other)

    def callable_list() -> list[int]:
        with unit(app) as s:
            return [r.task_id for r in list_calls(s, at=TEST_NOW, agent="ana") if r.callable_now]

    claimed: list[int] = []
    closed: list[tuple[int, str]] = []
    while True:
        listed = callable_list()
        with unit(app) as s:
            c = claim_next(s, "ana", at=TEST_NOW)
            if c is None:
                assert listed == []
                break
            closed.extend(c.closed_on_the_way)
            row = s.get(CallTask, c.task_id)
            assert row is not None
            row.status = "closed"
        assert c.task_id == listed[0]
        claimed.append(c.task_id)
    assert len(claimed) == 8
    assert sorted(reason for _, reason in closed) == ["opted_out", "suppressed"]


def test_a_claim_parses_no_definition_of_a_run_with_a_claim_form(app: App) -> None:
    # Launch stores each run's claim form: a claim reads it, and parses no stored text (#18).
    w, other = _world(app)
    w.agent("ana")
    w.task(w.member())
    w.task(w.member(attributes={"score": 1}), run_id=other)
    stored_definition.cache_clear()
    with unit(app) as s:
        claim = claim_next(s, "ana", at=TEST_NOW)
    assert claim is not None
    assert stored_definition.cache_info().currsize == 0


def test_a_claim_parses_only_the_definitions_of_the_runs_it_meets(app: App) -> None:
    # Runs without a claim form (inserted before 0036 and not backfilled): another active run
    # with nothing for the agent: its stored text is never parsed (#18).
    w, other = _world(app)
    with unit(app) as s:
        s.execute(update(campaign_runs).values(claim_form=None))
    w.agent("ana")
    w.task(w.member())
    stored_definition.cache_clear()
    with unit(app) as s:
        claim = claim_next(s, "ana", at=TEST_NOW)
    assert claim is not None
    assert stored_definition.cache_info().currsize == 1
    # Once that run has a task for her, the next claim reads its definition too.
    w.task(w.member(attributes={"score": 1}), run_id=other)
    stored_definition.cache_clear()
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW) is not None  # she still holds the first
        release(s, claim.task_id, "ana", at=TEST_NOW)
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW) is not None
    assert stored_definition.cache_info().currsize == 2

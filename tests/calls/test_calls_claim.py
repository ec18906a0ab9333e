"""Call lists and claim-next: order, eligibility, claim-time checks, leases, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from calls_helpers import TEST_NOW, campaign_source, make_run, make_world, task_row, unit

from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.tasks import claim_next
from engine.consent.suppressions import add_suppression
from engine.db.models import CallTask
from engine.runs import pause_run


def claim(app: App, agent: str, at=TEST_NOW, **kw):  # type: ignore[no-untyped-def]
    with unit(app) as s:
        return claim_next(s, agent, at=at, **kw)


def test_claims_by_campaign_priority_then_due_time(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    low = w.task(w.member(points_balance=100), due_at=TEST_NOW - timedelta(hours=5))
    high = w.task(w.member(points_balance=9000))
    mid = w.task(w.member(points_balance=500))
    order = [claim(app, "ana").task_id]
    w.agent("ben")
    w.agent("cid")
    order.append(claim(app, "ben").task_id)
    order.append(claim(app, "cid").task_id)
    assert order == [high, mid, low]
    assert claim(app, "ana").resumed  # ana still holds her claim: she gets it back


def test_list_shows_serving_order_and_reasons(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    a = w.task(w.member(points_balance=10))
    b = w.task(w.member(points_balance=20))
    later = w.task(w.member(points_balance=99999), due_at=TEST_NOW + timedelta(hours=2))
    with unit(app) as s:
        rows = list_calls(s, at=TEST_NOW, agent="ana")
    assert [r.task_id for r in rows] == [b, a, later]
    assert rows[0].callable_now and not rows[2].callable_now
    assert rows[2].callable_at == TEST_NOW + timedelta(hours=2)
    # The rank is within the campaign; a task not callable yet still waits behind the others.
    assert "rank 1 by points_balance desc" in rows[2].why
    assert "rank 2 by points_balance desc" in rows[0].why
    assert "waits for the calling window" not in rows[0].why


def test_team_and_agent_only_assignment(app: App) -> None:
    w = make_world(app)
    w.agent("ana", teams=("renewals",))
    w.agent("esc", teams=("escalations",))
    w.agent("own", teams=())
    renewals = w.task(w.member())
    mine = w.task(w.member(), assigned_agent="own", team="renewals")
    managed = w.task(w.member(account_manager="own"))
    assert claim(app, "esc") is None  # nothing on the escalations queue
    got_own = claim(app, "own")
    assert got_own is not None and got_own.task_id in (mine, managed)
    assert claim(app, "ana").task_id == renewals  # never the agent-only one
    with unit(app) as s:
        listed = [r.task_id for r in list_calls(s, at=TEST_NOW, agent="ana")]
    assert mine not in listed
    # The account manager's task is also on the team's list, until someone claims it.
    assert listed == ([managed] if got_own.task_id == mine else [])


def test_paused_and_cancelled_runs_are_never_served(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    w.task(w.member())
    other = make_run(app, w.program_id, campaign_source("other-calls"), status="cancelled")
    w.task(w.member(), run_id=other)
    with unit(app) as s:
        pause_run(s, w.run_id, at=TEST_NOW)
    assert claim(app, "ana") is None


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ({"consent": "opted_out"}, "opted_out"),
        ({"consent": None}, "no_consent"),
        ({"phone": None}, "no_address"),
    ],
)
def test_claim_time_gate_closes_refused_tasks(app: App, member: dict, reason: str) -> None:  # type: ignore[type-arg]
    w = make_world(app)
    w.agent("ana")
    refused = w.task(w.member(points_balance=10**6, **member))
    good = w.task(w.member())
    got = claim(app, "ana")
    assert got is not None and got.task_id == good
    assert (refused, reason) in got.closed_on_the_way
    row = task_row(app, refused)
    assert row.status == "closed" and row.close_reason == f"not callable: {reason}"


def test_do_not_call_suppression_is_rechecked_at_claim(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    pid = w.member(phone="+12025550199")
    t = w.task(pid)
    with unit(app) as s:
        add_suppression(s, "+12025550199", "call", "do_not_call", "test", at=TEST_NOW)
    assert claim(app, "ana") is None
    assert task_row(app, t).close_reason == "not callable: suppressed"


def test_calling_window_in_recipient_zone(app: App) -> None:
    # 15:00 UTC is 10:00 in New York but 07:00 in Los Angeles (before 08:00) and 00:00 in Tokyo.
    w = make_world(app)
    w.agent("ana")
    la = w.task(w.member(timezone="America/Los_Angeles", points_balance=10**6))
    ny = w.task(w.member(timezone="America/New_York"))
    got = claim(app, "ana")
    assert got is not None and got.task_id == ny
    with unit(app) as s:
        rows = {r.task_id: r for r in list_calls(s, at=TEST_NOW, agent="ana")}
    assert rows[la].callable_at == TEST_NOW + timedelta(hours=1)  # 08:00 in Los Angeles
    assert task_row(app, la).status == "open"


def test_campaign_call_window_narrows_the_legal_window(app: App) -> None:
    w = make_world(app, call_window={"start": "11:00", "end": "19:00", "days": ["mon", "tue"]})
    w.agent("ana")
    t = w.task(w.member())
    assert claim(app, "ana") is None  # 10:00 in New York: the campaign window opens at 11:00
    got = claim(app, "ana", at=TEST_NOW + timedelta(hours=1))
    assert got is not None and got.task_id == t


def test_abandoned_claim_comes_back_after_its_lease(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    w.agent("ben")
    t = w.task(w.member())
    first = claim(app, "ana", lease=timedelta(minutes=10))
    assert first is not None and first.task_id == t
    assert claim(app, "ben", at=TEST_NOW + timedelta(minutes=5)) is None
    again = claim(app, "ben", at=TEST_NOW + timedelta(minutes=11))
    assert again is not None and again.task_id == t and not again.resumed
    assert task_row(app, t).claimed_by == "ben"


def test_two_agents_claiming_concurrently_never_get_the_same_task(app: App) -> None:
    w = make_world(app)
    agents = [w.agent(f"agent{i}") for i in range(4)]
    tasks = {w.task(w.member(points_balance=i)) for i in range(24)}
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(agents))

    def work(login: str) -> None:
        try:
            barrier.wait()
            for step in range(10):
                with unit(app) as s:
                    c = claim_next(
                        s, login, at=TEST_NOW + timedelta(minutes=step), lease=timedelta(hours=2)
                    )
                    # release at once so the same agent can claim again
                    if c is not None:
                        row = s.get(CallTask, c.task_id)
                        assert row is not None
                        row.status = "closed"
                if c is None:
                    return
                with lock:
                    got.append(c.task_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(got) == len(set(got)) == len(tasks)
    assert set(got) == tasks


def test_claims_follow_the_listed_order_across_campaigns_and_kinds(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    other = make_run(
        app,
        w.program_id,
        campaign_source(
            "expiring-calls",
            step={
                "priority": [
                    {"field": "points_expire_at", "order": "asc"},
                    {"field": "last_name", "order": "desc"},
                ]
            },
        ),
    )
    from datetime import date

    for i in range(6):
        w.task(w.member(points_balance=(i * 37) % 11, last_name=f"N{i % 3}"))
        w.task(
            w.member(
                points_expire_at=date(2026, 4, 1 + i % 3) if i % 2 else None, last_name=f"L{i}"
            ),
            run_id=other,
        )
    w.task(w.member(timezone="America/Los_Angeles"))  # not callable yet
    w.task(w.member(), kind="callback", step_id=None, source_step_id="call-1")

    def callable_list() -> list[int]:
        with unit(app) as s:
            return [r.task_id for r in list_calls(s, at=TEST_NOW, agent="ana") if r.callable_now]

    # Each claim takes the head of the list as it stands then (closing a task re-ranks its
    # campaign, so the order is checked claim by claim, not against the first listing).
    first_listing = callable_list()
    claimed: list[int] = []
    while True:
        listed = callable_list()
        with unit(app) as s:
            c = claim_next(s, "ana", at=TEST_NOW)
            if c is None:
                assert listed == []
                break
            row = s.get(CallTask, c.task_id)
            assert row is not None
            row.status = "closed"
        assert c.task_id == listed[0]
        claimed.append(c.task_id)
    assert sorted(claimed) == sorted(first_listing) and len(claimed) == 13
    assert claimed[0] == first_listing[0]  # the callback comes first

    def in_run(run_id: int) -> list[int]:
        with unit(app) as s:
            return [t for t in claimed if s.get(CallTask, t).run_id == run_id]  # type: ignore[union-attr]

    # Within each campaign the claims follow that campaign's priority exactly.
    for run_id in (w.run_id, other):
        assert in_run(run_id) == [t for t in first_listing if t in set(in_run(run_id))]


def test_the_recheck_looks_up_a_number_changed_since_the_task_was_listed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The re-check reads the suppressions of the listed number's hash in its own statement;
    # a number changed in between (here, to an erased one) is looked up on its own.
    from sqlalchemy import update

    from engine.calls import tasks
    from engine.db.tables.members import participants

    w = make_world(app)
    w.agent("ana")
    member = w.member(phone="+13125550111")
    task = w.task(member)
    with unit(app) as s:
        add_suppression(s, "+13125550122", "call", "erasure", "test", at=TEST_NOW)
    recheck = tasks.candidates

    def number_changed_first(session, **kw):  # type: ignore[no-untyped-def]
        session.execute(
            update(participants).where(participants.c.id == member).values(phone="+13125550122")
        )
        return recheck(session, **kw)

    monkeypatch.setattr(tasks, "candidates", number_changed_first)
    assert claim(app, "ana") is None
    row = task_row(app, task)
    assert row.status == "closed" and row.close_reason == "not callable: suppressed"

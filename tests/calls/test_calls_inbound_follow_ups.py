"""Follow-up tasks made by inbound SMS replies go through the same claim-time checks as every
other call task: the webhook makes them even for a member whose calls are suppressed or who
withdrew call consent, and such a task must never be served."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from calls_helpers import TEST_NOW, World, make_world, task_row, unit

from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.tasks import claim_next
from engine.consent.suppressions import add_suppression
from engine.db.models import CallTask, CampaignRun
from engine.webhooks.inbound_sms import handle_inbound

PHONE = "+12025550177"


def reply(app: App, sid: str, phone: str = PHONE) -> int:
    with unit(app) as s:
        result = handle_inbound(
            s,
            {"MessageSid": sid, "From": phone, "Body": "Can you call me about my points?"},
            at=TEST_NOW - timedelta(minutes=5),
        )
    assert result.kind == "reply" and result.follow_up_task_id is not None
    return result.follow_up_task_id


def suppress(reason: str, channel: str = "call") -> Callable[[App], None]:
    def apply(app: App) -> None:
        with unit(app) as s:
            add_suppression(s, PHONE, channel, reason, "test", at=TEST_NOW)

    return apply


def nothing(app: App) -> None:
    return None


@pytest.mark.parametrize(
    ("member", "after_reply", "reason"),
    [
        ({}, suppress("do_not_call"), "suppressed"),
        ({}, suppress("invalid"), "suppressed"),
        ({}, suppress("opt_out", "all"), "suppressed"),
        ({}, suppress("erasure"), "suppressed"),  # only the number's hash is kept
        ({"consent": "opted_out"}, nothing, "opted_out"),
        ({"consent": None}, nothing, "no_consent"),
    ],
)
def test_a_reply_follow_up_that_is_not_callable_is_never_served(
    app: App,
    member: dict,
    after_reply: Callable[[App], None],
    reason: str,  # type: ignore[type-arg]
) -> None:
    w = make_world(app)
    w.agent("ana")
    w.member(phone=PHONE, **member)
    task = reply(app, "SM-refused")
    assert task_row(app, task).kind == "follow_up"
    after_reply(app)
    with unit(app) as s:
        got = claim_next(s, "ana", at=TEST_NOW)
    assert got is None
    row = task_row(app, task)
    assert row.status == "closed" and row.close_reason == f"not callable: {reason}"
    with unit(app) as s:
        assert [t.task_id for t in list_calls(s, at=TEST_NOW, agent="ana")] == []


def test_a_callable_reply_follow_up_is_served_first(app: App) -> None:
    w: World = make_world(app)
    w.agent("ana")
    campaign_task = w.task(w.member(points_balance=10**6))
    w.member(phone=PHONE)
    follow_up = reply(app, "SM-ok")
    with unit(app) as s:
        got = claim_next(s, "ana", at=TEST_NOW)
    assert got is not None and got.task_id == follow_up  # follow-ups before campaign calls
    assert task_row(app, campaign_task).status == "open"


def test_a_reply_follow_up_waits_for_the_members_calling_window(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    w.member(phone=PHONE, timezone="Asia/Tokyo")  # 00:00 in Tokyo at TEST_NOW
    task = reply(app, "SM-night")
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW) is None
    assert task_row(app, task).status == "open"
    with unit(app) as s:
        got = claim_next(s, "ana", at=TEST_NOW + timedelta(hours=8))  # 08:00 in Tokyo
    assert got is not None and got.task_id == task


@pytest.mark.parametrize("status", ["completed", "paused"])
def test_a_reply_is_answered_after_its_run_completed_or_paused(app: App, status: str) -> None:
    w = make_world(app)
    w.agent("ana")
    w.member(phone=PHONE)
    campaign_task = w.task(w.member())
    task = reply(app, "SM-late")
    with unit(app) as s:  # as the webhook ties it when the member answered that run's SMS
        row = s.get(CallTask, task)
        assert row is not None
        row.run_id, row.campaign = w.run_id, "renew-calls"
    with unit(app) as s:
        run = s.get(CampaignRun, w.run_id)
        assert run is not None
        run.status = status
    with unit(app) as s:
        got = claim_next(s, "ana", at=TEST_NOW)
    assert got is not None and got.task_id == task
    assert task_row(app, campaign_task).status == "open"  # the run's own calls are not served
    with unit(app) as s:
        listed = [t.task_id for t in list_calls(s, at=TEST_NOW, agent="ana")]
    assert campaign_task not in listed

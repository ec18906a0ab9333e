"""One bad event never costs the good ones (issue #15), on SQLite and PostgreSQL.

A validly signed SendGrid batch with one event holding a lone surrogate or a number of
thousands of digits used to get a 500 (503 on PostgreSQL) on every retry, so the valid
unsubscribe beside it was never applied. Now each event is checked on its own: a bad one is
kept in rejected_webhook_events with the reason, the good ones are applied, the answer is 2xx.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from webhook_helpers import Hooks, World

from engine.db.models import ActivityEvent, RejectedWebhookEvent

STAMP = 1767225600  # 2026-01-01


def _batch(*events: str) -> bytes:
    return ("[" + ",".join(events) + "]").encode()


def _rejected(world: World) -> list[tuple[str, str, Any]]:
    with world.app.sessions() as session:
        rows = session.scalars(select(RejectedWebhookEvent).order_by(RejectedWebhookEvent.id))
        return [(r.source, r.reason, json.loads(r.payload)) for r in rows]


BAD_SENDGRID = [
    ('{"event": "delivered", "sg_event_id": "b1\\ud800"}', "sg_event_id: contains text"),
    ('{"event": "bounce", "sg_event_id": "b2", "reason": "x\\ud800"}', "reason: contains text"),
    ('{"event": "deli\\udfffvered", "sg_event_id": "b3"}', "event: contains text"),
    ('{"event": "open", "sg_event_id": "b4", "attempt": ' + "9" * 4300 + "}", "4300 digits"),
    ('{"event": "open", "sg_event_id": "b5", "timestamp": ' + "7" * 5000 + "}", "5000 digits"),
    ('{"event": "click", "sg_event_id": "b6", "x": {"y": ["\\udc80"]}}', "x.y[0]: contains"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_SENDGRID)
def test_a_bad_sendgrid_event_is_set_aside_and_the_unsubscribe_beside_it_applied(
    world: World, hooks: Hooks, bad: str, reason: str
) -> None:
    member = world.participant()
    good = json.dumps(
        {"event": "unsubscribe", "email": member.email, "sg_event_id": "ok-1", "timestamp": STAMP}
    )
    response = hooks.sendgrid(_batch(bad, good))
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["received"], summary["applied"], summary["rejected"]) == (2, 1, 1)
    assert ("email", member.email.lower(), "opt_out", "sendgrid_unsubscribe") in (
        world.suppressions()
    )
    [(source, why, payload)] = _rejected(world)
    assert source == "sendgrid" and reason in why, why
    assert payload["sg_event_id"].startswith("b")

    # SendGrid would not retry a 2xx; a replay anyway changes nothing and adds nothing.
    again = hooks.sendgrid(_batch(bad, good))
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert len(_rejected(world)) == 1


def test_a_batch_of_only_bad_events_is_still_a_2xx(world: World, hooks: Hooks) -> None:
    response = hooks.sendgrid(_batch(*(bad for bad, _ in BAD_SENDGRID)))
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == len(BAD_SENDGRID)
    assert len(_rejected(world)) == len(BAD_SENDGRID)
    assert world.events() == []


def test_a_body_that_is_not_json_is_still_a_400(world: World, hooks: Hooks) -> None:
    assert hooks.sendgrid(b"[{").status_code == 400
    assert _rejected(world) == []


def test_bad_activity_events_are_kept_with_the_reason_and_the_good_ones_stored(
    world: World, hooks: Hooks
) -> None:
    member = world.participant()
    good = {
        "external_id": member.external_id,
        "type": "login",
        "occurred_at": "2026-01-01T00:00:00Z",
        "reference": "good-1",
    }
    body = _batch(
        '{"external_id": "x\\ud800", "type": "login", "occurred_at": "2026-01-01"}',
        '{"external_id": "x", "type": "login", "occurred_at": "2026-01-01", "points": '
        + "9" * 4301
        + "}",
        '{"external_id": "x", "type": "login", "occurred_at": "2026-01-01", "points": "'
        + "9" * 4301
        + '"}',
        json.dumps(good),
    )
    response = hooks.activity(body)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["accepted"] == 1
    reasons = {r["index"]: r["reasons"] for r in receipt["rejected"]}
    assert "external_id: contains text that is not valid Unicode" in reasons[0][0]
    assert reasons[1] == ["points: contains a number of 4301 digits"]
    assert reasons[2][0].startswith("points: 99999999999999999999 is too large")
    with world.app.sessions() as session:
        assert session.scalars(select(ActivityEvent.reference)).all() == ["good-1"]
    kept = _rejected(world)
    assert [source for source, _, _ in kept] == ["events"] * 3


def test_odd_twilio_parameters_never_cost_the_callback(world: World, hooks: Hooks) -> None:
    """Twilio sends one event per request: NULs, a huge error code, an over-long sid are
    still answered 2xx and never stop the status from being applied."""
    member = world.participant(phone="+12025550143")
    sms = world.message(member, channel="sms", provider_message_id="SM" + "1" * 32)
    response = hooks.status(
        sms.uid,
        {
            "MessageSid": "SM" + "1" * 32,
            "MessageStatus": "undelivered",
            "ErrorCode": "9" * 5000,
            "ErrorMessage": "bad\x00news",
            "To": "+12025550143",
        },
    )
    assert response.status_code == 200, response.text
    assert world.outbox(sms).status == "failed"
    inbound = hooks.inbound(
        {"MessageSid": "SM" + "2" * 32, "From": "+12025550143", "Body": "STOP\x00" + "9" * 5000}
    )
    assert inbound.status_code == 200, inbound.text


def test_rejected_events_are_listed_by_the_cli(
    world: World, hooks: Hooks, webhook_settings: Any
) -> None:
    from click.testing import CliRunner

    from cli import cli

    assert hooks.sendgrid(_batch(BAD_SENDGRID[0][0])).status_code == 200
    result = CliRunner().invoke(
        cli,
        ["--database-url", webhook_settings.database_url, "events", "rejected", "--json"],
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["source"] == "sendgrid" and "sg_event_id: contains text" in row["reason"]
    assert "\\ud800" in row["payload"]
    result = CliRunner().invoke(
        cli, ["--database-url", webhook_settings.database_url, "events", "rejected"]
    )
    assert result.exit_code == 0 and "sendgrid" in result.output

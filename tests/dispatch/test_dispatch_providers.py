"""dispatch() against the fake SendGrid and Twilio servers: the whole error table.

Every request body is validated by the fakes against the providers' OpenAPI contracts; the
assertions are on what the server received and what the database holds afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.app import App
from engine.channels.base import Channel
from engine.channels.sendgrid import SendGridChannel
from engine.channels.twilio import TwilioChannel
from engine.db.models import CampaignRun, OutboxMessage, Participant, Suppression
from engine.sending.circuits import Circuit, open_circuits
from engine.sending.dispatch import dispatch
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import (
    FrozenClock,
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)

SENDER = "+12025550100"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        dispatch_max_attempts=3,
        dispatch_pause_after_failures=3,
        dispatch_email_rate=1000,
        dispatch_sms_rate=1000,
    )


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def channels(
    sendgrid: FakeSendGrid, twilio: FakeTwilio, clock: FrozenClock
) -> Iterator[dict[str, Channel]]:
    built: dict[str, Channel] = {
        "email": SendGridChannel(sendgrid.api_key, host=sendgrid.url, clock=clock, read_timeout=1),
        "sms": TwilioChannel(
            twilio.account_sid,
            twilio.auth_token,
            from_number=SENDER,
            base_url=twilio.url,
            clock=clock,
            read_timeout=1,
        ),
    }
    yield built
    for channel in built.values():
        channel.close()


def _queue(app: App, n: int, channel: str = "email", **kw: Any) -> list[OutboxMessage]:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = session.scalar(select(CampaignRun)) or make_run(session, program, at=now)
        messages = []
        for _ in range(n):
            member = make_participant(session, program, at=now, timezone="America/Chicago")
            make_consent(session, member, channel=channel, status="opted_in", at=now)
            messages.append(
                make_outbox_message(session, run, member, at=now, channel=channel, **kw)
            )
        return messages


def _rows(app: App) -> dict[str, OutboxMessage]:
    with app.sessions() as session:
        return {m.uid: m for m in session.scalars(select(OutboxMessage))}


def _twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": "", "status": status}


def test_email_and_sms_reach_the_providers_with_our_ids(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> None:
    emails = _queue(app, 2)
    texts = _queue(app, 2, "sms")

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 4
    assert all(not r.contract_errors and r.answered == 202 for r in sendgrid.requests)
    assert all(not r.contract_errors and r.answered == 201 for r in twilio.requests)
    received = {
        r.json["personalizations"][0]["custom_args"]["message_id"]: r for r in sendgrid.requests
    }
    assert set(received) == {m.uid for m in emails}
    callbacks = {r.form["StatusCallback"][0] for r in twilio.requests if r.form}
    assert callbacks == {f"http://127.0.0.1:8000/webhooks/twilio/status?m={m.uid}" for m in texts}
    rows = _rows(app)
    for message in emails:
        answer = received[message.uid].answer_headers["X-Message-Id"]
        assert rows[message.uid].provider_message_id == answer
        assert rows[message.uid].provider == "sendgrid"
    for message in texts:
        assert rows[message.uid].provider == "twilio"
        assert (rows[message.uid].provider_message_id or "").startswith("SM")


def _circuits(app: App) -> list[Circuit]:
    with app.sessions() as session:
        return open_circuits(session)


def test_429_with_retry_after_waits_for_the_provider_and_spends_no_attempt(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    messages = _queue(app, 3)
    sendgrid.script(
        "/v3/mail/send", Canned.json(429, {"errors": [{"message": "slow down"}]}, Retry_After="600")
    )

    summary = dispatch(app, channels, worker="w")

    assert summary.retried == 1 and summary.released == 2 and summary.sent == 0
    assert len(sendgrid.requests) == 1  # the rest of the batch was not hammered
    rows = _rows(app)
    first = rows[messages[0].uid]
    assert first.status == "queued" and first.attempts == 0 and "429" in (first.last_error or "")
    assert first.not_before >= clock.now() + timedelta(seconds=600)
    for message in messages[1:]:
        assert rows[message.uid].attempts == 0
        assert rows[message.uid].not_before == first.not_before
    [circuit] = summary.waiting_for
    assert (circuit.channel, circuit.provider, circuit.opened_at) == (
        "email",
        "sendgrid",
        clock.now(),
    )
    assert circuit.retry_at >= clock.now() + timedelta(seconds=600)

    clock.advance(timedelta(hours=1))
    again = dispatch(app, channels, worker="w")
    assert again.sent == 3 and again.waiting_for == []
    assert len(sendgrid.requests) == 4
    assert _circuits(app) == []


def test_an_outage_spends_no_message_attempts_and_the_channel_waits_for_the_provider(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    # #16: the provider answers 503 for about 15 minutes. Before, the first message of each
    # batch spent its every attempt and ended `failed too_many_attempts` without ever going.
    messages = _queue(app, 20)
    start = clock.now()
    sendgrid.outage(Canned.json(503, {"errors": []}))
    waits = []
    for probe in range(4):
        summary = dispatch(app, channels, worker="w")
        [circuit] = summary.waiting_for
        assert circuit.opened_at == start and summary.sent == 0 and summary.failed == 0
        assert circuit.failures == probe + 1
        waits.append(circuit.retry_at - clock.now())
        # While it waits nothing is claimed, nothing is asked of the provider.
        before = len(sendgrid.requests)
        idle = dispatch(app, channels, worker="w")
        assert idle.claimed == 0 and len(sendgrid.requests) == before
        assert idle.waiting_for == [circuit]
        if probe == 0:
            # The requests already in flight when the first 503 came back, at most.
            first = before
            assert 1 <= first <= app.settings.dispatch_max_in_flight
        clock.advance(circuit.retry_at - clock.now())
    # Each failed probe doubles the wait (dispatch_retry_delay = 1 min): 1 + 2 + 4 + 8 min.
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert len(sendgrid.requests) == first + 3  # then one probe each time, no more
    sendgrid.outage(None)
    # (The messages whose own request failed go a retry delay after the others, so that a
    # probe is another message: see tests/dispatch/test_dispatch_poison.py.)
    clock.advance(app.settings.dispatch_retry_delay)

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 20 and summary.failed == 0 and summary.waiting_for == []
    rows = _rows(app)
    assert {rows[m.uid].status for m in messages} == {"sent"}
    assert {rows[m.uid].attempts for m in messages} == {1}  # the one that went
    with app.sessions() as session:
        run = session.scalars(select(CampaignRun)).one()
    assert run.status == "active"  # an outage is the circuit's to wait out, not a pause
    assert _circuits(app) == []


def test_connect_error_opens_the_circuit_without_spending_an_attempt(
    app: App, clock: FrozenClock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = SendGridChannel("SG.x", host=f"http://127.0.0.1:{port}", clock=clock)
    [message] = _queue(app, 1)
    summary = dispatch(app, {"email": channel}, worker="w")
    row = _rows(app)[message.uid]
    assert summary.retried == 1 and row.status == "queued" and row.attempts == 0
    assert row.status_reason == "provider_unavailable"
    assert "could not connect" in (row.last_error or "")
    [circuit] = summary.waiting_for
    assert "could not connect" in (circuit.last_error or "")
    assert "waiting for sendgrid since" in circuit.describe()


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_pause_the_run(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, status: int
) -> None:
    messages = _queue(app, 3)
    sendgrid.script("/v3/mail/send", Canned.json(status, {"errors": [{"message": "denied"}]}))

    summary = dispatch(app, channels, worker="w")

    assert len(sendgrid.requests) == 1
    assert summary.sent == 0 and len(summary.paused_runs) == 1
    with app.sessions() as session:
        run = session.scalars(select(CampaignRun)).one()
    assert run.status == "paused" and f"({status})" in (run.status_reason or "")
    rows = _rows(app)
    assert {rows[m.uid].status for m in messages} == {"queued"}
    assert {rows[m.uid].attempts for m in messages} == {0}


@pytest.mark.parametrize(
    ("code", "reason"),
    [(21610, "opt_out"), (21211, "invalid"), (21614, "invalid")],
)
def test_twilio_recipient_errors_fail_and_suppress(
    app: App, channels: dict[str, Channel], twilio: FakeTwilio, code: int, reason: str
) -> None:
    bad, good = _queue(app, 2, "sms")
    twilio.script(twilio.messages_path(), Canned.json(400, _twilio_error(400, code, "no")))

    summary = dispatch(app, channels, worker="w")

    assert summary.failed == 1 and summary.sent == 1
    rows = _rows(app)
    assert rows[bad.uid].status == "failed" and rows[bad.uid].status_reason == f"recipient_{code}"
    assert rows[good.uid].status == "sent"
    with app.sessions() as session:
        phone = session.scalar(
            select(Participant.phone).where(Participant.id == bad.participant_id)
        )
        entry = session.scalars(select(Suppression)).one()
    assert (entry.channel, entry.address, entry.reason, entry.source) == (
        "sms",
        phone,
        reason,
        "provider",
    )


def test_sendgrid_400_for_an_address_fails_it_and_marks_it_invalid(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid
) -> None:
    [message] = _queue(app, 1)
    sendgrid.script(
        "/v3/mail/send",
        Canned.json(
            400,
            {"errors": [{"field": "personalizations.0.to.0.email", "message": "invalid email"}]},
        ),
    )
    summary = dispatch(app, channels, worker="w")
    assert summary.failed == 1
    assert _rows(app)[message.uid].status_reason == "recipient_400"
    with app.sessions() as session:
        entry = session.scalars(select(Suppression)).one()
    assert (entry.channel, entry.reason, entry.source) == ("email", "invalid", "provider")


def test_timeout_after_sending_is_unknown_and_never_resent(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    slow, fine = _queue(app, 2)
    sendgrid.script("/v3/mail/send", Canned.slow(5))

    summary = dispatch(app, channels, worker="w")

    assert summary.unknown == 1 and summary.sent == 1
    rows = _rows(app)
    assert rows[slow.uid].status == "unknown" and rows[slow.uid].status_reason == "no_answer"
    assert rows[fine.uid].status == "sent"
    clock.advance(timedelta(days=1))
    assert dispatch(app, channels, worker="w").claimed == 0
    assert len(sendgrid.requests) == 2


def _not_found() -> Canned:
    # A 404: no outage, no refusal of the message: the provider itself misbehaves.
    return Canned.json(404, {"errors": [{"message": "no such resource"}]})


def test_consecutive_provider_failures_pause_the_run(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    _queue(app, 5)
    sendgrid.script("/v3/mail/send", *(_not_found() for _ in range(2)))
    # dispatch_pause_after_failures = 3; the streak carries over from one dispatch to the next.
    assert dispatch(app, channels, worker="w", max_messages=2).paused_runs == []
    sendgrid.script("/v3/mail/send", _not_found())
    third = dispatch(app, channels, worker="w")
    assert len(third.paused_runs) == 1
    with app.sessions() as session:
        run = session.scalars(select(CampaignRun)).one()
    assert run.status == "paused" and "3 consecutive provider failures" in (run.status_reason or "")
    assert len(sendgrid.requests) == 3


def test_a_success_ends_the_failure_streak(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    _queue(app, 3)
    sendgrid.script("/v3/mail/send", _not_found(), _not_found())
    assert dispatch(app, channels, worker="w").sent == 1  # the third one went
    _queue(app, 2)
    sendgrid.script("/v3/mail/send", _not_found(), _not_found())
    assert dispatch(app, channels, worker="w").paused_runs == []


def test_refusals_of_the_recipient_or_the_message_never_pause_the_run(
    app: App, channels: dict[str, Channel], twilio: FakeTwilio, sendgrid: FakeSendGrid
) -> None:
    # Twilio 21211/21614/21610 (recipient), 21617 (body too long) and a SendGrid 400 about
    # the content: the provider works; only the message or its recipient is refused.
    texts = _queue(app, 5, "sms")
    emails = _queue(app, 2)
    twilio.script(
        twilio.messages_path(),
        *(
            Canned.json(400, _twilio_error(400, code, "no"))
            for code in (21211, 21614, 21610, 21617, 21617)
        ),
    )
    sendgrid.script(
        "/v3/mail/send",
        *(
            Canned.json(400, {"errors": [{"field": "content", "message": "bad html"}]})
            for _ in emails
        ),
    )

    summary = dispatch(app, channels, worker="w")

    assert summary.failed == 7 and summary.paused_runs == []
    with app.sessions() as session:
        run = session.scalars(select(CampaignRun)).one()
    assert run.status == "active"
    rows = _rows(app)
    reasons = sorted(rows[m.uid].status_reason or "" for m in texts + emails)
    assert reasons.count("message_refused") == 4
    assert {r for r in reasons if r.startswith("recipient_")} == {
        "recipient_21211",
        "recipient_21614",
        "recipient_21610",
    }
    assert summary.waiting_for == []


def test_dynamic_templates_go_in_one_batch_request(
    app: App, channels: dict[str, Channel], sendgrid: FakeSendGrid
) -> None:
    content = {
        "template_id": "d-" + "a" * 32,
        "dynamic_template_data": {"points": 1200},
        "headers": {"List-Unsubscribe": "<https://example.com/u/1>"},
    }
    messages = _queue(app, 5, content=content)

    summary = dispatch(app, channels, worker="w")

    assert summary.sent == 5
    [request] = sendgrid.requests
    assert not request.contract_errors and request.json["template_id"] == content["template_id"]
    ids = [p["custom_args"]["message_id"] for p in request.json["personalizations"]]
    assert sorted(ids) == sorted(m.uid for m in messages)

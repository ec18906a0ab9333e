"""GET /metrics of a served app (uvicorn on a real port) on SQLite and PostgreSQL, after real
work: ticks that dispatch to the contract-validating fake SendGrid and Twilio (sends, a 401
that auto-pauses a run, a 503 that opens a circuit) and Twilio status callbacks over HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import METRICS_TOKEN, request, scrape, value
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from engine.app import App, build_app
from engine.channels.base import Channel
from engine.channels.sendgrid import SendGridChannel
from engine.channels.twilio import TwilioChannel
from engine.clock import FrozenClock
from engine.db.models import CallTask, OutboxMessage
from engine.logs import JsonFormatter
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import make_consent, make_outbox_message, make_participant, make_program
from engine.testing.fakes import make_run as _make_run
from engine.tick import tick

PUBLIC_URL = "https://hooks.example.org"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
SENDER = "+12025550100"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "campaigns").mkdir()
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        campaigns_dir=tmp_path / "campaigns",
        templates_dir=tmp_path / "templates",
        public_url=PUBLIC_URL,
        twilio_auth_token=TWILIO_TOKEN,
        metrics_token=METRICS_TOKEN,
        dispatch_email_rate=1000,
        dispatch_sms_rate=1000,
    )


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSendGrid, FakeTwilio]]:
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        yield sendgrid, twilio


@pytest.fixture
def channels(
    fakes: tuple[FakeSendGrid, FakeTwilio], clock: FrozenClock
) -> Iterator[dict[str, Channel]]:
    sendgrid, twilio = fakes
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


def _queue(app: App, n: int, channel: str, campaign: str) -> list[OutboxMessage]:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now)
        run = _make_run(session, program, at=now, campaign=campaign)
        out = []
        for _ in range(n):
            member = make_participant(session, program, at=now, timezone="America/Chicago")
            make_consent(session, member, channel=channel, status="opted_in", at=now)
            out.append(make_outbox_message(session, run, member, at=now, channel=channel))
        return out


def _status_callback(port: int, uid: str, form: dict[str, str], *, signed: bool = True) -> int:
    path = f"/webhooks/twilio/status?m={uid}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = signature
    body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    return request(port, "POST", path, body, headers)[0]


def test_metrics_after_a_day_of_real_work(
    app: App,
    clock: FrozenClock,
    channels: dict[str, Channel],
    fakes: tuple[FakeSendGrid, FakeTwilio],
    served: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.sending")
    sendgrid, _twilio = fakes
    refused_campaign = _queue(app, 2, "email", "refused-by-sendgrid")
    texts = _queue(app, 2, "sms", "texts")
    with app.sessions() as session, session.begin():
        member = make_participant(session, make_program(session, at=clock.now()), at=clock.now())
        for team, status in (("renewals", "open"), ("renewals", "open"), (None, "claimed")):
            session.add(
                CallTask(
                    participant_id=member.id,
                    team=team,
                    status=status,
                    due_at=clock.now(),
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )

    # Tick 1: SendGrid refuses the campaign (401: the run is paused); both texts go.
    sendgrid.script("/v3/mail/send", Canned.json(401, {"errors": [{"message": "bad key"}]}))
    first = tick(app, channels=channels, budget_seconds=30)
    assert first.sent == 2 and first.dispatch.paused_runs == [refused_campaign[0].run_id]
    # Its log line, as --log-format json writes it, carries the run's id as a field.
    paused = [r for r in caplog.records if "paused" in r.getMessage()]
    assert json.loads(JsonFormatter().format(paused[0]))["run_id"] == refused_campaign[0].run_id

    # Tick 2, a minute later: a new email meets a SendGrid outage (503: its circuit opens).
    clock.advance(timedelta(minutes=1))
    outage = _queue(app, 1, "email", "during-the-outage")
    sendgrid.script("/v3/mail/send", Canned.json(503, {"errors": [{"message": "down"}]}))
    second = tick(app, channels=channels, budget_seconds=30)
    assert second.sent == 0 and second.dispatch.waiting_for

    # Twilio says one text was delivered; a callback without a signature is refused.
    with app.sessions() as session:
        sids = dict(
            session.execute(
                select(OutboxMessage.uid, OutboxMessage.provider_message_id).where(
                    OutboxMessage.channel == "sms"
                )
            ).all()
        )
    delivered = {"MessageSid": str(sids[texts[0].uid]), "MessageStatus": "delivered"}
    assert _status_callback(served, texts[0].uid, delivered) == 200
    assert _status_callback(served, texts[1].uid, delivered, signed=False) == 403

    clock.advance(timedelta(minutes=10))
    with app.sessions() as session:
        retry_at = session.scalars(
            select(OutboxMessage.not_before).where(OutboxMessage.uid == outage[0].uid)
        ).one()
    samples = scrape(served)
    now = clock.now()

    def current(name: str, **labels: str) -> float | None:
        return value(samples, name, **labels)

    assert current("campaign_database_up") == 1
    # Counted by the dispatcher, the tick and the webhooks, saved, read back by the scrape.
    assert current("campaign_messages_sent_total", channel="sms") == 2
    assert current("campaign_messages_sent_total", channel="email") is None
    assert current("campaign_provider_errors_total", channel="email", error_class="campaign") == 1
    assert current("campaign_provider_errors_total", channel="email", error_class="retryable") == 1
    assert current("campaign_runs_auto_paused_total", by="dispatcher") == 1
    assert current("campaign_tick_duration_seconds_count") == 2
    assert 0 < (current("campaign_tick_duration_seconds_sum") or 0) < 60
    assert current("campaign_advance_duration_seconds_count") == 2
    webhook = "campaign_webhook_requests_total"
    assert current(webhook, endpoint="twilio_status", outcome="accepted") == 1
    assert current(webhook, endpoint="twilio_status", outcome="refused") == 1
    # The state, read at scrape time.
    assert current("campaign_outbox_messages", channel="sms", status="delivered") == 1
    assert current("campaign_outbox_messages", channel="sms", status="sent") == 1
    assert current("campaign_outbox_messages", channel="email", status="queued") == 3
    assert current("campaign_outbox_due_messages") == 3  # the paused run's two and the outage's
    # The paused run's emails wait for it, not for a dispatcher: only the outage's counts.
    expected_age = (now - retry_at.replace(tzinfo=now.tzinfo)).total_seconds()
    assert current("campaign_outbox_oldest_due_age_seconds") == expected_age > 0
    assert current("campaign_runs", status="paused") == 1
    assert current("campaign_runs", status="active") == 2
    assert current("campaign_call_tasks_open", team="renewals", status="open") == 2
    assert current("campaign_call_tasks_open", team="", status="claimed") == 1
    assert current("campaign_provider_circuits_open", channel="email", provider="sendgrid") == 1
    circuit = {"channel": "email", "provider": "sendgrid"}
    assert current("campaign_provider_circuit_open_seconds", **circuit) == 10 * 60
    assert current("campaign_heartbeat_age_seconds", process="dispatcher") == 10 * 60
    assert current("campaign_heartbeat_age_seconds", process="tick") == 10 * 60

    # Counts add up across processes and scrapes: another app (another process) ticks; its
    # probe finds SendGrid back, sends the email and closes the circuit. Nothing is counted
    # twice.
    other = build_app(app.settings, clock=clock)
    try:
        assert tick(other, channels=channels, budget_seconds=30).sent == 1
    finally:
        other.close()
    again = scrape(served)
    assert value(again, "campaign_tick_duration_seconds_count") == 3
    assert value(again, "campaign_messages_sent_total", channel="email") == 1
    assert value(again, "campaign_messages_sent_total", channel="sms") == 2
    assert value(again, webhook, endpoint="twilio_status", outcome="accepted") == 1
    assert value(again, "campaign_outbox_oldest_due_age_seconds") == 0
    assert not any(name == "campaign_provider_circuits_open" for name, _ in again)
    assert value(again, "campaign_heartbeat_age_seconds", process="dispatcher") == 0


def test_metrics_ask_for_the_token_when_one_is_set(served: int) -> None:
    status, _ = request(served, "GET", "/metrics")
    assert status == 403
    status, _ = request(served, "GET", "/metrics", headers={"Authorization": "Bearer wrong"})
    assert status == 403


def test_a_database_that_cannot_be_read_is_a_zero_not_an_error(
    app: App, monkeypatch: pytest.MonkeyPatch, served: int
) -> None:
    from sqlalchemy.exc import OperationalError

    def broken(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(app.engine, "connect", broken)
    monkeypatch.setattr(app.engine, "begin", broken)
    samples = scrape(served)
    assert value(samples, "campaign_database_up") == 0
    assert not any(name.startswith("campaign_outbox") for name, _ in samples)


def test_runs_table_counts_every_status(app: App, clock: FrozenClock, served: int) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=clock.now())
        for status in ("completed", "completed", "cancelled"):
            _make_run(session, program, at=clock.now(), status=status)
    samples = scrape(served)
    assert value(samples, "campaign_runs", status="completed") == 2
    assert value(samples, "campaign_runs", status="cancelled") == 1
    assert value(samples, "campaign_runs", status="active") == 0

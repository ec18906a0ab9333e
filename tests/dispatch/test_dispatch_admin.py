"""Outbox admin (list / unknown / resolve), the SQLite dispatcher lock, lease expiry, and the
dispatch / outbox / send-test commands end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from dispatch_helpers import queue_email_messages
from sqlalchemy import select
from sqlalchemy.pool import NullPool

from cli import cli
from engine.app import App, build_app
from engine.consent.suppressions import add_suppression
from engine.db.models import OutboxMessage, Program
from engine.db.session import make_engine
from engine.errors import InputError, NotFoundError
from engine.sending.dispatch import DispatcherBusyError, dispatch, dispatch_lock
from engine.sending.outbox import list_messages, resolve, unknown_messages
from engine.sending.shared_ratelimit import SharedTokenBucket
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import (
    FrozenClock,
    RecordingChannel,
    make_participant,
    make_program,
)

ROOT = Path(__file__).resolve().parents[2]


def _status(app: App, message_id: int) -> OutboxMessage:
    with app.sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return row


def cli_run(app: App, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        env={
            "CAMPAIGN_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
            "CAMPAIGN_TEMPLATES_DIR": str(ROOT / "templates"),
            "CAMPAIGN_OUTBOX_DIR": str(app.settings.outbox_dir),
            **(env or {}),
        },
    )
    return result.exit_code, result.output


def test_expired_lease_becomes_unknown_and_is_never_resent(app: App, clock: FrozenClock) -> None:
    stuck, fresh = queue_email_messages(app, 2, status="sending")
    with app.sessions() as session, session.begin():
        for message_id, until in ((stuck.id, -1), (fresh.id, 5)):
            row = session.get(OutboxMessage, message_id)
            assert row is not None
            row.claimed_by = "dead-worker"
            row.claimed_until = clock.now() + timedelta(minutes=until)
    channel = RecordingChannel("email", clock=clock)

    summary = dispatch(app, {"email": channel}, worker="w")

    assert summary.expired_leases == 1 and channel.attempts == []
    assert _status(app, stuck.id).status == "unknown"
    assert _status(app, fresh.id).status == "sending"  # its dispatcher may still be at it
    with app.sessions() as session:
        [listed] = unknown_messages(session)
    assert listed.id == stuck.id and listed.claimed_by == "dead-worker"


def test_resolve_settles_unknown_messages_and_refuses_the_rest(
    app: App, clock: FrozenClock
) -> None:
    went, lost, gave_up, queued = queue_email_messages(app, 4, status="unknown")
    with app.sessions() as session, session.begin():
        row = session.get(OutboxMessage, queued.id)
        assert row is not None
        row.status = "queued"
    with app.sessions() as session, session.begin():
        assert resolve(session, str(went.id), "sent", at=clock.now()).after == "sent"
        assert (
            resolve(session, lost.uid, "resend", at=clock.now(), note="checked").after == "queued"
        )
        assert resolve(session, str(gave_up.id), "failed", at=clock.now()).after == "failed"
    assert _status(app, went.id).sent_at == clock.now()
    assert _status(app, lost.id).status_reason == "resolved by hand: checked"
    with app.sessions() as session, session.begin():
        with pytest.raises(InputError, match="is queued; it cannot be marked failed"):
            resolve(session, str(queued.id), "failed", at=clock.now())
        with pytest.raises(InputError, match="is sent; it cannot be marked queued"):
            resolve(session, str(went.id), "resend", at=clock.now())
        with pytest.raises(NotFoundError, match="no outbox message '999'"):
            resolve(session, "999", "sent", at=clock.now())
    # The resent one goes out again (with the one that was queued anyway); the rest stay.
    channel = RecordingChannel("email", clock=clock)
    assert dispatch(app, {"email": channel}, worker="w").sent == 2
    assert sorted(channel.sent_ids) == sorted([lost.uid, queued.uid])


def test_resolve_refuses_a_message_being_sent(app: App, clock: FrozenClock) -> None:
    [busy] = queue_email_messages(app, 1, status="sending")
    with app.sessions() as session, session.begin():
        row = session.get(OutboxMessage, busy.id)
        assert row is not None
        row.claimed_by, row.claimed_until = "w9", clock.now() + timedelta(minutes=5)
    with (
        app.sessions() as session,
        session.begin(),
        pytest.raises(InputError, match="being sent by w9"),
    ):
        resolve(session, str(busy.id), "resend", at=clock.now())


def test_list_filters_and_names_bad_filters(app: App, clock: FrozenClock) -> None:
    first, second = queue_email_messages(app, 2)
    with app.sessions() as session:
        assert {m.id for m in list_messages(session, status="queued")} == {first.id, second.id}
        assert list_messages(session, status="sent") == []
        assert {m.id for m in list_messages(session, run_id=first.run_id)} == {first.id, second.id}
        with pytest.raises(InputError, match="status 'nope'"):
            list_messages(session, status="nope")
        with pytest.raises(NotFoundError, match="no campaign run 404"):
            list_messages(session, run_id=404)


def test_a_second_sqlite_dispatcher_refuses(app: App, clock: FrozenClock) -> None:
    if not app.settings.is_sqlite:
        # PostgreSQL dispatchers share the queue: the lock is a no-op there.
        with dispatch_lock(app.settings.database_url), dispatch_lock(app.settings.database_url):
            return
    queue_email_messages(app, 1)
    with dispatch_lock(app.settings.database_url):
        with pytest.raises(DispatcherBusyError, match=r"another dispatcher \(pid \d+\)"):
            dispatch(app, {"email": RecordingChannel("email")}, worker="second")
        code, output = cli_run(app, "dispatch", "--drain")
        assert code == 1 and "another dispatcher (pid" in output
    # Released: the next one runs.
    assert dispatch(app, {"email": RecordingChannel("email")}, worker="third").sent == 1


def test_dispatch_command_sends_to_the_file_sink(app: App) -> None:
    messages = queue_email_messages(app, 3)
    code, output = cli_run(app, "dispatch", "--drain", "--json")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["sent"] == 3 and summary["stopped_by"] == "drained"
    files = sorted(p.name for p in Path(app.settings.outbox_dir).rglob("*.eml"))
    assert len(files) == 3 and all(any(m.uid in f for m in messages) for f in files)

    code, output = cli_run(app, "outbox", "list", "--status", "sent", "--json")
    assert code == 0 and {m["uid"] for m in json.loads(output)} == {m.uid for m in messages}
    code, output = cli_run(app, "outbox", "unknown")
    assert code == 0 and "no message of unknown fate" in output


def test_outbox_commands(app: App) -> None:
    [message] = queue_email_messages(app, 1, status="unknown")
    code, output = cli_run(app, "outbox", "unknown", "--json")
    assert code == 0 and [m["id"] for m in json.loads(output)] == [message.id]
    code, output = cli_run(app, "outbox", "resolve", str(message.id))
    assert code == 2 and "--sent, --resend or --failed" in output
    code, output = cli_run(app, "outbox", "resolve", str(message.id), "--sent", "--note", "seen")
    assert code == 0 and "unknown -> sent" in output
    code, output = cli_run(app, "outbox", "resolve", str(message.id), "--resend")
    assert code == 1 and "is sent; it cannot be marked queued" in output
    assert "Traceback" not in output
    code, output = cli_run(app, "outbox", "list", "--status", "bogus")
    assert code == 2


# --------------------------------------------------------------------------- send-test


@pytest.fixture
def providers() -> Iterator[tuple[FakeSendGrid, FakeTwilio]]:
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        yield sendgrid, twilio


def _provider_env(sendgrid: FakeSendGrid, twilio: FakeTwilio) -> dict[str, str]:
    return {
        "SENDGRID_API_KEY": sendgrid.api_key,
        "CAMPAIGN_SENDGRID_HOST": sendgrid.url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "CAMPAIGN_TWILIO_BASE_URL": twilio.url,
        "CAMPAIGN_SMS_FROM": "+12025550100",
    }


def test_send_test_sends_one_real_message_per_channel(
    app: App, providers: tuple[FakeSendGrid, FakeTwilio]
) -> None:
    sendgrid, twilio = providers
    env = _provider_env(sendgrid, twilio)

    code, output = cli_run(
        app,
        "send-test",
        "winback-inactive",
        "email-1",
        "--to",
        "Me@Example.com",
        "--json",
        env=env,
    )
    assert code == 0, output
    result = json.loads(output)
    [request] = sendgrid.requests
    assert not request.contract_errors and request.answered == 202
    assert request.json["subject"].startswith("[TEST] ")
    assert request.json["personalizations"][0]["to"] == [{"email": "me@example.com"}]
    assert result["provider"] == "sendgrid" and result["subject"].startswith("[TEST] ")

    code, output = cli_run(
        app, "send-test", "winback-inactive", "sms-1", "--to", "+12025550199", env=env
    )
    assert code == 0, output
    [sms] = twilio.requests
    assert sms.form is not None and not sms.contract_errors
    assert sms.form["To"] == ["+12025550199"] and sms.form["Body"][0].startswith("[TEST] ")
    assert "via twilio" in output

    # Not an outbox message of any run.
    with app.sessions() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_send_test_for_a_participant_and_its_refusals(
    app: App, providers: tuple[FakeSendGrid, FakeTwilio], clock: FrozenClock
) -> None:
    sendgrid, twilio = providers
    env = _provider_env(sendgrid, twilio)
    with app.sessions() as session, session.begin():
        program = make_program(session, at=clock.now(), key="demo", name="Demo Rewards")
        make_participant(
            session, program, at=clock.now(), external_id="M1", locale="es", first_name="Lucía"
        )
        add_suppression(session, "blocked@example.com", "email", "opt_out", "test", at=clock.now())
    assert isinstance(program, Program)

    code, output = cli_run(
        app,
        "send-test",
        "winback-inactive",
        "email-1",
        "--to",
        "qa@example.com",
        "--participant",
        "M1",
        "--json",
        env=env,
    )
    assert code == 0, output
    [request] = sendgrid.requests
    assert not request.contract_errors
    assert "Lucía" in json.dumps(request.json, ensure_ascii=False)

    for args, message in (
        (("email-1", "--to", "blocked@example.com"), "is suppressed on email"),
        (("email-1", "--to", "+12025550199"), "is not an email address"),
        (("sms-1", "--to", "qa@example.com"), "is not a phone number"),
        (("call-1", "--to", "+12025550199"), "is a call step"),
        (("nope", "--to", "qa@example.com"), "has no step 'nope'"),
        (("email-1", "--to", "qa@example.com", "--participant", "M404"), "no participant"),
    ):
        code, output = cli_run(app, "send-test", "winback-inactive", *args, env=env)
        assert code == 1 and message in output, output
        assert "Traceback" not in output
    assert len(sendgrid.requests) == 1 and twilio.requests == []


# The sender's rate limit, shared with the dispatchers on PostgreSQL: the fake Twilio's
# sender, at the default 1 SMS/s.
SMS_KEY = "sms:twilio:+12025550100"


@pytest.fixture
def pg_app(postgres_url: str, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    application = build_app(
        Settings(database_url=postgres_url, outbox_dir=tmp_path / "outbox"), clock=clock
    )
    yield application
    application.close()


@pytest.fixture
def dispatcher_limit(postgres_url: str) -> Iterator[SharedTokenBucket]:
    """What a running dispatcher paces this sender's SMS with (on a connection of its own)."""
    engine = make_engine(postgres_url, poolclass=NullPool)
    limit = SharedTokenBucket(engine, SMS_KEY, 1.0)
    yield limit
    limit.close()
    engine.dispose()


def _send_test_sms(
    app: App, providers: tuple[FakeSendGrid, FakeTwilio], *extra: str
) -> tuple[int, str]:
    """`campaign send-test` of an SMS step, from the fake Twilio's sender at 1 SMS/s."""
    env = {**_provider_env(*providers), "CAMPAIGN_DISPATCH_SMS_RATE": "1"}
    return cli_run(
        app, "send-test", "winback-inactive", "sms-1", "--to", "+12025550199", *extra, env=env
    )


@pytest.mark.postgres
def test_send_test_waits_for_its_slot_behind_a_running_dispatcher(
    pg_app: App,
    providers: tuple[FakeSendGrid, FakeTwilio],
    dispatcher_limit: SharedTokenBucket,
) -> None:
    twilio = providers[1]
    # The dispatcher has the sender's next three seconds: its SMS now, in 1 s and in 2 s.
    last = dispatcher_limit.reserve(3)
    code, output = _send_test_sms(pg_app, providers, "--json")
    assert code == 0, output
    [sms] = twilio.requests
    # Not before the slot after the dispatcher's (the timeline maps onto this clock to
    # within half a round trip to the database).
    assert sms.received_at >= last + 1.0 - 0.05, sms.received_at - last
    assert json.loads(output)["waited"] > 0.5


@pytest.mark.postgres
def test_send_test_gives_up_on_a_slot_too_far_ahead(
    pg_app: App,
    providers: tuple[FakeSendGrid, FakeTwilio],
    dispatcher_limit: SharedTokenBucket,
) -> None:
    twilio = providers[1]
    dispatcher_limit.reserve(30)  # the dispatcher holds the next 30 s of the sender's rate
    for max_wait, shown in (((), "5"), (("--max-wait", "0.5"), "0.5")):
        started = time.monotonic()
        code, output = _send_test_sms(pg_app, providers, *max_wait)
        assert time.monotonic() - started < 5  # refused at once, not after waiting
        assert code == 1, output
        assert f"the rate limit of {SMS_KEY} (1/s) has no slot within {shown} s" in output
        assert "Traceback" not in output
    assert twilio.requests == []

"""`campaign outbox reconcile` (#16) against the contract-validating fakes on both databases:
messages left unknown by a request whose answer never came are settled as sent when the
provider's own log has them (SendGrid's Email Activity by our message id; Twilio's Messages
list by number, text and time), and the others stay unknown, counted by why."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dispatch_helpers import queue_messages
from sqlalchemy import func, select

from cli import cli
from engine.app import App
from engine.channels.sendgrid import SendGridChannel
from engine.channels.twilio import TwilioChannel
from engine.db.models import Contact, OutboxMessage
from engine.sending.dispatch import dispatch
from engine.sending.reconcile import reconcile
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import FrozenClock

WAIT_SECONDS = 30.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # One request at a time, in queue order: each message meets the canned answer scripted for
    # it. With requests in flight together they reach the fake in any order, and the message
    # that met the slow answer was not always the one the test names "late".
    return Settings(
        database_url=database_url, outbox_dir=tmp_path / "outbox", dispatch_max_in_flight=1
    )


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the fake never took the late request"
        time.sleep(0.01)


def _messages(app: App) -> dict[str, OutboxMessage]:
    with app.sessions() as session:
        return {m.uid: m for m in session.scalars(select(OutboxMessage))}


def _contacts(app: App) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Contact)) or 0)


def test_reconcile_settles_the_emails_sendgrid_took_and_leaves_the_rest_unknown(
    app: App, clock: FrozenClock
) -> None:
    late, lost, fine = (m.uid for m in queue_messages(app, 3, channel="email"))
    with FakeSendGrid() as server:
        # The first answer comes after the client gave up (it took it); the second request
        # is dropped unanswered (it never took it); the third is answered.
        server.script("/v3/mail/send", Canned.slow(1.0), Canned.hang_up_now())
        channel = SendGridChannel(server.api_key, host=server.url, clock=clock, read_timeout=0.3)
        try:
            summary = dispatch(app, {"email": channel}, worker="w")
            assert summary.unknown == 2 and summary.sent == 1
            _wait_for(lambda: len(server.activity) == 2)
            contacts = _contacts(app)

            dry = reconcile(app, {"email": channel}, dry_run=True)
            assert (dry.checked, dry.settled, dry.left) == (2, 1, {"not_found": 1})
            assert {m.status for m in _messages(app).values()} == {"unknown", "sent"}

            done = reconcile(app, {"email": channel})
            again = reconcile(app, {"email": channel})
        finally:
            channel.close()
        queries = [r for r in server.requests if r.method == "GET"]
    rows = _messages(app)

    assert (done.checked, done.settled, done.left) == (2, 1, {"not_found": 1})
    assert rows[late].status == "sent" and rows[late].provider == "sendgrid"
    [took] = [e for e in server.activity if e["unique_args"]["message_id"] == late]
    assert took["msg_id"].startswith(rows[late].provider_message_id or "?")
    assert "reconciled" in (rows[late].status_reason or "")
    assert rows[lost].status == "unknown" and rows[fine].status == "sent"
    assert _contacts(app) == contacts + 1  # the settled one joins the ledger, once
    assert (again.checked, again.settled) == (1, 0)  # only the one still unknown is asked
    assert all("unique_args['message_id']=" in r.form["query"][0] for r in queries)  # type: ignore[index]


def test_reconcile_settles_an_sms_twilio_took_by_number_text_and_time(
    app: App, clock: FrozenClock
) -> None:
    late, lost = (m.uid for m in queue_messages(app, 2, channel="sms", timezone="America/Chicago"))
    with FakeTwilio(clock=clock) as server:
        path = server.messages_path()
        server.script(path, Canned.slow(1.0), Canned.hang_up_now())
        channel = TwilioChannel(
            server.account_sid,
            server.auth_token,
            from_number="+12025550100",
            base_url=server.url,
            clock=clock,
            read_timeout=0.3,
        )
        try:
            summary = dispatch(app, {"sms": channel}, worker="w")
            assert summary.unknown == 2
            _wait_for(lambda: len(server.created) == 1)
            done = reconcile(app, {"sms": channel})
        finally:
            channel.close()
        lists = [r for r in server.requests if r.method == "GET"]
    rows = _messages(app)

    assert (done.checked, done.settled, done.left) == (2, 1, {"not_found": 1})
    assert rows[late].status == "sent"
    assert rows[late].provider_message_id == server.created[0]["sid"]
    assert rows[lost].status == "unknown"
    # Asked by number and time, with the contract's parameter names.
    assert {tuple(sorted(r.form or {})) for r in lists} == {("DateSent>", "PageSize", "To")}


def test_cli_reconcile_without_credentials_says_there_is_nothing_to_ask(
    app: App, tmp_path: Path
) -> None:
    [message] = queue_messages(app, 1, channel="email")
    with app.sessions() as session, session.begin():
        row = session.get(OutboxMessage, message.id)
        assert row is not None
        row.status = "unknown"
    runner = CliRunner()
    base = ["--database-url", app.settings.database_url, "outbox", "reconcile"]
    result = runner.invoke(cli, [*base, "--json"], env={"CAMPAIGN_OUTBOX_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["checked"], summary["settled"], summary["left"]) == (
        1,
        0,
        {"no_provider": 1},
    )
    text = runner.invoke(cli, base, env={"CAMPAIGN_OUTBOX_DIR": str(tmp_path)})
    assert text.exit_code == 0 and "no provider credentials" in text.output
    missing = runner.invoke(cli, [*base, "--run", "999"])
    assert missing.exit_code != 0 and "run 999" in missing.output

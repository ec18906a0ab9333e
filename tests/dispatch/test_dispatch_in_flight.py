"""dispatch() against a provider that answers slowly: several requests in flight per worker
(engine/sending/in_flight.py), each message still sent once and every outcome recorded.

The fake SendGrid answers after a delay; the assertions are on what it received (which
connections, overlapping or not) and what the database holds, never on how long it took. (That
a fast provider gets one request at a time is tested in test_in_flight.py with a fake timer:
here a busy machine can make any answer slow.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_helpers import queue_emails
from sqlalchemy import select

from engine.app import App
from engine.channels.sendgrid import SendGridChannel
from engine.db.models import OutboxMessage
from engine.sending import outbox_status as st
from engine.sending.dispatch import dispatch
from engine.sending.in_flight import FAST_ANSWER
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned, RecordedRequest
from engine.testing.fakes import (
    FrozenClock,
)

DELAY = FAST_ANSWER * 50  # 0.1 s: a provider across a network
LIMIT = 4


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        dispatch_email_rate=1000,
        dispatch_max_in_flight=LIMIT,
    )


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def channel(sendgrid: FakeSendGrid, clock: FrozenClock) -> Iterator[SendGridChannel]:
    built = SendGridChannel(sendgrid.api_key, host=sendgrid.url, clock=clock, read_timeout=5)
    yield built
    built.close()


def _uid(request: RecordedRequest) -> str:
    return str(request.json["personalizations"][0]["custom_args"]["message_id"])


def _statuses(app: App) -> dict[str, OutboxMessage]:
    with app.sessions() as session:
        return {m.uid: m for m in session.scalars(select(OutboxMessage))}


def _overlapping(requests: list[RecordedRequest]) -> int:
    """The most requests that arrived within one answer delay of each other: 1 when each
    waited for the answer to the one before."""
    times = sorted(r.received_at for r in requests)
    most, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= DELAY * 0.9:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_slow_provider_gets_several_requests_at_once_each_message_once(
    app: App, channel: SendGridChannel, sendgrid: FakeSendGrid
) -> None:
    uids = queue_emails(app, 16)
    sendgrid.script("/v3/mail/send", *(Canned.slow(DELAY) for _ in uids))

    summary = dispatch(app, {"email": channel}, worker="w")

    assert summary.sent == 16
    received = [_uid(r) for r in sendgrid.requests]
    assert sorted(received) == sorted(uids)  # each message exactly once
    assert all(r.answered == 202 and not r.contract_errors for r in sendgrid.requests)
    assert LIMIT >= summary.peak_in_flight > 1
    assert LIMIT >= _overlapping(sendgrid.requests) > 1
    assert len({r.peer for r in sendgrid.requests}) > 1  # a keep-alive connection each
    rows = _statuses(app)
    for request in sendgrid.requests:
        row = rows[_uid(request)]
        assert row.status == st.SENT
        assert row.provider_message_id == request.answer_headers["X-Message-Id"]


def test_a_429_among_requests_in_flight_holds_back_the_rest_of_the_batch(
    app: App, channel: SendGridChannel, sendgrid: FakeSendGrid, clock: FrozenClock
) -> None:
    uids = queue_emails(app, 16)
    sendgrid.script(
        "/v3/mail/send",
        Canned.slow(DELAY),  # shows the provider slow: the next ones go several at a time
        Canned.json(429, {"errors": [{"message": "slow down"}]}, Retry_After="600"),
        *(Canned.slow(DELAY) for _ in uids),
    )

    summary = dispatch(app, {"email": channel}, worker="w")

    rows = _statuses(app)
    requested = [_uid(r) for r in sendgrid.requests]
    throttled = [_uid(r) for r in sendgrid.requests if r.answered == 429]
    assert len(throttled) == 1 and len(requested) == len(set(requested))
    sent = {uid for uid, row in rows.items() if row.status == st.SENT}
    # What was answered 202 is recorded sent; nothing unanswered was requested.
    assert sent == {_uid(r) for r in sendgrid.requests if r.answered == 202}
    assert summary.sent == len(sent) and summary.unknown == 0
    held = [row for uid, row in rows.items() if uid not in sent]
    assert len(held) == 16 - len(sent) >= 1
    for row in held:  # the throttled one and the rest: queued, after the Retry-After
        assert row.status == st.QUEUED
        assert row.not_before is not None and row.not_before >= clock.now().replace(
            tzinfo=row.not_before.tzinfo
        )


def test_stopping_lets_the_requests_in_flight_finish_and_records_them(
    app: App, channel: SendGridChannel, sendgrid: FakeSendGrid
) -> None:
    uids = queue_emails(app, 16)
    sendgrid.script("/v3/mail/send", *(Canned.slow(DELAY) for _ in uids))
    stop = threading.Event()

    def stop_after_two_requests() -> None:
        while len(sendgrid.requests) < 2 and not stop.wait(0.005):
            pass
        stop.set()

    stopper = threading.Thread(target=stop_after_two_requests)
    stopper.start()
    summary = dispatch(app, {"email": channel}, worker="w", stop=stop)
    stopper.join()

    rows = _statuses(app)
    requested = {_uid(r) for r in sendgrid.requests}
    assert len(requested) == len(sendgrid.requests) < 16
    assert all(r.answered == 202 for r in sendgrid.requests)  # none cut off
    for uid, row in rows.items():
        assert row.status == (st.SENT if uid in requested else st.QUEUED), uid
    assert summary.sent == len(requested) and summary.unknown == 0

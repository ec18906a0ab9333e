"""The frequency cap holds when several workers, or several dispatchers, send at once.

Two messages for one participant from two campaigns, a global cap of 1 contact per 7 days:
however the claims fall (two worker threads, two dispatchers, or one batch), one goes and
the other waits for the cap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.app import App, build_app
from engine.channels.base import Outbound, SendResult
from engine.db.models import Contact, OutboxMessage, Participant, Program
from engine.sending.dispatch import dispatch
from engine.settings import Settings
from engine.testing.fakes import (
    FrozenClock,
    RecordingChannel,
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)

# Long enough for a second worker to claim, gate and reach send() on a busy 2-core machine.
RENDEZVOUS_SECONDS = 3.0


class RendezvousChannel(RecordingChannel):
    """Holds each of the first two sends until the other one arrives (or a timeout): if two
    workers can both have a message to the same person in flight, this makes them overlap
    every time instead of by luck."""

    def __init__(self, clock: FrozenClock) -> None:
        super().__init__("email", clock=clock)
        self._arrivals = 0
        self._both = threading.Event()
        self._count_lock = threading.Lock()

    def send(self, message: Outbound) -> SendResult:
        with self._count_lock:
            self._arrivals += 1
            if self._arrivals >= 2:
                self._both.set()
        self._both.wait(RENDEZVOUS_SECONDS)
        return super().send(message)


@pytest.fixture
def capped_settings(database_url: str, tmp_path: Path) -> Settings:
    # One message per claim, so that each worker claims one of the two messages.
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        frequency_cap_max=1,
        dispatch_batch_size=1,
    )


@pytest.fixture
def capped_app(capped_settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build_app(capped_settings, clock=clock)
    yield application
    application.close()


def _two_campaigns_one_member(app: App) -> tuple[Participant, list[OutboxMessage]]:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program: Program = make_program(session, at=now)
        member = make_participant(session, program, at=now, timezone="America/New_York")
        make_consent(session, member, channel="email", status="opted_in", at=now)
        messages = [
            make_outbox_message(
                session, make_run(session, program, at=now, campaign=name), member, at=now
            )
            for name in ("spring-promo", "points-reminder")
        ]
    return member, messages


def _contacts(app: App, participant_id: int) -> int:
    with app.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Contact)
                .where(Contact.participant_id == participant_id)
            )
            or 0
        )


def _statuses(app: App) -> list[tuple[str, str | None]]:
    with app.sessions() as session:
        return sorted(
            (status, reason)
            for status, reason in session.execute(
                select(OutboxMessage.status, OutboxMessage.status_reason)
            ).all()
        )


def _assert_one_sent_one_waiting(app: App, channel: RecordingChannel, member: Participant) -> None:
    assert len(channel.sent) == 1, f"cap of 1 per 7 days exceeded: {len(channel.sent)} sent"
    assert _contacts(app, member.id) == 1
    assert _statuses(app) == [("queued", "waiting: frequency_cap"), ("sent", None)]


def test_two_workers_of_one_dispatcher_respect_the_cap(capped_app: App, clock: FrozenClock) -> None:
    member, _ = _two_campaigns_one_member(capped_app)
    channel = RendezvousChannel(clock)

    summary = dispatch(capped_app, {"email": channel}, worker="w", workers=2)

    assert summary.sent == 1 and summary.waiting == 1
    _assert_one_sent_one_waiting(capped_app, channel, member)


def test_one_batch_with_two_messages_for_one_member_respects_the_cap(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = Settings(
        database_url=database_url, outbox_dir=tmp_path / "outbox", frequency_cap_max=1
    )
    app = build_app(settings, clock=clock)
    try:
        member, _ = _two_campaigns_one_member(app)
        channel = RecordingChannel("email", clock=clock)

        summary = dispatch(app, {"email": channel}, worker="w")

        assert summary.claimed == 2 and summary.sent == 1 and summary.waiting == 1
        _assert_one_sent_one_waiting(app, channel, member)
    finally:
        app.close()


@pytest.mark.postgres
def test_two_dispatchers_on_postgresql_respect_the_cap(
    postgres_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = Settings(
        database_url=postgres_url,
        outbox_dir=tmp_path / "outbox",
        frequency_cap_max=1,
        dispatch_batch_size=1,
    )
    apps = [build_app(settings, clock=clock) for _ in range(2)]
    try:
        member, _ = _two_campaigns_one_member(apps[0])
        channel = RendezvousChannel(clock)
        sent: list[int] = []
        errors: list[BaseException] = []

        def run(app: App, name: str) -> None:
            try:
                sent.append(dispatch(app, {"email": channel}, worker=name).sent)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(app, f"dispatcher-{i}"))
            for i, app in enumerate(apps)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sum(sent) == 1
        _assert_one_sent_one_waiting(apps[0], channel, member)
    finally:
        for app in apps:
            app.close()


@pytest.mark.postgres
def test_concurrent_claims_on_postgresql_never_exceed_the_cap(
    postgres_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    """Many people with a message from each of two campaigns, two dispatchers of two workers
    claiming one message at a time: claims race each other constantly. Without claims taking
    turns, about a third of the people got both messages (measured before the claim lock)."""
    settings = Settings(
        database_url=postgres_url,
        outbox_dir=tmp_path / "outbox",
        frequency_cap_max=1,
        dispatch_batch_size=1,
    )
    apps = [build_app(settings, clock=clock) for _ in range(2)]
    try:
        now = clock.now()
        with apps[0].sessions() as session, session.begin():
            program = make_program(session, at=now)
            runs = [make_run(session, program, at=now, campaign=name) for name in ("a", "b")]
            for _ in range(100):
                member = make_participant(session, program, at=now, timezone="America/New_York")
                make_consent(session, member, channel="email", status="opted_in", at=now)
                for run in runs:
                    make_outbox_message(session, run, member, at=now)
        channel = RecordingChannel("email", clock=clock)
        errors: list[BaseException] = []

        def run(app: App, name: str) -> None:
            try:
                dispatch(app, {"email": channel}, worker=name, workers=2)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(app, f"dispatcher-{i}"))
            for i, app in enumerate(apps)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with apps[0].sessions() as session:
            per_person = Counter(session.scalars(select(Contact.participant_id)))
        assert len(channel.sent) == 100
        assert set(per_person.values()) == {1} and len(per_person) == 100
    finally:
        for app in apps:
            app.close()

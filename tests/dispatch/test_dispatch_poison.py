"""A poison message (#16): the provider fails on one message alone, again and again, while the
other messages of its sender go. Provider errors spend no attempt (an outage is the circuit's
to wait out), so without a rule it would open the circuit on every try, forever. Each time
another message closes the circuit it opened, it is counted one attempt; after
``CAMPAIGN_DISPATCH_MAX_ATTEMPTS`` it ends ``failed`` (``too_many_attempts``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dispatch_helpers import queue_email_messages
from sqlalchemy import select

from engine.app import build_app
from engine.channels.base import RetryableError
from engine.db.models import OutboxMessage
from engine.sending.circuits import open_circuits
from engine.sending.dispatch import dispatch
from engine.settings import Settings
from engine.testing.fakes import FrozenClock, RecordingChannel


def test_a_message_the_provider_always_fails_on_ends_failed_and_the_rest_goes(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = Settings(
        database_url=database_url, outbox_dir=tmp_path / "outbox", dispatch_max_attempts=3
    )
    app = build_app(settings, clock=clock)
    try:
        [poison] = [m.uid for m in queue_email_messages(app, 1)]
        channel = RecordingChannel("email", clock=clock)
        channel.fail_for(poison, RetryableError("sendgrid answered 503", status=503))
        others: list[str] = []
        rounds = []
        for _ in range(12):
            others += [m.uid for m in queue_email_messages(app, 3)]  # the steady flow
            dispatch(app, {"email": channel}, worker="w")
            with app.sessions() as session:
                status, attempts = session.execute(
                    select(OutboxMessage.status, OutboxMessage.attempts).where(
                        OutboxMessage.uid == poison
                    )
                ).one()
                circuits = open_circuits(session)
            rounds.append((status, attempts, len(circuits)))
            if status == "failed":
                break
            # Past the circuit's wait: the next probe, another message (the failed one waits
            # a retry delay more); else past that delay: the failed one's next try.
            wait = max((c.retry_at for c in circuits), default=clock.now() + timedelta(minutes=2))
            clock.advance(wait - clock.now())
        tries = sum(1 for m in channel.attempts if m.message_id == poison)
        with app.sessions() as session:
            statuses = dict(session.execute(select(OutboxMessage.uid, OutboxMessage.status)).all())
            reason = session.scalar(
                select(OutboxMessage.status_reason).where(OutboxMessage.uid == poison)
            )
            left_open = open_circuits(session)
    finally:
        app.close()

    # Failed on its third try, each one followed by others going (the probes that closed
    # the circuit it had opened); never counted for the outage it seemed to be at first.
    assert statuses[poison] == "failed" and reason == "too_many_attempts", rounds
    assert tries == 3, rounds
    # Each try opened the circuit (the channel waited); another message closed it and the
    # poison one was counted: 0, 1, 2, then failed at 3.
    assert [(a, n) for _, a, n in rounds] == [(0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    assert {uid: statuses[uid] for uid in others} == {uid: "sent" for uid in others}
    assert left_open == []

"""tick(): launch what is due, match conversions, advance, dispatch to the file sink; two at
once never double-send; on SQLite a busy dispatcher only skips the sending part."""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from seq_helpers import DAY, TEST_NOW, enrollments, messages, unit
from sqlalchemy import insert

from engine import sampling
from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Participant, Program
from engine.sending.dispatch import dispatch_lock
from engine.settings import Settings
from engine.testing.fakes import PROGRAM_SENDER
from engine.tick import TickSummary, tick

N = 30

CAMPAIGN = {
    "name": "tick-test",
    "program": "loyalty",
    "audience": {"field": "status", "eq": "active"},
    "holdout_percent": 0,
    "goal": {"events": ["redemption"], "window": "30d"},
    # A one-off launch that has come by TEST_NOW.
    "schedule": {"start": "2026-03-01T09:00:00-05:00"},
    "steps": [
        {"id": "email-1", "channel": "email", "template": "points_expiring"},
        {
            "id": "email-2",
            "channel": "email",
            "template": "points_expiring",
            "delay": "2d",
            "condition": "not_converted",
        },
    ],
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    (campaigns / "tick-test.yaml").write_text(yaml.safe_dump(CAMPAIGN, sort_keys=False))
    # A broken file must not stop the others from launching.
    (campaigns / "broken.yaml").write_text("name: broken\naudience: [\n")
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        campaigns_dir=campaigns,
        **PROGRAM_SENDER,
    )


@pytest.fixture
def members(app: App, program: Program) -> list[int]:
    with unit(app) as s:
        s.execute(
            insert(Participant),
            [
                {
                    "program_id": program.id,
                    "external_id": f"T{i:03d}",
                    "email": f"t{i}@example.com",
                    "status": "active",
                    "points_balance": 0,
                    "points_expiring": i,
                    "attributes": {},
                    "sample_key": sampling.sample_key(program.key, f"T{i:03d}"),
                    "created_at": TEST_NOW,
                    "updated_at": TEST_NOW,
                }
                for i in range(N)
            ],
        )
    with unit(app) as s:
        return [p.id for p in s.query(Participant).order_by(Participant.id)]


def _sink(settings: Settings) -> list[email.message.Message]:
    folder = settings.outbox_dir
    if not folder.exists():
        return []
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def test_tick_launches_advances_and_sends_to_the_file_sink(
    app: App, settings: Settings, clock: FrozenClock, program: Program, members: list[int]
) -> None:
    first = tick(app, budget_seconds=30)
    assert [(item.campaign, item.enrolled) for item in first.launched] == [("tick-test", N)]
    assert any("broken.yaml" in error for error in first.definition_errors)
    assert first.advance is not None and first.advance.messages == {"email": N}
    assert first.dispatch_skipped is None and first.sent == N
    sent = _sink(settings)
    assert sorted(m["To"] for m in sent) == sorted(f"t{i}@example.com" for i in range(N))
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in sent)
    assert {m.status for m in messages(app)} == {"sent"}
    assert "sent 30" in first.message

    # The same instant again: nothing new to launch, make or send.
    again = tick(app, budget_seconds=30)
    assert again.launched == [] and again.sent == 0 and len(_sink(settings)) == N

    # Two days later, the members who redeemed meanwhile converted: no second email for them.
    with unit(app) as s:
        for pid in members[:5]:
            s.add(
                ActivityEvent(
                    program_id=program.id,
                    participant_id=pid,
                    type="redemption",
                    occurred_at=TEST_NOW + DAY,
                    reference=f"r{pid}",
                    source="test",
                    created_at=TEST_NOW + DAY,
                )
            )
    clock.advance(2 * DAY)
    later = tick(app, budget_seconds=30)
    assert later.advance is not None
    # Conversion matching ran first: the converted members are out of the sequence.
    assert later.conversions == 5
    assert later.advance.messages == {"email": N - 5} and later.sent == N - 5
    assert len(_sink(settings)) == N + later.sent
    assert {m.status for m in messages(app)} == {"sent"}


def test_a_busy_sqlite_dispatcher_only_skips_sending(
    app: App, settings: Settings, members: list[int]
) -> None:
    with dispatch_lock(settings.database_url):
        summary = tick(app, budget_seconds=30)
    assert summary.advance is not None and summary.advance.messages == {"email": N}
    if settings.is_sqlite:
        assert summary.dispatch_skipped is not None
        assert "another dispatcher" in summary.dispatch_skipped
        assert summary.sent == 0 and _sink(settings) == []
        assert "sending skipped" in summary.message
    else:  # PostgreSQL needs no lock: dispatchers share the queue
        assert summary.dispatch_skipped is None and summary.sent == N


@pytest.fixture
def second_app(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build_app(settings, clock=clock)
    yield application
    application.close()


def test_two_ticks_at_once_never_double_send(
    app: App, second_app: App, settings: Settings, members: list[int]
) -> None:
    barrier = threading.Barrier(2)
    results: list[TickSummary] = []
    errors: list[BaseException] = []

    def run(target: App) -> None:
        try:
            barrier.wait()
            results.append(tick(target, budget_seconds=60))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in (app, second_app)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(r.launched) for r in results) == 1
    assert sum(r.advance.queued for r in results if r.advance) == N
    total = sum(r.sent for r in results)
    if settings.is_sqlite and total < N:
        # One tick found the other dispatching and skipped sending, and the other finished
        # before the last of the messages were made: the next tick sends them.
        assert any(r.dispatch_skipped for r in results)
        total += tick(app, budget_seconds=60).sent
    assert total == N
    sent = _sink(settings)
    assert len(sent) == N and len({m["To"] for m in sent}) == N
    assert {m.status for m in messages(app)} == {"sent"}
    assert len(enrollments(app)) == N

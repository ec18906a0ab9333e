"""`campaign suppressions sync` against a local fake of SendGrid's suppression API, through the
official SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from webhook_helpers import FakeSuppressionApi, World

from cli import cli
from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.consent.suppression_sync import SuppressionSyncError, parse_since, sync_suppressions
from engine.consent.suppressions import add_suppression
from engine.errors import ConfigError, InputError
from engine.settings import Settings


@pytest.fixture
def fake() -> Iterator[FakeSuppressionApi]:
    with FakeSuppressionApi() as server:
        yield server


@pytest.fixture
def sync_app(
    webhook_settings: Settings, fake: FakeSuppressionApi, clock: FrozenClock
) -> Iterator[App]:
    settings = webhook_settings.model_copy(
        update={"sendgrid_api_key": fake.api_key, "sendgrid_host": fake.url}
    )
    application = build_app(settings, clock=clock)
    yield application
    application.close()


def stamp(at: datetime) -> int:
    return int(at.timestamp())


def test_sync_applies_the_three_lists_and_skips_queued_mail(
    sync_app: App, fake: FakeSuppressionApi, clock: FrozenClock
) -> None:
    world = World(sync_app)
    bounced = world.participant(email="Gone.Away@example.com")
    waiting = world.message(bounced, status="queued")
    now = stamp(clock.now())
    fake.entries["bounces"] = [
        {
            "created": now - 60,
            "email": "Gone.Away@example.com",
            "reason": "550 no such user",
            "status": "5.1.1",
        },
        {"created": now - 50, "email": "not an address", "reason": "?", "status": "?"},
    ]
    fake.entries["spam_reports"] = [{"created": now - 40, "email": "angry@example.com", "ip": "x"}]
    fake.entries["unsubscribes"] = [{"created": now - 30, "email": "bye@example.org"}]

    summary = sync_suppressions(sync_app)

    assert summary.added == 3 and summary.skipped_messages == 1
    assert summary.lists["bounces"].invalid == 1
    assert sorted(world.suppressions()) == [
        ("email", "angry@example.com", "spam_report", "sendgrid_sync"),
        ("email", "bye@example.org", "opt_out", "sendgrid_sync"),
        ("email", "gone.away@example.com", "bounce", "sendgrid_sync"),
    ]
    assert world.outbox(waiting).status == "skipped"
    # The SDK asked each list once, bounded by end_time, from the start (first sync).
    assert {name for name, _ in fake.queries} == {"bounces", "spam_reports", "unsubscribes"}
    assert all("start_time" not in q and q["end_time"] == str(now) for _, q in fake.queries)


def test_second_sync_continues_where_the_first_ended_and_keeps_reasons(
    sync_app: App, fake: FakeSuppressionApi, clock: FrozenClock
) -> None:
    world = World(sync_app)
    first_run = stamp(clock.now())
    fake.entries["unsubscribes"] = [{"created": first_run - 10, "email": "a@example.com"}]
    sync_suppressions(sync_app)
    with sync_app.sessions() as session, session.begin():
        add_suppression(session, "b@example.com", "email", "erasure", "erase", at=clock.now())
    clock.advance(timedelta(hours=1))
    fake.entries["bounces"] = [{"created": first_run + 100, "email": "b@example.com"}]
    fake.queries.clear()

    summary = sync_suppressions(sync_app)

    assert {q["start_time"] for _, q in fake.queries} == {str(first_run - 1)}
    assert summary.added == 0 and summary.lists["bounces"].already == 1
    reasons = {(s[2], s[3]) for s in world.suppressions()}
    assert reasons == {("opt_out", "sendgrid_sync"), ("erasure", "erase")}  # not rewritten


def test_sync_pages_through_long_lists(
    sync_app: App, fake: FakeSuppressionApi, clock: FrozenClock
) -> None:
    now = stamp(clock.now())
    fake.entries["bounces"] = [
        {"created": now - 1000 + i, "email": f"user{i}@example.com"} for i in range(23)
    ]
    summary = sync_suppressions(sync_app, page_size=10)
    assert summary.lists["bounces"].fetched == 23 and summary.added == 23
    offsets = [q["offset"] for name, q in fake.queries if name == "bounces"]
    assert offsets == ["0", "10", "20"]


def test_since_bounds_the_query(
    sync_app: App, fake: FakeSuppressionApi, clock: FrozenClock
) -> None:
    sync_suppressions(sync_app, since="2d")
    expected = str(stamp(clock.now() - timedelta(days=2)))
    assert {q["start_time"] for _, q in fake.queries} == {expected}


def test_parse_since() -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert parse_since("36h", now=now) == now - timedelta(hours=36)
    assert parse_since("2026-03-01", now=now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T10:00:00+01:00", now=now) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    with pytest.raises(InputError, match="--since 'last tuesday'"):
        parse_since("last tuesday", now=now)


def test_refused_key_and_unreachable_host_are_clear_errors(
    sync_app: App, fake: FakeSuppressionApi
) -> None:
    fake.api_key = "SG.another-key"
    with pytest.raises(ConfigError, match=r"refused the API key.*401"):
        sync_suppressions(sync_app)
    fake.api_key = sync_app.settings.sendgrid_api_key or ""
    fake.fail_with = 500
    with pytest.raises(SuppressionSyncError, match="answered 500"):
        sync_suppressions(sync_app)
    gone = App(
        settings=sync_app.settings.model_copy(update={"sendgrid_host": "http://127.0.0.1:9"}),
        engine=sync_app.engine,
        sessions=sync_app.sessions,
        clock=sync_app.clock,
    )
    with pytest.raises(SuppressionSyncError, match="could not be reached"):
        sync_suppressions(gone)


def test_no_api_key_is_a_config_error(wapp: App) -> None:
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        sync_suppressions(wapp)


def test_cli_sync_reports_json(
    sync_app: App, fake: FakeSuppressionApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command reads the real clock: the entry is from a minute ago in real time.
    fake.entries["unsubscribes"] = [{"created": int(time.time()) - 60, "email": "c@example.com"}]
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", sync_app.settings.database_url)
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    monkeypatch.setenv("CAMPAIGN_SENDGRID_HOST", fake.url)
    result = CliRunner().invoke(cli, ["suppressions", "sync", "--since", "1d", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["added"] == 1 and report["lists"]["unsubscribes"]["added"] == 1
    plain = CliRunner().invoke(cli, ["suppressions", "sync", "--since", "yesterday-ish"])
    assert plain.exit_code == 1 and "--since 'yesterday-ish'" in plain.output
    assert "Traceback" not in plain.output

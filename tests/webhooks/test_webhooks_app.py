"""The ASGI app's plumbing: health, database trouble, racing duplicate deliveries."""

from __future__ import annotations

import threading
from pathlib import Path

from starlette.testclient import TestClient
from webhook_helpers import Hooks, World

from engine.app import App
from engine.db.session import make_engine, make_session_factory
from engine.webhooks import sendgrid_events
from engine.webhooks.app import MAX_BODY, WebhookApp, build_asgi_app


def test_healthz(hooks: Hooks) -> None:
    response = hooks.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert hooks.client.post("/healthz").status_code == 405
    assert hooks.client.get("/nowhere").status_code == 404


def test_unreachable_database_is_a_503_not_a_500(wapp: App, hooks: Hooks, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-folder' / 'campaign.db'}")
    broken = App(
        settings=wapp.settings,
        engine=engine,
        sessions=make_session_factory(engine),
        clock=wapp.clock,
    )
    with TestClient(build_asgi_app(broken)) as client:
        assert client.get("/healthz").status_code == 503
        body = b"[]"
        headers = hooks.keys.sign(body, hooks.now_stamp())
        response = client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 503
    engine.dispose()


def test_oversized_body_is_a_413(hooks: Hooks) -> None:
    # Signed-looking requests (without the headers they are refused before the body is read).
    big = b"[" + b" " * MAX_BODY + b"]"
    headers = hooks.keys.sign(b"[]", hooks.now_stamp())
    assert hooks.client.post("/webhooks/sendgrid", content=big, headers=headers).status_code == 413
    twilio = {"X-Twilio-Signature": "c2lnbmF0dXJl"}
    response = hooks.client.post("/webhooks/twilio/inbound", content=b"x" * 70_000, headers=twilio)
    assert response.status_code == 413


def test_the_same_batch_delivered_twice_at_once_is_applied_once(world: World, wapp: App) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="race0123456789race0123")
    batch = [
        {
            "event": "delivered",
            "sg_event_id": f"race-{i}",
            "message_id": message.uid,
            "timestamp": 1772463600,
        }
        for i in range(20)
    ] + [
        {
            "event": "unsubscribe",
            "sg_event_id": "race-unsub",
            "email": member.email,
            "message_id": message.uid,
            "timestamp": 1772463600,
        }
    ]
    state = WebhookApp(wapp)
    applied: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def deliver() -> None:
        try:
            start.wait()
            summary = state.transaction(
                lambda session: sendgrid_events.apply_events(session, batch, at=wapp.clock.now())
            )
            applied.append(summary.applied)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(applied) == len(batch)  # every event applied by exactly one delivery
    assert len(world.events()) == len(batch)
    assert len(world.suppressions()) == 1
    assert world.outbox(message).status == "delivered"

"""Webhook fixtures: real keys made once per test session, the ASGI app over a real database
(SQLite and PostgreSQL), a client that signs as the providers do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from webhook_helpers import (
    EVENTS_TOKEN,
    PUBLIC_URL,
    TWILIO_TOKEN,
    Hooks,
    SendGridKeys,
    World,
    new_sendgrid_keys,
)

from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.settings import Settings
from engine.webhooks.app import build_asgi_app


@pytest.fixture(scope="session")
def sendgrid_keys() -> SendGridKeys:
    return new_sendgrid_keys()


@pytest.fixture
def webhook_settings(database_url: str, tmp_path: Path, sendgrid_keys: SendGridKeys) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        public_url=PUBLIC_URL,
        sendgrid_webhook_public_key=sendgrid_keys.public_b64,
        twilio_auth_token=TWILIO_TOKEN,
        events_webhook_token=EVENTS_TOKEN,
        secret_key="webhook-test-secret-key-0123456789",
    )


@pytest.fixture
def wapp(webhook_settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build_app(webhook_settings, clock=clock)
    yield application
    application.close()


@pytest.fixture
def hooks(wapp: App, sendgrid_keys: SendGridKeys, clock: FrozenClock) -> Iterator[Hooks]:
    with TestClient(build_asgi_app(wapp)) as client:
        yield Hooks(client, sendgrid_keys, clock)


@pytest.fixture
def world(wapp: App) -> World:
    return World(wapp)

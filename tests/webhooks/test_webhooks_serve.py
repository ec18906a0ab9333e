"""`campaign serve` for real: a uvicorn process on a free port, answering /healthz and a signed
SendGrid event batch that lands in the database; plus the command-line side of it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from webhook_helpers import PUBLIC_URL, TWILIO_TOKEN, SendGridKeys, World

from cli import cli
from engine.app import App, build_app
from engine.db.models import MessageEvent
from engine.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def server(
    webhook_settings: Settings, sendgrid_keys: SendGridKeys, tmp_path: Path
) -> Iterator[int]:
    port = _free_port()
    env = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": webhook_settings.database_url,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_keys.public_b64,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "CAMPAIGN_PUBLIC_URL": PUBLIC_URL,
        "CAMPAIGN_SECRET_KEY": "serve-test-secret-0123456789",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from cli import main; main()", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"campaign serve did not come up:\n{output}")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def test_serve_answers_health_and_a_signed_event(
    server: int, webhook_settings: Settings, sendgrid_keys: SendGridKeys
) -> None:
    status, body = _request(server, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}

    app: App = build_app(webhook_settings)
    try:
        world = World(app)
        member = world.participant()
        message = world.message(member, provider_message_id="serve0123456789serve01")
        events = [
            {
                "event": "delivered",
                "sg_event_id": "serve-evt-1",
                "timestamp": int(time.time()),
                "email": member.email,
                "message_id": message.uid,
            }
        ]
        payload = json.dumps(events).encode()
        # The server runs on the real clock: sign with the real time.
        headers = {
            **sendgrid_keys.sign(payload, str(int(time.time()))),
            "Content-Type": "application/json",
        }
        status, body = _request(server, "POST", "/webhooks/sendgrid", payload, headers)
        assert status == 200, body
        assert json.loads(body)["applied"] == 1
        assert world.outbox(message).status == "delivered"
        with app.sessions() as session:
            assert session.scalar(select(MessageEvent.provider_event_id)) == "serve-evt-1"

        unsigned, _ = _request(server, "POST", "/webhooks/sendgrid", payload, {})
        assert unsigned == 403
        twilio, _ = _request(server, "POST", "/webhooks/twilio/inbound", b"Body=STOP", {})
        assert twilio == 403
        missing, _ = _request(server, "GET", "/u/not-a-token")
        assert missing == 404
    finally:
        app.close()


def test_serve_refuses_a_malformed_public_key_with_a_clear_message(
    webhook_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", webhook_settings.database_url)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "this is not a key")
    result = CliRunner().invoke(cli, ["serve", "--port", str(_free_port())])
    assert result.exit_code == 1
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key" in result.output
    assert "Traceback" not in result.output

"""`campaign serve` cannot be held or exhausted by a client (issue #17): what can be refused
without the body is refused before reading it, a trickling body is cut off, a client that goes
away is one log line, and the unsubscribe pages cannot be framed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from engine.app import App
from engine.webhooks import app as webhooks_app
from engine.webhooks.app import build_asgi_app


def call(
    asgi: Any, method: str, path: str, headers: dict[str, str], messages: list[dict[str, Any]]
) -> tuple[int, dict[str, str], int]:
    """One request through the real ASGI app; returns (status, headers, body reads done).
    ``messages`` are what the client sends; once they run out the client sends nothing more
    (it hangs), as a slow or malicious client does."""
    reads = 0
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(asgi(scope, receive, send), 10))
    return answer["status"], answer["headers"], reads


def test_sendgrid_without_signature_headers_is_refused_before_the_body(wapp: App) -> None:
    asgi = build_asgi_app(wapp)
    # 8 MB announced, nothing sent: the answer comes without waiting for (or holding) it.
    status, _, reads = call(
        asgi, "POST", "/webhooks/sendgrid", {"content-length": str(8 * 1024 * 1024)}, []
    )
    assert status == 403 and reads == 0


def test_twilio_without_signature_header_is_refused_before_the_body(wapp: App) -> None:
    asgi = build_asgi_app(wapp)
    status, _, reads = call(
        asgi, "POST", "/webhooks/twilio/inbound", {"content-length": "60000"}, []
    )
    assert status == 403 and reads == 0


def test_a_trickling_body_is_cut_off(wapp: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_app, "BODY_TIMEOUT_SECONDS", 0.2)
    asgi = build_asgi_app(wapp)
    status, _, _ = call(
        asgi,
        "POST",
        "/u/sometoken",
        {"content-length": "1000"},
        [{"type": "http.request", "body": b"List-Unsubscribe=", "more_body": True}],
    )
    assert status == 408


def test_a_client_that_goes_away_is_one_log_line(
    wapp: App, caplog: pytest.LogCaptureFixture
) -> None:
    asgi = build_asgi_app(wapp)
    caplog.set_level(logging.INFO)
    call(
        asgi,
        "POST",
        "/u/sometoken",
        {"content-length": "1000"},
        [
            {"type": "http.request", "body": b"List-", "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    ours = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(ours) == 1 and ours[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_unsubscribe_pages_cannot_be_framed(wapp: App) -> None:
    asgi = build_asgi_app(wapp)
    status, headers, _ = call(asgi, "GET", "/u/not-a-token", {}, [])
    assert status == 404
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]

"""A dead dispatcher's claims are noticed within a minute (its heartbeat stops), not when
their ten-minute lease runs out (#16); a live one's are left alone however long it sends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dispatch_helpers import queue_emails
from sqlalchemy import select

from engine.app import App, build_app
from engine.channels.base import Outbound, SendResult
from engine.clock import FrozenClock
from engine.db.models import DispatchClaim, OutboxMessage
from engine.sending import leases
from engine.sending.dispatch import DispatchSummary, dispatch
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned
from engine.testing.fakes import RecordingChannel

ROOT = Path(__file__).resolve().parents[2]

VICTIM = """
import os, sys
from engine.app import build_app
from engine.channels.sendgrid import SendGridChannel
from engine.sending.dispatch import dispatch
from engine.settings import Settings

settings = Settings(database_url=sys.argv[1], dispatch_email_rate=10000, dispatch_batch_size=50)
app = build_app(settings)
channel = SendGridChannel("SG.test-key", host=sys.argv[2])
dispatch(app, {"email": channel}, worker=f"victim-{os.getpid()}")
"""


def _statuses(app: App) -> dict[str, str]:
    with app.sessions() as session:
        return dict(session.execute(select(OutboxMessage.uid, OutboxMessage.status)).all())


def test_a_dead_dispatcher_is_noticed_within_a_minute(app: App, tmp_path: Path) -> None:
    queue_emails(app, 100)
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    with FakeSendGrid() as server:
        server.outage(Canned.slow(0.05))
        victim = subprocess.Popen(
            [sys.executable, str(script), app.settings.database_url, server.url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 5:
                assert victim.poll() is None, "the dispatcher stopped by itself"
                assert time.monotonic() < deadline, "the dispatcher never got going"
                time.sleep(0.005)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(timeout=30)
        assert "sending" in set(_statuses(app).values())
        # Two minutes later: well within the ten-minute lease, past the heartbeat's minute.
        later = build_app(app.settings, clock=FrozenClock(datetime.now(UTC) + timedelta(minutes=2)))
        try:
            summary = dispatch(later, {}, worker="survivor")
        finally:
            later.close()
    statuses = _statuses(app)
    assert "sending" not in set(statuses.values())
    assert (
        summary.expired_leases + summary.requeued_leases
        == sum(1 for s in statuses.values() if s in ("unknown", "queued"))
        > 0
    )


class HangingChannel(RecordingChannel):
    """Its first request hangs until ``go_on`` is set."""

    def __init__(self) -> None:
        super().__init__("email")
        self.in_flight = threading.Event()
        self.go_on = threading.Event()

    def send(self, message: Outbound) -> SendResult:
        if not self.in_flight.is_set():
            self.in_flight.set()
            assert self.go_on.wait(60), "the test never let the request finish"
        return super().send(message)


def test_a_live_dispatcher_keeps_beating(
    app: App, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.02)
    queue_emails(app, 3)
    channel = HangingChannel()
    result: list[DispatchSummary] = []
    worker = threading.Thread(
        target=lambda: result.append(dispatch(app, {"email": channel}, worker="alive"))
    )
    worker.start()
    try:
        assert channel.in_flight.wait(60)
        clock.advance(timedelta(minutes=5))  # its request takes minutes: it is still alive
        deadline = time.monotonic() + 60
        while True:
            with app.sessions() as session:
                beats = set(session.scalars(select(DispatchClaim.heartbeat_at)))
            if beats == {clock.now()}:
                break
            assert time.monotonic() < deadline, beats
            time.sleep(0.02)
    finally:
        channel.go_on.set()
        worker.join(timeout=60)
    assert result and result[0].sent == 3 and result[0].unknown == 0
    assert set(_statuses(app).values()) == {"sent"}

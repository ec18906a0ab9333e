"""`campaign tick` stopped by SIGTERM (a cron wrapper's `timeout`) stops like `dispatch`:
the requests in flight finish and are recorded, the rest goes back to the queue (#21).
Before, it died mid-batch and left its claimed rows `sending`, unknown ten minutes later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from dispatch_helpers import queue_emails
from sqlalchemy import select

from engine.app import App
from engine.db.models import OutboxMessage
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_stops_a_tick_cleanly(app: App, tmp_path: Path) -> None:
    uids = set(queue_emails(app, 60))
    (tmp_path / "campaigns").mkdir()
    with FakeSendGrid() as server:
        server.outage(Canned.slow(0.05))  # a provider that takes its time
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SENDGRID_API_KEY": "SG.test-key",
            "CAMPAIGN_SENDGRID_HOST": server.url,
            "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "outbox"),
            "CAMPAIGN_CAMPAIGNS_DIR": str(tmp_path / "campaigns"),
            "CAMPAIGN_DISPATCH_EMAIL_RATE": "20",
        }
        ticking = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "cli.py"),
                "--database-url",
                app.settings.database_url,
                "tick",
                "--budget",
                "120",
                "--json",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 3:
                assert ticking.poll() is None, ticking.communicate()
                assert time.monotonic() < deadline, "the tick never began to send"
                time.sleep(0.01)
            ticking.send_signal(signal.SIGTERM)
            out, err = ticking.communicate(timeout=60)
        finally:
            if ticking.poll() is None:
                ticking.kill()
                ticking.communicate()
        received = Counter(
            p["custom_args"]["message_id"]
            for r in server.requests
            if r.json
            for p in r.json["personalizations"]
        )
    assert ticking.returncode == 0, err
    summary = json.loads(out)["dispatch"]
    assert summary["stopped_by"] == "stopped"
    with app.sessions() as session:
        statuses = dict(session.execute(select(OutboxMessage.uid, OutboxMessage.status)).all())
    assert set(statuses.values()) == {"sent", "queued"}  # nothing left `sending`
    sent = {uid for uid, status in statuses.items() if status == "sent"}
    assert sent == set(received) and max(received.values()) == 1
    assert summary["sent"] == len(sent) < len(uids)

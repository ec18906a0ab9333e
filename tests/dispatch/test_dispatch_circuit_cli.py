"""`dispatch` and `tick` say plainly that a channel waits for its provider, and since when."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from dispatch_helpers import queue_emails

from cli import cli
from engine.app import App
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned


def _run(app: App, server: FakeSendGrid, tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, *args],
        env={
            "SENDGRID_API_KEY": server.api_key,
            "CAMPAIGN_SENDGRID_HOST": server.url,
            "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "outbox"),
            "CAMPAIGN_CAMPAIGNS_DIR": str(tmp_path / "campaigns"),
        },
    )
    return result.exit_code, result.output


def test_dispatch_and_tick_say_the_channel_waits_for_the_provider(app: App, tmp_path: Path) -> None:
    queue_emails(app, 3)
    with FakeSendGrid() as server:
        server.outage(Canned.json(503, {"errors": [{"message": "down for maintenance"}]}))
        code, output = _run(app, server, tmp_path, "dispatch", "--drain")
        assert code == 0, output
        assert "email: waiting for sendgrid since " in output
        assert "503" in output and "failed 0" in output
        requests = len(server.requests)

        code, output = _run(app, server, tmp_path, "tick", "--budget", "20")
        assert code == 0, output
        assert "email: waiting for sendgrid since " in output
        assert len(server.requests) == requests  # it waits: no request before the probe

        code, output = _run(app, server, tmp_path, "dispatch", "--drain", "--json")
        assert code == 0, output
        [circuit] = json.loads(output)["waiting_for"]
        assert circuit["provider"] == "sendgrid" and circuit["channel"] == "email"

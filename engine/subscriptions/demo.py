"""The demo's report subscription: finance gets campaign results and retention monthly.

The step writes ``reports/finance-monthly.yaml`` into the demo folder, lets the tick see it
at the launch (so its schedule is known), then runs the tick's report step at the first
monthly fire after the launch: the delivery goes to the file sink (``outbox/*.eml`` with the
CSV attachments) and the demo prints where.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.app import App
from engine.clock import FrozenClock, ensure_utc
from engine.fire_times import LocalCron

NAME = "finance-monthly"
CRON = "0 7 1 * *"
SUBSCRIPTION = f"""\
# Written by `campaign demo`: campaign results and retention for the finance team, on the
# first of every month at 07:00 in the program's zone, for the last calendar month.
name: {NAME}
description: Monthly results for finance
program: {{program}}
reports:
  - report: campaign
    campaign: renewal-due
  - report: retention
    event: renewal
period: last calendar month
format: [html, csv]
language: en
recipients: [finance@example.com]
schedule:
  cron: "{CRON}"
"""


def deliver_demo_subscription(ctx: Any) -> None:
    """The demo step 'subscription' (engine/demo/run.py)."""
    from engine.demo.run import PROGRAM_KEY, PROGRAM_TIMEZONE
    from engine.subscriptions.deliveries import deliver_due

    folder = ctx.folder / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.yaml"
    path.write_text(SUBSCRIPTION.format(program=PROGRAM_KEY), encoding="utf-8")
    app = ctx.require_app()
    settings = app.settings.model_copy(update={"reports_dir": folder})
    launch = ensure_utc(ctx.now)
    fire = LocalCron(CRON, PROGRAM_TIMEZONE).next_fire(launch)
    assert fire is not None
    rows: list[tuple[str, str]] = [("subscription file", str(path))]
    for at in (launch, fire + timedelta(minutes=1)):
        demo_app = App(
            settings=settings, engine=app.engine, sessions=app.sessions, clock=FrozenClock(at)
        )
        summary = deliver_due(demo_app, at=at)
    for outcome in summary.delivered:
        rows.append((f"delivery at {fire:%Y-%m-%d %H:%M} UTC", outcome.status))
        for name in outcome.written:
            rows.append(("written to", str(settings.outbox_dir / name)))
        if outcome.status != "sent":
            rows.append(("why", outcome.detail))
    ctx.sections.append(("Report subscription (monthly, for finance)", rows))

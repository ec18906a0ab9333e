"""The demo's calls step: agents serve and log a spread of calls; the caller log is intact."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from engine.app import build_app
from engine.calls import caller_log
from engine.clock import FrozenClock
from engine.db.models import Agent, CallerLogEntry, Contact
from engine.demo.run import STEPS, run_demo
from engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_demo_agents_work_a_day_of_calls(tmp_path: Path, clock: FrozenClock) -> None:
    steps = [s for s in STEPS if s.name not in ("results", "reports")]
    report = run_demo(
        tmp_path,
        participants=600,
        seed=4,
        clock=clock,
        campaigns_dir=REPO / "campaigns",
        steps=steps,
    )
    titles = [title for title, _ in report.sections]
    assert "Calls: a day on the phones" in titles
    assert "One call script, as the agent saw it" in titles
    app = build_app(Settings(database_url=f"sqlite:///{tmp_path / 'campaign.db'}"))
    try:
        with app.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Agent)) == 4
            logged = s.scalar(select(func.count()).select_from(CallerLogEntry)) or 0
            kinds = set(s.scalars(select(CallerLogEntry.disposition)))
            calls = s.scalar(
                select(func.count()).select_from(Contact).where(Contact.channel == "call")
            )
            check = caller_log.verify(s)
    finally:
        app.close()
    assert logged >= 20 and calls == logged
    assert {"NO_ANSWER", "CONVERTED"} <= kinds and len(kinds) >= 6
    assert check.ok and check.entries == logged

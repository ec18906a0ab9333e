"""Demo step: plan and launch the example campaigns in campaigns/ against the demo program.

Uses the same loader, planner and launcher as `campaign plan` / `campaign launch`, so what the
demo prints is what a coordinator would see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from engine.definitions.loader import load_all
from engine.planning import ExclusionCount, GlobalCap, launch, plan


@dataclass(frozen=True)
class CampaignFigures:
    campaign: str
    description: str
    channels: list[str]
    audience: int
    exclusions: list[ExclusionCount]
    eligible: int
    run_id: int | None
    treatment: int
    holdout: int
    note: str | None


def launch_examples(
    sessions: Callable[[], Session],
    campaigns_dir: Path,
    *,
    program_key: str,
    at: datetime,
    cap: GlobalCap,
) -> list[CampaignFigures]:
    """Plan, then launch, every campaign of ``program_key`` found in ``campaigns_dir``."""
    figures = []
    for loaded in load_all(campaigns_dir):
        definition = loaded.definition
        if definition.program not in (None, program_key):
            continue
        with sessions() as session, session.begin():
            report = plan(session, loaded, at=at, sample_size=0, global_cap=cap)
        run_id, treatment, holdout = None, 0, 0
        if report.note is None:  # the plan says it can launch now
            with sessions() as session, session.begin():
                result = launch(session, loaded, at=at, global_cap=cap)
            run_id, treatment, holdout = result.run_id, result.treatment, result.holdout
        figures.append(
            CampaignFigures(
                campaign=definition.name,
                description=definition.description or "",
                channels=sorted(definition.channels),
                audience=report.audience,
                exclusions=[e for e in report.exclusions if e.count],
                eligible=report.eligible,
                run_id=run_id,
                treatment=treatment,
                holdout=holdout,
                note=report.note,
            )
        )
    return figures

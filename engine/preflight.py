"""Configuration checks before `advance` or `tick` write anything.

A missing templates folder or template file is the operator's mistake (the command was run
from the wrong folder, a file was renamed), not the members' data: rendering every member's
message against it would mark the whole audience ``render_error`` (final) and complete the
runs. So the templates of every active run (from the definition it was launched with) and of
the scheduled campaigns about to launch are looked for first, and a missing one stops the
command with one line (:class:`engine.errors.ConfigError`) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import exists, select

from engine.app import App
from engine.db.models import CampaignRun, Enrollment
from engine.definitions.loader import parse_definition
from engine.definitions.schema import CampaignDefinition
from engine.errors import ConfigError, EngineError
from engine.templates import CHANNEL_FOLDERS, EMAIL_PARTS, SENDGRID_TEMPLATE

# Runs whose steps the sequencer renders now (a paused run is checked when it resumes).
_LIVE = ("active",)


def missing_templates(templates_dir: Path, definition: CampaignDefinition) -> list[str]:
    """The template files (default locale) the definition's email/SMS steps need and the
    folder lacks, as paths."""
    missing: list[str] = []
    for step in definition.steps:
        if step.channel == "call":
            continue
        parts = EMAIL_PARTS if step.channel == "email" else ("txt",)
        for name in step.templates:
            if SENDGRID_TEMPLATE.match(name):
                continue
            for part in parts:
                path = templates_dir / CHANNEL_FOLDERS[step.channel] / f"{name}.{part}.j2"
                if not path.is_file():
                    missing.append(str(path))
    return missing


def _live_definitions(app: App, at: datetime) -> list[tuple[str, CampaignDefinition]]:
    found: list[tuple[str, CampaignDefinition]] = []
    with app.sessions() as session:
        # Only runs with members due for a step now (what the sequencer is about to render): a
        # run whose sends are all made (its calls may still be open), that enrolled nobody or
        # whose next steps are days away needs no template yet.
        rows = session.execute(
            select(CampaignRun.id, CampaignRun.campaign, CampaignRun.definition_source).where(
                CampaignRun.status.in_(_LIVE),
                exists().where(
                    Enrollment.run_id == CampaignRun.id,
                    Enrollment.state == "active",
                    Enrollment.group == "treatment",
                    Enrollment.next_action_at <= at,
                ),
            )
        ).all()
    for run_id, campaign, source in rows:
        try:
            definition = parse_definition(source, f"run {run_id} ({campaign})").definition
        except EngineError:
            continue  # the sequencer reports a stored definition that no longer loads
        found.append((f"run {run_id} ({campaign})", definition))
    return found


def check_templates(
    app: App, scheduled: Iterable[CampaignDefinition] = (), *, at: datetime
) -> None:
    """Raise ConfigError naming the first missing template folder or file of an active run
    with members due now, or of a scheduled campaign; nothing is written."""
    folder = Path(app.settings.templates_dir)
    wanted = _live_definitions(app, at) + [(f"campaign {d.name}", d) for d in scheduled]
    if not any(step.channel != "call" for _, d in wanted for step in d.steps):
        return
    if not folder.is_dir():
        who = wanted[0][0]
        raise ConfigError(
            f"templates folder {folder.resolve()} not found ({who} needs it): run from the "
            "project folder or set CAMPAIGN_TEMPLATES_DIR; nothing was done"
        )
    for who, definition in wanted:
        missing = missing_templates(folder, definition)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ConfigError(
                f"template {missing[0]}{more} not found ({who} needs it): restore it or set "
                "CAMPAIGN_TEMPLATES_DIR; nothing was done"
            )


__all__ = ["check_templates", "missing_templates"]

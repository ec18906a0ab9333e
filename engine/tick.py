"""One tick: everything due now, then exit. What `campaign tick` (cron) and the scheduler run.

In order, all at one instant ``at`` read once from the clock:

1. **launch** the scheduled campaigns whose time has come (a one-off ``start`` reached, or a
   cron fire time without a run yet): :func:`engine.planning.launch_due` over the campaign
   files. A file that does not load is reported and skipped; the others still launch. A cron
   fire later than ``scheduler_misfire_grace_seconds``, or older than its schedule, is not
   launched: it is reported once as skipped (engine/schedules.py). A real program's email
   campaign still on the demo's sender identity or postal address is not launched: each tick
   says so in `campaign launch`'s words until the settings are fixed (engine/sender_identity.py).
2. **conversions**: :func:`engine.conversions.match_conversions`, so a member who converted
   since the last tick leaves the sequence before the next step is made for them.
3. **advance** the sequences (:func:`engine.sequencing.advance`), within part of the budget.
4. **dispatch** what is due (:func:`engine.sending.dispatch.dispatch`) with the rest of the budget.
   On SQLite only one dispatcher may run; when another holds the lock (the daemon, a
   long-running `campaign dispatch`), the tick does everything else and says it skipped
   sending. That is not an error: the other dispatcher sends.
5. **fold** the outbox tallies the campaign report reads (:mod:`engine.reports.tallies`).
6. **reports**: deliver the report subscriptions (``reports/*.yaml``) whose fire time has
   come, and retry failed deliveries that are due (engine/subscriptions/deliveries.py).

Two ticks at once, or a tick beside the scheduler daemon, are safe: launches are unique per
(campaign, fire time), steps per (enrollment, step), and dispatch claims are leases.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from engine.app import App
from engine.channels.base import Channel
from engine.clock import ensure_utc
from engine.consent.wording import CONSENT_NOT_STATED
from engine.db.session import writing
from engine.definitions.loader import (
    LoadedDefinition,
    campaign_paths,
    error_list,
    load_definition,
)
from engine.errors import DefinitionError, DefinitionErrors, EngineError, InputError
from engine.metrics.names import ADVANCE_DURATION, TICK, TICK_DURATION
from engine.metrics.recording import auto_paused
from engine.planning import GlobalCap, launch_due
from engine.preflight import check_templates
from engine.sender_identity import launch_refusal
from engine.sequencing import AdvanceSummary, advance

log = logging.getLogger(__name__)

# Share of the budget the sequencer may use before dispatch gets the rest.
ADVANCE_SHARE = 0.6
# Sending stops this long before the budget ends (at most a tenth of it), so that requests
# in flight finish and everything is recorded within the budget: a cron wrapper's `timeout`
# set to the budget then finds the tick done, not mid-batch.
STOP_ROOM_SECONDS = 5.0


@dataclass
class Launched:
    campaign: str
    run_id: int | None = None
    enrolled: int = 0
    error: str | None = None
    skipped: str | None = None  # "skipped fire ... of X: why" (engine/schedules.py)
    refused: str | None = None  # "X: not launched: why" (engine/sender_identity.py)


@dataclass
class TickSummary:
    at: datetime
    launched: list[Launched] = field(default_factory=list)
    definition_errors: list[str] = field(default_factory=list)
    conversions: int | None = None  # None: conversion matching is not available
    advance: AdvanceSummary | None = None
    dispatch: Any = None  # engine.sending.dispatch.DispatchSummary
    dispatch_skipped: str | None = None
    tallies_folded: int = 0  # outbox tally rows folded away (engine.reports.tallies)
    contents_purged: int = 0  # old messages whose content and address were emptied
    reports: list[str] = field(default_factory=list)  # report deliveries made or skipped
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return int(getattr(self.dispatch, "sent", 0) or 0)

    @property
    def message(self) -> str:
        lines = [f"Tick at {self.at.isoformat()} ({self.seconds:.1f} s):"]
        if self.launched:
            for item in self.launched:
                if item.error:
                    lines.append(f"  launch {item.campaign}: FAILED: {item.error}")
                elif item.skipped:
                    lines.append(f"  {item.skipped}")
                elif item.refused:
                    lines.append(f"  {item.refused}")
                else:
                    lines.append(
                        f"  launched {item.campaign}: run {item.run_id}, {item.enrolled:,} enrolled"
                    )
        else:
            lines.append("  no campaign due for launch")
        for error in self.definition_errors:
            lines.append(f"  campaign file skipped: {error}")
        if self.conversions is None:
            lines.append("  conversions: not matched (engine.conversions is not available)")
        else:
            lines.append(f"  conversions: {self.conversions:,} new")
        if self.advance is not None:
            lines.append(f"  {self.advance.message}")
        if self.dispatch_skipped:
            lines.append(f"  sending skipped: {self.dispatch_skipped}")
        elif self.dispatch is not None:
            d = self.dispatch
            skipped = sum(d.skipped.values())
            lines.append(
                f"  sent {d.sent:,}, skipped {skipped:,}, waiting {d.waiting:,}, "
                f"retried {d.retried:,}, failed {d.failed:,}, unknown {d.unknown:,} "
                f"(stopped: {d.stopped_by})"
            )
            for run_id in d.paused_runs:
                lines.append(f"  run {run_id} was paused: see `campaign runs show {run_id}`")
            for error in d.errors:
                lines.append(f"  ERROR: {error}")
            for circuit in getattr(d, "waiting_for", ()):
                lines.append(f"  {circuit.describe()}")
        if self.contents_purged:
            lines.append(f"  old message contents emptied (retention): {self.contents_purged:,}")
        lines.extend(f"  {line}" for line in self.reports)
        return "\n".join(lines)


def load_scheduled(campaigns_dir: Any) -> tuple[list[LoadedDefinition], list[str]]:
    """Every campaign file with a schedule; the files that do not load, as messages."""
    loaded: list[LoadedDefinition] = []
    errors: list[str] = []
    try:
        paths = campaign_paths(campaigns_dir)
    except EngineError as exc:
        return [], [str(exc)]
    for path in paths:
        try:
            definition = load_definition(path)
        except (DefinitionError, DefinitionErrors) as exc:
            errors.extend(str(error) for error in error_list(exc))
            continue
        except EngineError as exc:
            errors.append(str(exc))
            continue
        if definition.definition.schedule is not None:
            loaded.append(definition)
    return loaded, errors


def launch_scheduled(
    app: App, definitions: list[LoadedDefinition], *, at: datetime
) -> list[Launched]:
    """Launch the given scheduled campaigns that are due at ``at`` (idempotent).

    A due campaign whose email would go out under the demo's sender identity (or without a
    postal address) is refused, with `campaign launch`'s one line, at every tick until the
    settings are fixed; it launches at the first tick after that (engine/planning/launching.py
    launch_due)."""
    if not definitions:
        return []
    settings = app.settings
    with app.sessions() as session, session.begin():
        results = launch_due(
            session,
            definitions,
            at=at,
            global_cap=GlobalCap.from_settings(settings),
            grace=timedelta(seconds=settings.scheduler_misfire_grace_seconds),
            refuse=lambda definition: launch_refusal(definition, settings),
        )
    launched = []
    for item in results:
        if item.error is not None:
            launched.append(Launched(item.campaign, error=item.error))
        elif item.skipped is not None:
            launched.append(Launched(item.campaign, skipped=item.skipped))
        elif item.refused is not None:
            launched.append(Launched(item.campaign, refused=item.refused))
        elif item.result is not None and item.result.created:
            launched.append(Launched(item.campaign, item.result.run_id, item.result.enrolled))
    return launched


def match_conversions(app: App, *, at: datetime) -> int | None:
    """engine.conversions.match_conversions in its own transaction; None when that module is
    not there (the conversions feature is optional for the tick)."""
    try:
        module = importlib.import_module("engine.conversions")
    except ModuleNotFoundError as exc:
        if exc.name != "engine.conversions":
            raise
        return None
    with writing(app.sessions) as session:  # it reads, then writes
        return int(module.match_conversions(session, at=at))


def tick(
    app: App,
    *,
    budget_seconds: float | None = None,
    channels: Mapping[str, Channel] | None = None,
    stop: threading.Event | None = None,
    worker: str | None = None,
) -> TickSummary:
    """Do everything due now (see the module docstring) within ``budget_seconds`` (default:
    the ``tick_budget_seconds`` setting). ``channels`` default to the configured providers
    (engine.channels.build_channels), closed again at the end."""
    started = time.monotonic()
    budget = app.settings.tick_budget_seconds if budget_seconds is None else budget_seconds
    if budget <= 0:
        raise InputError(f"--budget must be more than 0 seconds, not {budget}")
    deadline = started + budget
    at = ensure_utc(app.clock.now())
    summary = TickSummary(at=at)

    definitions, summary.definition_errors = load_scheduled(app.settings.campaigns_dir)
    # A missing template stops the tick before anything is written (engine/preflight.py).
    check_templates(app, [loaded.definition for loaded in definitions], at=at)
    summary.launched = launch_scheduled(app, definitions, at=at)
    summary.conversions = match_conversions(app, at=at)
    advance_started = time.monotonic()
    summary.advance = advance(app, at=at, deadline=started + budget * ADVANCE_SHARE)
    app.metrics.observe(ADVANCE_DURATION, time.monotonic() - advance_started)
    if summary.advance.runs_paused:  # the sequencer paused them (render errors)
        auto_paused(app.metrics, "sequencer", len(summary.advance.runs_paused))

    if stop is not None and stop.is_set():
        summary.dispatch_skipped = "stopping"
    elif time.monotonic() >= deadline:
        summary.dispatch_skipped = "no time left in the budget"
    else:
        room = min(STOP_ROOM_SECONDS, budget * 0.1)
        _dispatch(app, summary, channels, deadline - room, stop, worker)
    summary.tallies_folded = fold_outbox_tallies(app)
    summary.contents_purged = purge_old_contents(app, at=at)
    summary.reports = deliver_reports(app, at=at, channels=channels)
    summary.seconds = round(time.monotonic() - started, 3)
    app.metrics.observe(TICK_DURATION, time.monotonic() - started)
    app.metrics.beat(TICK, at)
    app.metrics.flush(app.engine)
    return summary


def deliver_reports(app: App, *, at: datetime, channels: Mapping[str, Channel] | None) -> list[str]:
    """Report subscriptions due now (engine/subscriptions/deliveries.py), as summary lines."""
    from engine.subscriptions.deliveries import deliver_due

    return deliver_due(app, at=at, channels=channels).lines()


def purge_old_contents(app: App, *, at: datetime) -> int:
    """One chunk of the message-content retention (engine/retention.py), in its own
    transaction; a busy SQLite leaves it to the next tick."""
    from engine.retention import purge_message_contents

    try:
        with app.sessions() as session, session.begin():
            return purge_message_contents(
                session, at=at, keep_days=app.settings.message_retention_days
            )
    except OperationalError as exc:
        log.warning("old message contents not purged this tick: %s", exc.orig)
        return 0


def fold_outbox_tallies(app: App) -> int:
    """Fold the report's outbox tallies (engine.reports.tallies) in their own transaction:
    each run's stay a few hundred rows, however many messages changed since."""
    from engine.reports.tallies import fold_tallies

    try:
        with app.sessions() as session, session.begin():
            return fold_tallies(session)
    except OperationalError as exc:
        # The report sums folded and unfolded rows alike, so it stays exact; the next tick
        # folds (SQLite: another process held the write lock past the busy timeout).
        log.warning("outbox tallies not folded this tick: %s", exc.orig)
        return 0


def _dispatch(
    app: App,
    summary: TickSummary,
    channels: Mapping[str, Channel] | None,
    deadline: float,
    stop: threading.Event | None,
    worker: str | None,
) -> None:
    from engine.sending.dispatch import DispatcherBusyError, dispatch

    own = channels is None
    if channels is None:
        from engine.channels import build_channels

        channels = build_channels(app.settings, clock=app.clock)
    name = worker or f"tick:{socket.gethostname()}:{os.getpid()}"
    try:
        summary.dispatch = dispatch(app, channels, worker=name[:64], deadline=deadline, stop=stop)
    except DispatcherBusyError as exc:
        summary.dispatch_skipped = str(exc)
    finally:
        if own:
            for channel in channels.values():
                channel.close()


DEMO_TICK_AFTER = timedelta(days=1)
DEMO_TICK_BUDGET = 8.0


def run_demo_tick(ctx: Any) -> None:
    """The demo step (engine/demo/run.py STEPS: 'send'): one tick the day after launch, so
    every first step is due, the messages are rendered into the outbox and the file sink in
    ``<demo folder>/outbox`` gets real .eml and .json files. The sink has no provider rate
    limit, so the demo lifts the dispatch rates; the send windows still apply (members whose
    local time is outside theirs wait for it)."""
    from engine.clock import FrozenClock

    app = ctx.require_app()
    settings = app.settings.model_copy(
        update={"dispatch_email_rate": 2000.0, "dispatch_sms_rate": 500.0}
    )
    at = ensure_utc(ctx.now) + DEMO_TICK_AFTER
    demo_app = App(
        settings=settings,
        engine=app.engine,
        sessions=app.sessions,
        clock=FrozenClock(at),
        metrics=app.metrics,
    )
    summary = tick(demo_app, budget_seconds=DEMO_TICK_BUDGET)
    advanced = summary.advance
    rows: list[tuple[str, str]] = []
    if advanced is not None:
        made = ", ".join(f"{n:,} {c}" for c, n in sorted(advanced.messages.items())) or "none"
        rows.append(("messages rendered and queued", made))
        if advanced.call_tasks:
            rows.append(("call tasks", f"{advanced.call_tasks:,}"))
        if advanced.messages_skipped:
            rows.append(
                (
                    "not made",
                    ", ".join(f"{n:,} {r}" for r, n in sorted(advanced.messages_skipped.items())),
                )
            )
        if advanced.exited:
            rows.append(("left the sequence (no channel left to contact)", f"{advanced.exited:,}"))
        if advanced.exited_consent_not_stated:
            rows.append(
                (f"  of them with {CONSENT_NOT_STATED}", f"{advanced.exited_consent_not_stated:,}")
            )
    if summary.dispatch_skipped:
        rows.append(("sending", f"skipped: {summary.dispatch_skipped}"))
    elif summary.dispatch is not None:
        d = summary.dispatch
        rows.append(("sent to the file sink", f"{d.sent:,} in {settings.outbox_dir}"))
        rows.append(("waiting for the member's send window", f"{d.waiting:,}"))
        if d.skipped:
            rows.append(
                (
                    "skipped at send time",
                    ", ".join(f"{n:,} {r}" for r, n in sorted(d.skipped.items())),
                )
            )
        left = sum(advanced.messages.values()) - d.sent - d.waiting if advanced else 0
        left -= sum(d.skipped.values())
        if left > 0:
            rows.append(("still queued (next tick)", f"{left:,}"))
    ctx.sections.append((f"A tick the next day ({at:%Y-%m-%d %H:%M} UTC)", rows))


__all__ = [
    "Launched",
    "TickSummary",
    "launch_scheduled",
    "load_scheduled",
    "run_demo_tick",
    "tick",
]

"""`campaign scheduler`: the long-running daemon (APScheduler 3, BlockingScheduler).

Jobs, all with ``coalesce=True`` (a backlog of missed fire times runs once), ``max_instances=1``
(a job never overlaps itself) and ``misfire_grace_time`` from the settings:

- ``launch:<campaign>``: one per scheduled campaign file. A recurring campaign gets its
  ``CronTrigger`` (its crontab in its zone, one fire per local calendar fire on DST days:
  engine/fire_times.py); a one-off campaign whose ``start`` is still ahead
  gets a ``DateTrigger``. The job launches that campaign's run for the fire time (the same
  :func:`engine.planning.launch_due` the tick calls, so the run's key is the fire time).
- ``tick``: every ``tick_interval_seconds``, the whole :func:`engine.tick.tick` (launch what is
  due, conversions, advance, dispatch). Before each tick the launch jobs are brought in line
  with the campaign files (added, changed or removed), so editing a schedule needs no restart.

The misfire grace binds the launches whichever path makes them: APScheduler drops a launch job
that runs later than it, and :func:`engine.planning.launch_due` (the job's and the tick's)
skips, and reports once, a fire later than it or older than its schedule
(engine/schedules.py). A new or edited schedule starts from its next fire time.

The database keys make it safe beside cron ticks or a second daemon: a run is unique per
(campaign, fire time), a message per (enrollment, step), and sending is claimed with leases.
SIGTERM or SIGINT stops it cleanly: no new job starts, the running tick's dispatch stops
after the message in flight (its unsent claims go back to the queue), and ``run`` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from types import FrameType
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from engine.app import App
from engine.channels.base import Channel
from engine.definitions.loader import LoadedDefinition
from engine.tick import Launched, TickSummary, launch_scheduled, load_scheduled, tick

log = logging.getLogger(__name__)

TICK_JOB = "tick"
LAUNCH_PREFIX = "launch:"


@dataclass
class SchedulerSummary:
    ticks: int = 0
    sent: int = 0
    launched: list[Launched] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # fire times not launched, and why
    errors: list[str] = field(default_factory=list)
    stopped_by: str | None = None


def launch_job_id(campaign: str) -> str:
    return f"{LAUNCH_PREFIX}{campaign}"


class Daemon:
    """The scheduler process. ``on_tick`` is called after every tick and ``on_launch`` for each
    launch (or skipped fire) of a launch job (for the CLI's log; a tick's are in its summary)."""

    def __init__(
        self,
        app: App,
        *,
        channels: Mapping[str, Channel] | None = None,
        on_tick: Callable[[TickSummary], None] | None = None,
        on_launch: Callable[[Launched], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.channels = channels
        self.on_tick = on_tick
        self.on_launch = on_launch
        self.stop = threading.Event()
        self.summary = SchedulerSummary()
        self._busy = threading.Lock()  # held while a job runs, so stopping can wait for it
        self._triggers: dict[str, str] = {}  # job id -> description of its trigger
        self.scheduler = BlockingScheduler(timezone=UTC)
        # Given with every job (not as scheduler defaults, which apply only once it runs).
        self.job_options: dict[str, Any] = {
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": self.settings.scheduler_misfire_grace_seconds,
            "replace_existing": True,
        }

    # ---------------------------------------------------------------- jobs

    def sync_launch_jobs(self) -> list[str]:
        """Make the ``launch:*`` jobs match the scheduled campaign files; returns the ids."""
        definitions, errors = load_scheduled(self.settings.campaigns_dir)
        for error in errors:
            log.warning("campaign file skipped: %s", error)
        now = self.app.clock.now()
        wanted: dict[str, tuple[Any, str]] = {}
        for loaded in definitions:
            schedule = loaded.definition.schedule
            assert schedule is not None  # load_scheduled keeps scheduled files only
            if schedule.cron is not None:
                wanted[launch_job_id(loaded.name)] = (
                    schedule.trigger(),
                    f"cron {schedule.cron} {schedule.timezone}",
                )
            elif schedule.start is not None and schedule.start > now:
                wanted[launch_job_id(loaded.name)] = (
                    DateTrigger(run_date=schedule.start, timezone=UTC),
                    f"once at {schedule.start.isoformat()}",
                )
        for job_id in list(self._triggers):
            if job_id not in wanted:
                self._remove(job_id)
        for job_id, (trigger, description) in wanted.items():
            if self._triggers.get(job_id) == description:
                continue
            # Remove first: before the scheduler starts, replace_existing does not replace.
            self._remove(job_id)
            self.scheduler.add_job(
                self._launch,
                trigger=trigger,
                args=[job_id[len(LAUNCH_PREFIX) :]],
                id=job_id,
                name=f"launch {job_id[len(LAUNCH_PREFIX) :]} ({description})",
                **self.job_options,
            )
            self._triggers[job_id] = description
        return sorted(wanted)

    def _remove(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)
        self._triggers.pop(job_id, None)

    def _launch(self, campaign: str) -> None:
        if self.stop.is_set():
            return
        with self._busy:
            definitions, _ = load_scheduled(self.settings.campaigns_dir)
            chosen: list[LoadedDefinition] = [d for d in definitions if d.name == campaign]
            try:
                launched = launch_scheduled(self.app, chosen, at=self.app.clock.now())
            except Exception as exc:  # a daemon must outlive one bad launch; logged
                log.exception("launch of %s failed", campaign)
                self.summary.errors.append(f"launch {campaign}: {exc}")
                return
            self._record(launched)
            if self.on_launch is not None:
                for item in launched:
                    self.on_launch(item)

    def _record(self, launched: list[Launched]) -> None:
        for item in launched:
            if item.skipped is not None:
                log.warning("%s", item.skipped)
                self.summary.skipped.append(item.skipped)
            elif item.refused is not None:
                # Repeated at every tick until the settings are fixed: logged, not collected.
                log.warning("%s", item.refused)
            else:
                self.summary.launched.append(item)

    def _tick(self) -> None:
        if self.stop.is_set():
            return
        with self._busy:
            try:
                self.sync_launch_jobs()
                summary = tick(self.app, channels=self.channels, stop=self.stop)
            except Exception as exc:  # the next tick tries again; logged with its traceback
                log.exception("tick failed")
                self.summary.errors.append(f"tick: {exc}")
                return
            self.summary.ticks += 1
            self.summary.sent += summary.sent
            self._record(summary.launched)
            if self.on_tick is not None:
                self.on_tick(summary)

    # ---------------------------------------------------------------- running

    def run(self) -> SchedulerSummary:
        """Block until SIGTERM/SIGINT (or :meth:`shutdown`); returns what was done."""
        self.sync_launch_jobs()
        self.scheduler.add_job(
            self._tick,
            trigger=IntervalTrigger(seconds=self.settings.tick_interval_seconds, timezone=UTC),
            id=TICK_JOB,
            name="tick",
            next_run_time=self.app.clock.now(),  # the first tick right away
            **self.job_options,
        )
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self.scheduler.start()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.stop.set()
            with self._busy:  # the job in flight finishes (dispatch stops after its message)
                pass
        return self.summary

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.summary.stopped_by = signal.Signals(signum).name
        self.shutdown()

    def shutdown(self) -> None:
        """Stop: no new job starts; a running tick stops sending after its current message."""
        self.stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


def run_scheduler(
    app: App,
    *,
    channels: Mapping[str, Channel] | None = None,
    on_tick: Callable[[TickSummary], None] | None = None,
    on_launch: Callable[[Launched], None] | None = None,
) -> SchedulerSummary:
    """Run the daemon until SIGTERM/SIGINT. ``channels`` default to the configured providers,
    built once and closed on the way out."""
    own = channels is None
    if channels is None:
        from engine.channels import build_channels

        channels = build_channels(app.settings, clock=app.clock)
    try:
        return Daemon(app, channels=channels, on_tick=on_tick, on_launch=on_launch).run()
    finally:
        if own:
            for channel in channels.values():
                channel.close()


__all__ = ["Daemon", "SchedulerSummary", "launch_job_id", "run_scheduler"]

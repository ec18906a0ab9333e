"""The advance loop: due batches planned, materialised and written, here or in forked
workers sharing one cursor; then runs with no work left are completed."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
import time as monotonic
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.app import App
from engine.consent.unsubscribe import signing_key
from engine.consent.wording import CONSENT_NOT_STATED
from engine.db.models import CallTask, CampaignRun, Enrollment, Program
from engine.db.session import writing
from engine.definitions.loader import parse_definition
from engine.definitions.schema import Step
from engine.errors import EngineError
from engine.policy.zones import candidate_zones
from engine.run_work import has_no_work
from engine.sending.deadlines import message_deadline
from engine.sending.outbox_status import QUEUED, SKIPPED
from engine.sequencing.due import DueCursor, DueRow, Run, due_sql, fetch_due, sqlite_time
from engine.sequencing.facts import NOTHING_KNOWN, load_facts
from engine.sequencing.materialise import Work, build_work
from engine.sequencing.render import RendererConfig
from engine.sequencing.rules import DeadlineOf, Outcome, plan_enrollment
from engine.sequencing.summary import AdvanceSummary
from engine.sequencing.write import BatchWriter
from engine.templates import Renderer
from engine.variants import variant_salt

log = logging.getLogger("engine.sequencing")


class _Advance:
    """One advance, in this process or in one forked worker (see the package docstring)."""

    def __init__(
        self,
        app: App,
        at: datetime,
        batch_size: int,
        limit: int | None,
        workers: int,
        deadline: float | None,
        *,
        cursor: DueCursor | None = None,
        write_lock: Any = None,
        key: bytes | None = None,
    ) -> None:
        self.app = app
        self.deadline = deadline
        self.at = at
        self.batch_size = batch_size
        self.limit = limit
        self.workers = workers
        self.cursor = cursor if cursor is not None else DueCursor()
        # SQLite: this advance's processes take turns to write, woken as soon as the lock is
        # free (SQLite's own busy wait sleeps 1, 2, 5, 10... ms between tries: a third of two
        # workers' time went to sleeping while the other wrote). A process lock once it forks.
        self.write_lock: Any = write_lock if write_lock is not None else threading.Lock()
        self.summary = AdvanceSummary(at=at)
        self.runs: dict[int, Run | None] = {}
        self.dialect = app.engine.dialect.name
        self.sqlite = self.dialect == "sqlite"
        self.insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self.key = key if key is not None else self._signing_key()
        settings = app.settings
        self.config = RendererConfig(
            str(settings.templates_dir), settings.postal_address, settings.public_url, self.key
        )
        self.renderer: Renderer | None = None
        self.at_text = sqlite_time(at)
        self.writer = BatchWriter(self.dialect, self.at_text)

    def _signing_key(self) -> bytes:
        with writing(self.app.sessions) as session:  # signing_key may read, then insert
            return signing_key(session, self.app.settings)

    # ---------------------------------------------------------------- the loop

    def run(self) -> AdvanceSummary:
        """The whole advance: batches here, or, when the first batch is full and workers are
        allowed, the rest in forked processes taking batches in turn from one cursor."""
        started = monotonic.perf_counter()
        with self._connect() as conn:
            batches = self._batches(conn)
            for index, rows in enumerate(batches):
                self._write(conn, self._plan(conn, rows))
                if index == 0 and self._fork_worthwhile(rows):
                    batches.close()
                    self._fork()
                    break
            self._complete_runs(conn)
        self.summary.seconds = round(monotonic.perf_counter() - started, 3)
        return self.summary

    def _fork_worthwhile(self, first: list[DueRow]) -> bool:
        return self.workers > 1 and self.limit is None and len(first) == self.batch_size

    def run_worker(self) -> AdvanceSummary:
        """A forked worker: batches from the shared cursor until none is left."""
        with self._connect() as conn:
            for rows in self._batches(conn):
                self._write(conn, self._plan(conn, rows))
        return self.summary

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """The advance's connection. SQLite: checkpoint the WAL every 10,000 pages instead of
        1,000 meanwhile (a batch of 2,000 emails writes about 1,000: the default copied index
        pages back to the database after every commit; 2-6 µs per message at 200k rows)."""
        with self.app.engine.connect() as conn:
            if not self.sqlite:
                yield conn
                return
            with conn.begin():
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=10000")
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")

    def _fork(self) -> None:
        """Render-heavy work scales with processes (the GIL keeps threads on one core): fork
        ``workers`` processes, each with its own connections, taking batches in turn from the
        shared cursor; they write concurrently (on SQLite one at a time, ``write_lock``)."""
        global _fork_state
        self.cursor.share()
        self.write_lock = multiprocessing.get_context("fork").Lock()
        _fork_state = self
        # A frozen GC keeps the children from touching, and so copying, shared pages.
        gc.freeze()
        try:
            with multiprocessing.get_context("fork").Pool(self.workers) as pool:
                parts = pool.map(_advance_worker, range(self.workers))
        finally:
            gc.unfreeze()
            _fork_state = None
        for part in parts:
            self.summary.merge(part)
        self.summary.processes = self.workers

    def _batches(self, conn: Connection) -> Generator[list[DueRow], None, None]:
        """Batches of due rows from the cursor (shared with the other workers, if any)."""
        seen = 0
        while self.limit is None or seen < self.limit:
            size = self.batch_size
            if self.limit is not None:
                size = min(size, self.limit - seen)
            skip = [run_id for run_id, run in self.runs.items() if run is None]
            sql = due_sql(self.dialect, skip, size)
            at: Any = self.at_text if self.sqlite else self.at
            with self.cursor.lock:
                after = self.cursor.position(self.sqlite)
                with conn.begin():
                    rows, last = fetch_due(conn, sql, (at, *after))
                if last is not None:
                    self.cursor.move_to(*last)
            if not rows:
                return
            seen += len(rows)
            yield rows
            if self.deadline is not None and monotonic.monotonic() >= self.deadline:
                self.summary.stopped_early = True
                return

    # ---------------------------------------------------------------- runs

    def _run(self, conn: Connection, run_id: int) -> Run | None:
        if run_id in self.runs:
            return self.runs[run_id]
        row = conn.execute(
            select(
                CampaignRun.campaign,
                CampaignRun.definition_source,
                Program.name,
                Program.timezone,
                Program.region,
                Program.sms_opt_out_notice,
            )
            .join(Program, Program.id == CampaignRun.program_id)
            .where(CampaignRun.id == run_id)
        ).one()
        try:
            loaded = parse_definition(row.definition_source, f"run {run_id} ({row.campaign})")
        except EngineError as exc:
            # The stored text no longer validates (the schema changed since launch): leave the
            # run alone and say so rather than guess what it meant.
            self.summary.errors.append(f"run {run_id}: its stored definition is invalid: {exc}")
            self.runs[run_id] = None
            return None
        definition = loaded.definition
        first_sms = next((i for i, s in enumerate(definition.steps) if s.channel == "sms"), None)
        salts = {
            i: variant_salt(definition.name, s.id)
            for i, s in enumerate(definition.steps)
            if s.variants
        }
        run = Run(
            run_id,
            row.campaign,
            definition,
            row.name,
            row.timezone,
            row.region,
            first_sms,
            salts,
            row.sms_opt_out_notice,
        )
        self.runs[run_id] = run
        return run

    # ---------------------------------------------------------------- planning

    def _plan(self, conn: Connection, rows: list[DueRow]) -> Work:
        self.summary.enrollments += len(rows)
        with conn.begin():
            runs = {run_id: self._run(conn, run_id) for run_id in {r.run_id for r in rows}}
            rows = [r for r in rows if runs[r.run_id] is not None]
            facts = load_facts(conn, rows, runs, self.at)
        moves: list[tuple[DueRow, Outcome]] = []
        # Enrollments of one launch move alike: a member with nothing on record, in a run whose
        # steps' times do not depend on the member (no local `at` time, no deadline before one
        # of their dates), goes where the others enrolled and due at the same instants go.
        alike: dict[tuple[Any, ...], Outcome] = {}
        untimed = {
            run_id
            for run_id, run in runs.items()
            if run is not None and all(s.at is None and s.expires_before is None for s in run.steps)
        }
        for row in rows:
            run = runs[row.run_id]
            assert run is not None
            row_facts = facts[row.id]
            key: tuple[Any, ...] | None = None
            if row_facts is NOTHING_KNOWN and row.run_id in untimed:
                key = (row.run_id, row.enrolled_at, row.next_step_index, row.next_action_at)
                known = alike.get(key)
                if known is not None:
                    moves.append((row, known))
                    continue
            outcome = plan_enrollment(
                run.steps,
                enrolled_at=row.enrolled_at,
                next_step_index=row.next_step_index,
                next_action_at=row.next_action_at,
                facts=row_facts,
                at=self.at,
                zones=zones_of(row, run),
                deadline=deadline_of(row, run),
            )
            if key is not None:
                alike[key] = outcome
            moves.append((row, outcome))
        if self.renderer is None:
            self.renderer = self.config.build()
        return build_work(moves, runs, self.renderer, self.at)

    # ---------------------------------------------------------------- writing

    def _write(self, conn: Connection, work: Work) -> None:
        if work.pauses:
            self._pause(conn, work.pauses)
        if not work.moves:
            return
        with self.write_lock if self.sqlite else nullcontext(), conn.begin():
            moved = self.writer.move(conn, work.moves)
            messages = [m for m in work.messages if m[2] in moved]
            tasks = [t for t in work.call_tasks if t["enrollment_id"] in moved]
            if messages:
                self.writer.insert_messages(conn, messages)
            if tasks:
                conn.execute(
                    self.insert(CallTask).on_conflict_do_nothing(
                        index_elements=["enrollment_id", "step_id"]
                    ),
                    tasks,
                )
            exited = [row.id for row, o in work.moves if o.state == "exited" and row.id in moved]
            if exited:
                # Tasks of an exited enrollment are served to nobody (engine/calls/tasks.py):
                # closed with the reason, they do not hold its run open unseen.
                conn.execute(
                    update(CallTask)
                    .where(CallTask.enrollment_id.in_(exited), CallTask.status == "open")
                    .values(status="closed", close_reason="enrollment exited", updated_at=self.at)
                )
        self._count(work, moved, messages, tasks)

    def _pause(self, conn: Connection, pauses: Mapping[int, str]) -> None:
        with self.write_lock if self.sqlite else nullcontext(), conn.begin():
            for run_id, reason in pauses.items():
                paused = conn.execute(
                    update(CampaignRun)
                    .where(CampaignRun.id == run_id, CampaignRun.status == "active")
                    .values(status="paused", status_reason=reason, status_changed_at=self.at)
                ).rowcount
                if paused:
                    log.warning("run %s %s", run_id, reason, extra={"run_id": run_id})
                    self.summary.runs_paused[run_id] = reason
        # This process's later batches of the run are left alone (the due scan skips paused
        # runs too, for every worker).
        for run_id in pauses:
            self.runs[run_id] = None

    def _count(
        self,
        work: Work,
        moved: set[int],
        messages: list[list[Any]],
        tasks: list[dict[str, Any]],
    ) -> None:
        s = self.summary
        queued = Counter(m[8] for m in messages if m[13] == QUEUED)  # channel, status
        skipped = Counter(m[14] for m in messages if m[13] == SKIPPED)  # status_reason
        for key, n in queued.items():
            s.messages[key] = s.messages.get(key, 0) + n
        for key, n in skipped.items():
            s.messages_skipped[key] = s.messages_skipped.get(key, 0) + n
        s.call_tasks += len(tasks)
        for row, outcome in work.moves:
            if row.id not in moved:
                s.lost += 1
                continue
            for _, condition in outcome.skipped:
                s.steps_skipped[condition] = s.steps_skipped.get(condition, 0) + 1
            if outcome.state == "exited":
                s.exited += 1
                s.exited_consent_not_stated += CONSENT_NOT_STATED in (outcome.exit_reason or "")
            elif outcome.state == "completed":
                s.completed += 1
            else:
                s.waiting += 1

    def _complete_runs(self, conn: Connection) -> None:
        """Active runs with no work left (engine/run_work.py: no treatment enrollment with
        steps left, no pending message, no open call task) are completed, and their holdout
        enrollments with them (a completed run has no open enrollment). A run whose last step
        was a call stays active while its tasks, callbacks and recycled attempts are open."""
        with conn.begin():
            done = conn.scalars(
                update(CampaignRun)
                .where(CampaignRun.status == "active", has_no_work(self.dialect))
                .values(
                    status="completed",
                    status_reason="every enrollment finished its sequence, every message "
                    "went and every call task is closed",
                    status_changed_at=self.at,
                )
                .returning(CampaignRun.id)
            ).all()
            if done:
                conn.execute(
                    update(Enrollment)
                    .where(Enrollment.run_id.in_(done), Enrollment.state == "active")
                    .values(state="completed", next_action_at=None)
                )
        self.summary.runs_completed.extend(sorted(done))


# The parent's _Advance, inherited by the forked workers of _Advance._fork.
_fork_state: _Advance | None = None


def _advance_worker(index: int) -> AdvanceSummary:
    parent = _fork_state
    assert parent is not None, "advance worker started outside _Advance._fork"
    app = parent.app
    # The parent's pooled connections are not ours to use (or to close): start afresh.
    app.engine.dispose(close=False)
    worker = _Advance(
        app,
        parent.at,
        parent.batch_size,
        None,
        1,
        parent.deadline,
        cursor=parent.cursor,
        write_lock=parent.write_lock,
        key=parent.key,
    )
    worker.runs = dict(parent.runs)
    summary = worker.run_worker()
    app.engine.dispose(close=True)
    return summary


def deadline_of(row: DueRow, run: Run) -> DeadlineOf:
    def deadline(step: Step, due: datetime) -> datetime | None:
        dates = {"renewal_date": row.renewal_date, "points_expire_at": row.points_expire_at}
        zones = zones_of(row, run)() if step.expires_before is not None else ()
        return message_deadline(due, step, dates, zones)

    return deadline


def zones_of(row: DueRow, run: Run) -> Callable[[], Sequence[str]]:
    def resolve() -> Sequence[str]:
        return candidate_zones(
            participant_zone=row.timezone,
            phone=row.phone,
            program_zone=run.program_zone,
            region=run.program_region,
        ).zones

    return resolve

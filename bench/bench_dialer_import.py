"""Benchmark: `campaign calls import-results` of a dialer's results file, as a ratio to the
participant import of a file of the same size measured in the same run.

    .venv/bin/python bench/bench_dialer_import.py --database sqlite|postgresql [--rows 20000]
        [--call-consent-default] [--called-at]

Fills a scratch database (migrated to head) with ``--rows`` open call tasks of one run, writes
a results file with one row per task (a realistic disposition mix: no answer, voicemail,
busy, not interested, complaints; 2% bad rows that go to the rejects file), then times the
import, and times importing the same file again (every good row "already on the caller
log"). ``--call-consent-default``: the program takes call consent as given and every other
member stated none (each call's entry then says what it relied on); ``--called-at``: each
row says when its call was made, a distinct instant each (its retry is worked out for that
instant). The floor: `campaign participants import` (engine/participants/importer.py) of a
``--rows`` member file (the demo generator's) into another program of the same database, in
the same process. Prints one JSON line per measurement with both rates and the ratio (goal:
>= 0.3x, issue #20; reported, not asserted); the caller log is verified at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app import build_app  # noqa: E402
from engine.calls import caller_log  # noqa: E402
from engine.calls.agents import add_agent  # noqa: E402
from engine.calls.dialer import import_results  # noqa: E402
from engine.clock import FrozenClock  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.models import CallTask, CampaignRun, Consent, Enrollment, Participant  # noqa: E402
from engine.db.session import make_engine  # noqa: E402
from engine.definitions.loader import content_hash  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.testing.fakes import make_program  # noqa: E402

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DEFINITION = """
name: bench-calls
program: loyalty
audience: {field: status, eq: active}
holdout_percent: 0
goal: {events: [renewal], window: 30d}
steps:
  - {id: call-1, channel: call, script: renewal_due, max_attempts: 3}
"""
# (disposition, weight, fields, verified)
MIX = (
    ("NO_ANSWER", 40, "", ""),
    ("VOICEMAIL", 20, "", ""),
    ("BUSY", 10, "", ""),
    ("NOT_INTERESTED", 20, "too expensive", "yes"),
    ("COMPLAINT", 8, "", "yes"),
)
# The first import's rows/s against the participant import's (issue #20).
GOAL_RATIO = 0.3
COLUMNS = "call_id,task_id,agent,disposition,verified,duration_seconds,notes,field.reason,"
COLUMNS += "field.category,field.summary"


def fill(url: str, rows: int, consent_default: bool = False) -> list[int]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = build_app(Settings(database_url=url), clock=FrozenClock(NOW))
    try:
        with app.sessions() as s, s.begin():
            program = make_program(s, at=NOW - timedelta(days=30))
            add_agent(s, "ana", name="Ana", at=NOW)
            run = CampaignRun(
                campaign="bench-calls",
                program_id=program.id,
                definition_hash=content_hash(DEFINITION.encode()),
                definition_source=DEFINITION,
                fire_key="once",
                status="active",
                launched_at=NOW - timedelta(days=1),
                enrolled_count=rows,
                holdout_count=0,
            )
            s.add(run)
            s.flush()
            people = [
                Participant(
                    program_id=program.id,
                    external_id=f"B{i:08d}",
                    first_name="Alex",
                    phone=f"+1202{i:07d}",
                    timezone="America/New_York",
                    status="active",
                    sample_key=i,
                    created_at=NOW,
                    updated_at=NOW,
                )
                for i in range(rows)
            ]
            s.add_all(people)
            s.flush()
            if consent_default:  # the program takes it as given; every other member stated none
                program.consent_default_call_at = NOW - timedelta(days=30)
            s.add_all(
                Consent(
                    participant_id=p.id,
                    channel="call",
                    status="opted_in",
                    recorded_at=NOW,
                    source="bench",
                )
                for n, p in enumerate(people)
                if not consent_default or n % 2 == 0
            )
            enrollments = [
                Enrollment(
                    run_id=run.id,
                    campaign=run.campaign,
                    participant_id=p.id,
                    group="treatment",
                    enrolled_at=NOW - timedelta(days=1),
                    state="active",
                    next_step_index=1,
                )
                for p in people
            ]
            s.add_all(enrollments)
            s.flush()
            tasks = [
                CallTask(
                    kind="campaign",
                    run_id=run.id,
                    enrollment_id=e.id,
                    participant_id=e.participant_id,
                    campaign=run.campaign,
                    step_id="call-1",
                    step_index=0,
                    script="renewal_due",
                    status="open",
                    due_at=NOW - timedelta(hours=1),
                    attempts=0,
                    max_attempts=3,
                    created_at=NOW,
                    updated_at=NOW,
                )
                for e in enrollments
            ]
            s.add_all(tasks)
            s.flush()
            return [t.id for t in tasks]
    finally:
        app.close()


def results_file(path: Path, task_ids: list[int], seed: int = 7, called_at: bool = False) -> int:
    """The dialer's file; ``called_at``: each row says when its call was made (over the six
    hours before NOW, a distinct instant each), as dialers report it."""
    rng = random.Random(seed)
    codes = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    spec = {m[0]: m for m in MIX}
    bad = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(("called_at," if called_at else "") + COLUMNS + "\n")
        for n, task in enumerate(task_ids):
            if called_at:
                when = NOW - timedelta(hours=6) * (1 - n / len(task_ids))
                out.write(when.isoformat() + ",")
            code = rng.choices(codes, weights)[0]
            _, _, reason, verified = spec[code]
            category, summary = ("billing", "charged twice") if code == "COMPLAINT" else ("", "")
            if rng.random() < 0.02:  # a bad row: a required field missing
                code, reason, verified = "NOT_INTERESTED", "", "yes"
                bad += 1
            duration = rng.randint(5, 600)
            out.write(
                f"d-{n},{task},ana,{code},{verified},{duration},,{reason},{category},{summary}\n"
            )
    return bad


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the participant import's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def participant_floor(url: str, rows: int, folder: Path) -> tuple[float, float]:
    """Rows per second of the participant import of a ``rows``-member file into a fresh
    program: per second of wall time, and per second of CPU (this process and its workers;
    the database server's not counted, as for the dialer import)."""
    from engine.demo.generator import write_dataset
    from engine.participants.importer import import_participants
    from engine.programs import add_program

    paths = write_dataset(folder, participants=rows, events_per_participant=0.0, now=NOW)
    app = build_app(Settings(database_url=url), clock=FrozenClock(NOW))
    try:
        with app.sessions() as s, s.begin():
            add_program(
                s,
                key="floor",
                name="Floor Rewards",
                timezone="America/New_York",
                region="US",
                at=NOW,
            )
        started, cpu = time.perf_counter(), cpu_seconds()
        summary = import_participants(app, paths.participants, program_key="floor", at=NOW)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        app.close()
    return summary.read / seconds, summary.read / cpu


def measure(
    url: str, rows: int, database: str, consent_default: bool = False, called_at: bool = False
) -> None:
    task_ids = fill(url, rows, consent_default)
    with tempfile.TemporaryDirectory() as folder:
        floor, floor_cpu = participant_floor(url, rows, Path(folder))
        print(
            json.dumps(
                {
                    "database": database,
                    "measurement": "floor: participants import",
                    "rows": rows,
                    "rows_per_second": round(floor),
                    "rows_per_cpu_second": round(floor_cpu),
                }
            ),
            flush=True,
        )
        path = Path(folder) / "results.csv"
        bad = results_file(path, task_ids, called_at=called_at)
        app = build_app(Settings(database_url=url), clock=FrozenClock(NOW))
        statements = [0]

        def count(*_: object) -> None:
            statements[0] += 1  # an executemany counts once: one round trip to the database

        event.listen(app.engine, "before_cursor_execute", count)
        try:
            for label in ("import", "re-import"):
                statements[0] = 0
                started, cpu = time.perf_counter(), cpu_seconds()
                summary = import_results(app, path, at=NOW + timedelta(hours=1))
                seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
                rate, cpu_rate = summary.read / seconds, summary.read / cpu
                print(
                    json.dumps(
                        {
                            "database": database,
                            "measurement": label,
                            "rows": summary.read,
                            "applied": summary.applied,
                            "unchanged": summary.unchanged,
                            "rejected": summary.rejected,
                            "expected_rejected": bad,
                            "seconds": round(seconds, 2),
                            "rows_per_second": round(rate),
                            "floor_rows_per_second": round(floor),
                            "ratio_to_floor": round(rate / floor, 2),
                            "rows_per_cpu_second": round(cpu_rate),
                            "floor_rows_per_cpu_second": round(floor_cpu),
                            "cpu_ratio_to_floor": round(cpu_rate / floor_cpu, 2),
                            "goal_ratio": GOAL_RATIO if label == "import" else None,
                            "statements_per_row": round(statements[0] / summary.read, 2),
                        }
                    ),
                    flush=True,
                )
            with app.sessions() as s:
                check = caller_log.verify(s)
            print(json.dumps({"database": database, "caller_log_entries": check.entries,
                              "chain_intact": check.ok}))  # fmt: skip
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument(
        "--call-consent-default",
        action="store_true",
        help="the program takes call consent as given; half the members stated none",
    )
    parser.add_argument(
        "--called-at",
        action="store_true",
        help="each row says when its call was made (a distinct instant each)",
    )
    args = parser.parse_args()
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            measure(
                f"sqlite:///{Path(folder) / 'bench.db'}",
                args.rows,
                "sqlite",
                args.call_consent_default,
                args.called_at,
            )
        return
    name = f"bench_dialer_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
        measure(url, args.rows, "postgresql", args.call_consent_default, args.called_at)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

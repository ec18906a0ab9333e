"""Benchmark: `campaign report campaign` over 10,000,000 outbox rows and 1,000,000 enrollments.

    .venv/bin/python bench/bench_reports.py --database sqlite|postgresql|both \\
        [--enrollments 1000000] [--outbox 10000000] [--repeat 3] [--keep | --reuse URL]

Floor (issue #20): one `SELECT count(*)` of the outbox, timed in the same rounds as the
report; the report reads tallies, so its ratio to that scan should be far below 1 (issue #6
asked for <= 1 s on PostgreSQL, <= 4 s on SQLite on its machine; no absolute time is
asserted).

Fills a scratch database (PostgreSQL: a new database, dropped afterwards unless --keep;
SQLite: a file in a temporary folder) with SQL inside the database (generate_series / a
recursive CTE): 1,000,000 participants and enrollments of one run (10% holdout), the outbox
rows of 12 steps over the treatment group (an A/B first step; realistic status mix: 70%
delivered, 10% skipped...), 50,000 call tasks and conversions for 8% of treatment / 5% of
holdout with first/last touch (on PostgreSQL without per-row foreign key checks, and the
outbox's indexes built after its rows). Then it times `campaign_report` (the whole report,
every query) ``--repeat`` times in a fresh session, checks that its funnel adds up to
COUNT(*) of the outbox, and prints one JSON line per measurement.

The schema measured is the migrated one: the scratch database is filled at FILL_REVISION,
then upgraded to head like any existing database (`campaign db upgrade`): migration 0005
counts the filled outbox into the tallies the report reads and builds its A/B index (the
time that takes is reported too). From then on the triggers keep the tallies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.db import migrate  # noqa: E402
from engine.db.session import make_engine, make_session_factory  # noqa: E402
from engine.reports.campaign import campaign_report  # noqa: E402

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STEPS = 12
# The revision the fill's SQL is written for: the tables as of 0004, before 0005's outbox
# tallies (which the upgrade to head then counts from the filled outbox).
FILL_REVISION = "0004"

DEFINITION = """
name: bench-report
program: demo
audience: {field: status, eq: active}
holdout_percent: 10
goal: {events: [renewal, redemption], window: 30d}
steps:
  - id: step-0
    channel: email
    variants: [{name: a, template: t-a}, {name: b, template: t-b}]
""" + "".join(
    f"  - {{id: step-{i}, channel: {'sms' if i % 3 == 1 else 'email'}, template: t, delay: {i}d}}\n"
    for i in range(1, STEPS)
)


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _h(g: str, m: int) -> str:
    """A deterministic pseudo-random value 0..2**32-1 from row number g."""
    return f"(({g} * {m}) % 4294967296)"


def _fill(url: str, dialect: str, enrollments: int, outbox: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, FILL_REVISION)
    pg = dialect == "postgresql"
    ts = "timestamptz '2026-01-10 14:00:00+00'" if pg else "'2026-01-10 14:00:00.000000'"

    def at_plus(seconds: str) -> str:
        if pg:
            return f"({ts} + make_interval(secs => ({seconds})::int))"
        return f"(datetime('2026-01-10 14:00:00', '+' || ({seconds}) || ' seconds') || '.000000')"

    def series(n: str) -> str:
        if pg:
            return f"generate_series(1::bigint, {n}) AS s(g)"
        return (
            f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
            "SELECT g FROM s) AS s"
        )

    treatment_n = enrollments - enrollments // 10
    statements = [
        f"""INSERT INTO participants (program_id, external_id, status, points_balance,
                points_expiring, attributes, sample_key, created_at, updated_at)
            SELECT 1, 'M' || g, 'active', 0, 0, '{{}}', g % 2147483647, {ts}, {ts}
            FROM {series(str(enrollments))}""",
        # Holdout: every 10th participant; treatment enrollments get ids 1..treatment_n.
        f"""INSERT INTO enrollments (id, run_id, campaign, participant_id, "group", enrolled_at,
                state, next_step_index)
            SELECT CASE WHEN g % 10 = 0 THEN {treatment_n} + g / 10
                        ELSE g - g / 10 END,
                   1, 'bench-report', g,
                   CASE WHEN g % 10 = 0 THEN 'holdout' ELSE 'treatment' END, {ts}, 'active', 0
            FROM {series(str(enrollments))}""",
    ]
    v = _h("g", 2654435761)
    status = (
        f"CASE WHEN {v} % 100 < 70 THEN 'delivered' WHEN {v} % 100 < 73 THEN 'bounced' "
        f"WHEN {v} % 100 < 78 THEN 'sent' WHEN {v} % 100 < 80 THEN 'failed' "
        f"WHEN {v} % 100 < 90 THEN 'skipped' WHEN {v} % 100 < 98 THEN 'queued' "
        "ELSE 'unknown' END"
    )
    step = f"((g - 1) / {treatment_n})"
    enrollment = f"(1 + (g - 1) % {treatment_n})"
    sent = f"{v} % 100 < 80 AND {v} % 100 >= 0 AND NOT ({v} % 100 BETWEEN 78 AND 79)"
    uid = "lpad(g::text, 32, '0')" if pg else "printf('%032d', g)"
    statements.append(
        f"""INSERT INTO outbox_messages (uid, run_id, enrollment_id, participant_id, campaign,
                step_id, step_index, variant, channel, template, content, status,
                status_reason, not_before, attempts, created_at, updated_at, sent_at,
                opened_at, clicked_at)
            SELECT {uid}, 1, {enrollment},
                   {enrollment} + ({enrollment} - 1) / 9,
                   'bench-report', 'step-' || {step}, {step},
                   CASE WHEN {step} = 0 THEN CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END END,
                   CASE WHEN {step} % 3 = 1 THEN 'sms' ELSE 'email' END, 't', '{{}}', {status},
                   CASE WHEN {v} % 100 BETWEEN 80 AND 89
                        THEN (CASE WHEN g % 3 = 0 THEN 'suppressed' ELSE 'no_consent' END)
                   END,
                   {ts}, 1, {ts}, {ts},
                   CASE WHEN {sent} THEN {at_plus(f"{step} * 86400 + 3600")} END,
                   CASE WHEN {sent} AND {_h("g", 40503)} % 100 < 25
                        THEN {at_plus(f"{step} * 86400 + 7200")} END,
                   CASE WHEN {sent} AND {_h("g", 40503)} % 100 < 5
                        THEN {at_plus(f"{step} * 86400 + 9000")} END
            FROM {series(str(outbox))}"""
    )
    # call tasks for 50,000 treatment enrollments, a third reached
    statements.append(
        f"""INSERT INTO call_tasks (kind, run_id, enrollment_id, participant_id, campaign,
                step_id, step_index, status, due_at, attempts, max_attempts, reached_at,
                created_at, updated_at)
            SELECT 'campaign', 1, g * 10, g * 10 + (g * 10 - 1) / 9, 'bench-report', 'call-1',
                   {STEPS}, CASE WHEN g % 3 = 0 THEN 'closed' ELSE 'open' END, {ts},
                   g % 3, 3, CASE WHEN g % 3 = 0 THEN {at_plus("9 * 86400")} END, {ts}, {ts}
            FROM {series(str(min(50_000, treatment_n // 10)))}"""
    )
    # conversions: 8% of treatment, 5% of holdout, with touches
    touch = (
        "jsonb_build_object('channel', 'email', 'step', 'step-0', 'variant', 'a')"
        if pg
        else "json_object('channel', 'email', 'step', 'step-0', 'variant', 'a')"
    )
    statements.append(
        f"""INSERT INTO conversions (enrollment_id, run_id, participant_id, campaign, "group",
                event_type, occurred_at, points, amount, source, first_touch, last_touch,
                created_at)
            SELECT e.id, 1, e.participant_id, 'bench-report', e."group", 'renewal',
                   {at_plus("(e.id % 29) * 86400 + 5000")}, 100, 25.50, 'import',
                   CASE WHEN e."group" = 'treatment' THEN {touch} END,
                   CASE WHEN e."group" = 'treatment' THEN {touch} END, {ts}
            FROM enrollments e
            WHERE (e."group" = 'treatment' AND e.id % 100 < 8)
               OR (e."group" = 'holdout' AND e.id % 100 < 5)"""
    )
    started = time.perf_counter()
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO programs (key, name, timezone, region, created_at) "
                f"VALUES ('demo', 'Demo', 'America/New_York', 'US', {ts})"
            )
        )
        c.execute(
            text(
                "INSERT INTO campaign_runs (campaign, program_id, definition_hash, "
                "definition_source, fire_key, status, launched_at, enrolled_count, holdout_count) "
                "VALUES ('bench-report', 1, :h, :src, 'once', 'active', :at, :n, :ho)"
            ),
            {"h": "0" * 64, "src": DEFINITION, "at": NOW if pg else "2026-01-10 14:00:00.000000",
             "n": enrollments, "ho": enrollments // 10},
        )  # fmt: skip
    with engine.connect() as c:
        if pg:
            # The generated rows are consistent by construction: skip the per-row foreign
            # key triggers, and build the outbox's indexes once after its 10M rows instead
            # of maintaining them row by row (several times faster).
            c.execute(text("SET session_replication_role = replica"))
            c.execute(text("SET maintenance_work_mem = '1GB'"))
            rebuild = _drop_outbox_indexes(c)
        for statement in statements:
            t0 = time.perf_counter()
            c.execute(text(statement))
            c.commit()
            _emit({"phase": "fill", "statement": statement.split("(")[0].strip()[:40],
                   "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        if pg:
            t0 = time.perf_counter()
            for statement in rebuild:
                c.execute(text(statement))
            c.commit()
            _emit({"phase": "fill", "statement": "rebuild the outbox indexes of 0004",
                   "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    _emit({"phase": "fill_total", "seconds": round(time.perf_counter() - started, 1)})
    engine.dispose()


def _drop_outbox_indexes(c: Connection) -> list[str]:
    """PostgreSQL: drop the outbox's secondary indexes and unique constraints; returns the
    statements that recreate them exactly (from the catalog, so whatever the migrations made)."""
    constraints = c.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'outbox_messages'::regclass AND contype = 'u'"
        )
    ).all()
    indexes = c.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'outbox_messages'::regclass AND NOT x.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)"
        )
    ).all()
    for name, _ in constraints:
        c.execute(text(f'ALTER TABLE outbox_messages DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        c.execute(text(f'DROP INDEX "{name}"'))
    c.commit()
    return [definition for _, definition in indexes] + [
        f'ALTER TABLE outbox_messages ADD CONSTRAINT "{name}" {definition}'
        for name, definition in constraints
    ]


def _upgrade_to_head(url: str, dialect: str) -> None:
    """`campaign db upgrade` of the filled database (a no-op on a reused one at head)."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    before, after = migrate.upgrade(engine)
    if before != after:
        _emit({"phase": "upgrade", "from": before, "to": after,
               "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        if dialect == "postgresql":
            # What autovacuum does to a table this size soon after (statistics, and the
            # visibility map index-only scans need). SQLite is measured as the engine leaves
            # a production file: it never runs ANALYZE on the outbox.
            t0 = time.perf_counter()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
            _emit({"phase": "vacuum_analyze", "seconds": round(time.perf_counter() - t0, 1)})
    engine.dispose()


def _measure(url: str, dialect: str, repeat: int) -> None:
    _upgrade_to_head(url, dialect)
    engine = make_engine(url)
    with engine.connect() as c:
        rows = c.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one()
        enrolled = c.execute(text("SELECT count(*) FROM enrollments")).scalar_one()
    sessions = make_session_factory(engine)
    timings = []
    floor = []  # one full count of the outbox per round, in the same rounds as the report
    report = None
    for _ in range(repeat):
        with engine.connect() as c:
            t0 = time.perf_counter()
            c.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one()
            floor.append(time.perf_counter() - t0)
        with sessions() as session:
            t0 = time.perf_counter()
            report = campaign_report(session, "1")
            timings.append(time.perf_counter() - t0)
    assert report is not None
    assert report.enrolled == enrolled
    assert sum(s.created for s in report.message_steps) == rows
    _emit(
        {
            "measure": "campaign_report",
            "database": dialect,
            "outbox_rows": rows,
            "enrollments": enrolled,
            "schema": migrate.current_revision(engine),
            "seconds_each": [round(t, 3) for t in timings],
            "seconds_median": round(statistics.median(timings), 3),
            "floor": "SELECT count(*) FROM outbox_messages",
            "floor_seconds_median": round(statistics.median(floor), 4),
            "ratio_to_floor": round(statistics.median(timings) / statistics.median(floor), 3),
            "conversions": report.conversions,
            "lift_pp": None if report.lift.difference is None
            else round(report.lift.difference * 100, 3),
        }
    )  # fmt: skip
    engine.dispose()


def run(dialect: str, args: argparse.Namespace) -> None:
    if dialect == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-reports-"))
        url = f"sqlite:///{folder / 'bench.db'}"
        _fill(url, dialect, args.enrollments, args.outbox)
        _measure(url, dialect, args.repeat)
        if not args.keep:
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
        else:
            _emit({"kept": url})
        return
    name = f"bench_reports_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        _fill(url, dialect, args.enrollments, args.outbox)
        _measure(url, dialect, args.repeat)
    finally:
        if not args.keep:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            _emit({"kept": url})
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--outbox", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--reuse", metavar="URL", help="measure on a database an earlier --keep run filled"
    )
    args = parser.parse_args()
    if args.reuse:
        dialect = make_url(args.reuse).get_backend_name()
        _measure(args.reuse, dialect, args.repeat)
        return
    for dialect in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        run(dialect, args)


if __name__ == "__main__":
    main()

"""Benchmark: plan and launch a realistic campaign over 1,000,000 members and 10,000,000 events.

    .venv/bin/python bench/bench_launch.py --database sqlite|postgresql|both \\
        [--participants 1000000] [--events 10000000] [--keep]

Fills a scratch database (PostgreSQL: a new database, dropped afterwards unless --keep;
SQLite: a file in a temporary folder) FAST with SQL inside the database: generate_series on
PostgreSQL, a recursive CTE on SQLite; never through the CSV importer. Members, consents,
suppressions, contacts and events follow a realistic shape (about a quarter inactive for 90+
days, ~10 events per member over 400 days). Then, each in its own Python process so that the
peak RSS is the operation's own, it times:

- ``plan`` of campaigns/winback-inactive.yaml (sample of 10),
- ``launch`` of it (target: <= 5 s on each database, peak RSS <= 150 MB),
- a second ``launch`` (idempotent: finds the run, enrolls nobody).

One JSON line per measurement on stdout (fill timings too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PROGRAM = "demo"
CAMPAIGN_FILE = ROOT / "campaigns" / "winback-inactive.yaml"
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGETS = {"launch": {"seconds": 5.0, "peak_rss_mb": 150.0}}

# Used when campaigns/winback-inactive.yaml is absent: the same shape.
INLINE_DEFINITION = """
name: winback-inactive
program: demo
audience:
  all:
    - {field: status, in: [active, inactive]}
    - {field: last_activity_at, older_than: 90d}
    - {not: {event: login, within_last: 90d}}
exclusions:
  - {field: status, eq: closed}
holdout_percent: 10
goal: {events: [login, redemption], window: 30d}
reentry: {after: 180d}
frequency_cap: {max: 3, per: 7d}
steps:
  - {id: email-1, channel: email, template: winback}
  - {id: sms-1, channel: sms, template: winback, delay: 4d}
  - {id: call-1, channel: call, script: winback, delay: 7d}
"""


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent across fork+exec, which would charge the fill's memory to the measurement."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- fill
# Pseudo-random but deterministic values from the row number g: h(g, m) = g * m mod 2**32
# with a different odd multiplier m per column.


def _h(g: str, m: int) -> str:
    return f"(({g} * {m}) % 4294967296)"


def _status(g: str) -> str:
    v = _h(g, 2654435761)
    return (
        f"CASE WHEN {v} % 100 < 70 THEN 'active' WHEN {v} % 100 < 85 THEN 'inactive' "
        f"WHEN {v} % 100 < 95 THEN 'lapsed' ELSE 'closed' END"
    )


def _inactive_days(g: str) -> str:
    # A quarter inactive for 90+ days (up to ~2 years), the rest active in the last 90 days.
    v, w = _h(g, 2246822519), _h(g, 3266489917)
    return f"(CASE WHEN {v} % 100 < 25 THEN 91 + {w} % 600 ELSE {w} % 90 END)"


def fill_postgresql(url: str, participants: int, events: int) -> None:
    engine = create_engine(url)
    now = NOW.isoformat()
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO programs (key, name, timezone, region, created_at) "
                "VALUES (:k, 'Demo Rewards', 'America/New_York', 'US', :now)"
            ),
            {"k": PROGRAM, "now": NOW},
        )
        t0 = time.perf_counter()
        g = "g"
        c.execute(
            text(
                f"""
                INSERT INTO participants (program_id, external_id, first_name, last_name, email,
                    phone, status, enrolled_at, last_activity_at, points_balance, points_expiring,
                    tier, locale, attributes, sample_key, created_at, updated_at)
                SELECT 1, 'M' || g, 'First' || g, 'Last' || g,
                    CASE WHEN {_h(g, 40503)} % 100 < 95 THEN 'm' || g || '@example.com' END,
                    CASE WHEN {_h(g, 69069)} % 100 < 80
                         THEN '+1202' || lpad((g % 10000000)::text, 7, '0') END,
                    {_status(g)},
                    timestamptz '{now}' - make_interval(days => ({_h(g, 1103515245)} % 3000)::int),
                    timestamptz '{now}' - make_interval(days => {_inactive_days(g)}::int),
                    ({_h(g, 214013)} % 20000)::int, 0,
                    (ARRAY['blue', 'silver', 'gold'])[1 + {_h(g, 22695477)} % 3],
                    (ARRAY['en', 'es', 'zh'])[1 + {_h(g, 1664525)} % 3],
                    '{{}}'::jsonb,
                    (('x' || substr(encode(sha256(convert_to('{PROGRAM}' || chr(31) || 'M' || g,
                        'UTF8')), 'hex'), 1, 8))::bit(32)::bigint & 2147483647)::int,
                    timestamptz '{now}', timestamptz '{now}'
                FROM generate_series(1::bigint, :n) AS g
                """
            ),
            {"n": participants},
        )
        _fill_small_tables(c, participants, postgres=True)
        _emit({"phase": "fill_participants", "seconds": round(time.perf_counter() - t0, 2)})
        t0 = time.perf_counter()
        # Load events without their secondary indexes, then build them (much faster).
        c.execute(text("DROP INDEX ix_activity_events_participant_id_type_occurred_at"))
        c.execute(
            text(
                "ALTER TABLE activity_events "
                "DROP CONSTRAINT uq_activity_events_program_id_reference"
            )
        )
        c.execute(
            text(
                f"""
                INSERT INTO activity_events (program_id, participant_id, type, occurred_at, points,
                    amount, reference, source, created_at)
                SELECT 1, 1 + {_h(g, 2654435761)} % :p,
                    (ARRAY['login', 'login', 'login', 'login', 'login', 'redemption',
                           'redemption', 'purchase', 'purchase', 'points_earned'])
                        [1 + {_h(g, 747796405)} % 10],
                    timestamptz '{now}'
                        - make_interval(secs => ({_h(g, 2891336453)} % 34560000)::int),
                    ({_h(g, 1664525)} % 500)::int, NULL, 'e' || g, 'bench', timestamptz '{now}'
                FROM generate_series(1::bigint, :e) AS g
                """
            ),
            {"p": participants, "e": events},
        )
        c.execute(
            text(
                "CREATE INDEX ix_activity_events_participant_id_type_occurred_at "
                "ON activity_events (participant_id, type, occurred_at)"
            )
        )
        c.execute(
            text(
                "ALTER TABLE activity_events "
                "ADD CONSTRAINT uq_activity_events_program_id_reference "
                "UNIQUE (program_id, reference)"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))
    _emit({"phase": "fill_events", "seconds": round(time.perf_counter() - t0, 2)})
    engine.dispose()


def _fill_small_tables(c: Any, participants: int, *, postgres: bool) -> None:
    """Consents, suppressions and recent contacts, from the participants just inserted."""
    ts = ":now"
    stmts = [
        # 40% opted in to SMS, 30% to calls, 3% opted out of email.
        f"""INSERT INTO participant_consents (participant_id, channel, status, recorded_at, source)
            SELECT id, 'sms', 'opted_in', {ts}, 'bench' FROM participants
            WHERE phone IS NOT NULL AND (id * 48271) % 100 < 50""",
        f"""INSERT INTO participant_consents (participant_id, channel, status, recorded_at, source)
            SELECT id, 'call', 'opted_in', {ts}, 'bench' FROM participants
            WHERE phone IS NOT NULL AND (id * 16807) % 100 < 38""",
        f"""INSERT INTO participant_consents (participant_id, channel, status, recorded_at, source)
            SELECT id, 'email', 'opted_out', {ts}, 'bench' FROM participants
            WHERE (id * 69621) % 100 < 3""",
        f"""INSERT INTO suppressions (channel, address, address_hash, reason, source, created_at)
            SELECT 'email', email, 'h' || id, 'bounce', 'bench', {ts} FROM participants
            WHERE email IS NOT NULL AND (id * 31) % 100 = 7""",
        # One recent contact for ~30% of members, and three for 1% (at the campaign's cap).
        f"""INSERT INTO contacts (participant_id, channel, occurred_at, kind)
            SELECT 1 + (id * 7) % {participants}, 'email', {ts}, 'message' FROM participants
            WHERE (id * 13) % 10 < 3""",
        f"""INSERT INTO contacts (participant_id, channel, occurred_at, kind)
            SELECT id, 'sms', {ts}, 'message' FROM participants,
                (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS k
            WHERE (id * 17) % 100 = 3""",
    ]
    params = {"now": NOW if postgres else NOW.strftime("%Y-%m-%d %H:%M:%S.000000")}
    for stmt in stmts:
        c.execute(text(stmt), params) if postgres else c.execute(stmt, params)


def fill_sqlite(path: Path, participants: int, events: int) -> None:
    from engine import sampling

    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=OFF")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("PRAGMA cache_size=-200000")
    c.create_function(
        "sample_key", 1, lambda ext: sampling.sample_key(PROGRAM, ext), deterministic=True
    )
    now = NOW.strftime("%Y-%m-%d %H:%M:%S")

    def ts(days_expr: str, unit: str = "days") -> str:
        # SQLAlchemy's SQLite text format for DateTime, microseconds included.
        shifted = f"strftime('%Y-%m-%d %H:%M:%S', '{now}', '-' || ({days_expr}) || ' {unit}')"
        return f"{shifted} || '.000000'"

    c.execute("BEGIN")
    c.execute(
        "INSERT INTO programs (key, name, timezone, region, created_at) "
        "VALUES (?, 'Demo Rewards', 'America/New_York', 'US', ?)",
        (PROGRAM, now + ".000000"),
    )
    t0 = time.perf_counter()
    g = "g"
    c.execute(
        f"""
        WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?)
        INSERT INTO participants (program_id, external_id, first_name, last_name, email, phone,
            status, enrolled_at, last_activity_at, points_balance, points_expiring, tier, locale,
            attributes, sample_key, created_at, updated_at)
        SELECT 1, 'M' || g, 'First' || g, 'Last' || g,
            CASE WHEN {_h(g, 40503)} % 100 < 95 THEN 'm' || g || '@example.com' END,
            CASE WHEN {_h(g, 69069)} % 100 < 80 THEN '+1202' || printf('%07d', g % 10000000) END,
            {_status(g)},
            {ts(_h(g, 1103515245) + " % 3000")},
            {ts(_inactive_days(g))},
            {_h(g, 214013)} % 20000, 0,
            CASE {_h(g, 22695477)} % 3 WHEN 0 THEN 'blue' WHEN 1 THEN 'silver' ELSE 'gold' END,
            CASE {_h(g, 1664525)} % 3 WHEN 0 THEN 'en' WHEN 1 THEN 'es' ELSE 'zh' END,
            '{{}}', sample_key('M' || g), '{now}.000000', '{now}.000000'
        FROM s
        """,
        (participants,),
    )
    _fill_small_tables(c, participants, postgres=False)
    c.execute("COMMIT")
    _emit({"phase": "fill_participants", "seconds": round(time.perf_counter() - t0, 2)})
    t0 = time.perf_counter()
    c.execute("DROP INDEX ix_activity_events_participant_id_type_occurred_at")
    c.execute("BEGIN")
    c.execute(
        f"""
        WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?)
        INSERT INTO activity_events (program_id, participant_id, type, occurred_at, points,
            amount, reference, source, created_at)
        SELECT 1, 1 + {_h(g, 2654435761)} % ?,
            CASE {_h(g, 747796405)} % 10 WHEN 5 THEN 'redemption' WHEN 6 THEN 'redemption'
                WHEN 7 THEN 'purchase' WHEN 8 THEN 'purchase' WHEN 9 THEN 'points_earned'
                ELSE 'login' END,
            {ts(_h(g, 2891336453) + " % 34560000", "seconds")},
            {_h(g, 1664525)} % 500, NULL, 'e' || printf('%010d', g), 'bench', '{now}.000000'
        FROM s
        """,
        (events, participants),
    )
    c.execute(
        "CREATE INDEX ix_activity_events_participant_id_type_occurred_at "
        "ON activity_events (participant_id, type, occurred_at)"
    )
    c.execute("COMMIT")
    c.execute("ANALYZE")
    c.execute("PRAGMA journal_mode=WAL")
    c.close()
    _emit({"phase": "fill_events", "seconds": round(time.perf_counter() - t0, 2)})


# --------------------------------------------------------------------------- measure


def measure(url: str, op: str, database: str, participants: int, events: int) -> None:
    """One operation in this (fresh) process; prints its JSON line."""
    from engine import planning
    from engine.app import build_app
    from engine.definitions.loader import load_definition, parse_definition
    from engine.settings import Settings

    if CAMPAIGN_FILE.exists():
        loaded = load_definition(CAMPAIGN_FILE)
    else:
        loaded = parse_definition(INLINE_DEFINITION, "inline/winback-inactive.yaml")
    app = build_app(Settings(database_url=url))
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    with app.sessions() as session, session.begin():
        if op == "plan":
            report = planning.plan(session, loaded, at=NOW)
            extra = {
                "audience": report.audience,
                "eligible": report.eligible,
                "exclusions": {e.reason: e.count for e in report.exclusions},
            }
        else:
            result = planning.launch(session, loaded, at=NOW)
            extra = {"created": result.created, "enrolled": result.enrolled}
    seconds = time.perf_counter() - started
    app.close()
    record: dict[str, Any] = {
        "bench": "launch",
        "database": database,
        "participants": participants,
        "events": events,
        "op": op,
        "seconds": round(seconds, 3),
        "peak_rss_mb": _peak_rss_mb(),
        **extra,
    }
    target = TARGETS.get(op)
    if target is not None:
        record["target_seconds"] = target["seconds"]
        record["target_peak_rss_mb"] = target["peak_rss_mb"]
        record["ok"] = (
            seconds <= target["seconds"] and record["peak_rss_mb"] <= target["peak_rss_mb"]
        )
    _emit(record)


def run(database: str, participants: int, events: int, keep: bool) -> None:
    from engine.db import migrate
    from engine.db.session import make_engine

    folder = Path(tempfile.mkdtemp(prefix="bench_launch_"))
    admin_url = POSTGRES_ADMIN
    name = f"bench_launch_{uuid.uuid4().hex[:8]}"
    if database == "sqlite":
        path = folder / "bench.db"
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        started = time.perf_counter()
        if database == "sqlite":
            fill_sqlite(folder / "bench.db", participants, events)
        else:
            fill_postgresql(url, participants, events)
        _emit(
            {
                "phase": "fill",
                "database": database,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        for op in ("plan", "launch", "launch-again"):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    op,
                    "--url",
                    url,
                    "--database",
                    database,
                    "--participants",
                    str(participants),
                    "--events",
                    str(events),
                ],
                check=True,
            )
    finally:
        if keep:
            _emit({"kept": url})
        elif database == "postgresql":
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        else:
            for file in folder.glob("*"):
                file.unlink()
        if not keep or database == "postgresql":
            folder.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="Keep the filled database.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help="Measure against this already filled database.")
    args = parser.parse_args()
    if args.measure or args.url:
        databases = [args.database] if args.database != "both" else ["sqlite"]
        ops = [args.measure] if args.measure else ["plan", "launch", "launch-again"]
        for op in ops:
            measure(args.url, op, databases[0], args.participants, args.events)
        return
    for database in ["sqlite", "postgresql"] if args.database == "both" else [args.database]:
        run(database, args.participants, args.events, args.keep)


if __name__ == "__main__":
    main()

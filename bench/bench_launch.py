"""Benchmark: plan and launch a realistic campaign over members and events, each next to its
floor measured in the same run (issue #20: ratios, no absolute time asserted).

    .venv/bin/python bench/bench_launch.py --database sqlite|postgresql|both \
        [--participants 1000000] [--events N (default 10 per member)] [--rounds 3] [--keep]

Fills a scratch database (PostgreSQL: a new database, dropped afterwards unless --keep;
SQLite: a file in a temporary folder) FAST with SQL inside the database: generate_series on
PostgreSQL, a recursive CTE on SQLite; never through the CSV importer. Members, consents,
suppressions, contacts and events follow a realistic shape (about a quarter inactive for 90+
days, ~10 events per member over 400 days). ``--participants 100000`` runs in minutes.

Then, each round, each in its own Python process (so that the peak RSS is the operation's own),
of campaigns/winback-inactive.yaml:

- ``plan`` (sample of 10), and its floor: the campaign's audience WHERE, the very expression
  plan and launch build (``engine.audience.audience_condition``: the same tables, the same
  event anti-join), run bare as one ``count(*)``;
- ``launch``, and its floor: that audience WHERE run bare as ``INSERT INTO floor_enrollments
  SELECT`` of the audience's members (all of them: at least as many rows as launch enrolls)
  into a table with enrollments' columns and types and no key, index, constraint or trigger,
  committed. What launch does beyond it (the run row, the exclusion waterfall: campaign
  exclusions, suppression, consent, goal already met, frequency cap, already enrolled,
  re-entry; the holdout draw; enrollments' keys and indexes; the counts) is what the ratio
  prices.

The order alternates each round (floor first in even rounds); between rounds the launched run
is deleted, untimed (and VACUUMed on PostgreSQL), so each round launches anew over the same
tables. After the last round a second ``launch`` shows idempotence (finds the run, enrolls
nobody); then that run is deleted too, so that a database kept with ``--keep`` can be
measured again with ``--url URL``. One JSON line per measurement: seconds of the operation and
of the floor, the ratio floor / operation (1.0 = as fast as the bare SQL; like a rate ratio,
higher is better), CPU seconds of the measuring process plus, on PostgreSQL, of the session's
backend (read from /proc; parallel workers not counted) and their ratio, the peak RSS; with
``--rounds N`` > 1 a last line per operation gives the medians. Issue #3's absolute figures
(launch <= 5 s over 1M members / 10M events, <= 150 MB) are history, not checked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
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


def _definition() -> Any:
    from engine.definitions.loader import load_definition, parse_definition

    if CAMPAIGN_FILE.exists():
        return load_definition(CAMPAIGN_FILE)
    return parse_definition(INLINE_DEFINITION, "inline/winback-inactive.yaml")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_pid(session: Any) -> int | None:
    """The PostgreSQL backend serving this session (None on SQLite, whose work is
    in-process)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    pid: int = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _process_cpu_seconds(pid: int | None) -> float:
    """CPU of a local process from /proc (0 when none or not visible): the session's backend.
    The server's other processes (parallel workers, other sessions) are not counted."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, op: str) -> dict[str, Any]:
    """One operation in this (fresh) process: plan, launch, launch-again, or the floor of
    plan or launch (see the module docstring)."""
    from engine.app import build_app
    from engine.settings import Settings

    loaded = _definition()
    app = build_app(Settings(database_url=url))
    extra: dict[str, Any] = {}
    with app.sessions() as session:
        started, cpu = time.perf_counter(), _cpu_seconds()
        with session.begin():
            pid = _backend_pid(session)
            backend = _process_cpu_seconds(pid)
            extra = OPERATIONS[op](session, loaded)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        backend = _process_cpu_seconds(pid) - backend
    app.close()
    return {
        "op": op,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "backend_cpu_seconds": round(backend, 3),
        "peak_rss_mb": _peak_rss_mb(),
        **extra,
    }


def _plan(session: Any, loaded: Any) -> dict[str, Any]:
    from engine import planning

    report = planning.plan(session, loaded, at=NOW)
    return {
        "audience": report.audience,
        "eligible": report.eligible,
        "exclusions": {e.reason: e.count for e in report.exclusions},
    }


def _launch(session: Any, loaded: Any) -> dict[str, Any]:
    from engine import planning

    result = planning.launch(session, loaded, at=NOW)
    return {"created": result.created, "enrolled": result.enrolled, "run_id": result.run_id}


def _audience_condition(session: Any, loaded: Any) -> Any:
    """The campaign's audience WHERE, the very one launch and plan use, with nothing else."""
    from sqlalchemy import and_

    from engine import audience
    from engine.db.models import Participant, Program

    definition = loaded.definition
    program = session.execute(
        Program.__table__.select().where(Program.key == definition.program)
    ).one()
    return and_(
        Participant.program_id == program.id,
        audience.audience_condition(definition.audience, at=NOW, tz=program.timezone),
    )


def _floor_plan(session: Any, loaded: Any) -> dict[str, Any]:
    from sqlalchemy import func, select

    from engine.db.models import Participant

    where = _audience_condition(session, loaded)
    count = session.execute(select(func.count()).select_from(Participant).where(where))
    return {"audience": count.scalar_one()}


def _floor_launch(session: Any, loaded: Any) -> dict[str, Any]:
    from sqlalchemy import Column, MetaData, Table, func, insert, literal, select

    from engine.db.models import Enrollment, Participant

    names = ["run_id", "campaign", "participant_id", "group", "enrolled_at", "state"]
    names += ["next_action_at", "next_step_index"]
    # Enrollments' columns and types; no key, index, constraint, default or trigger.
    table = Table(
        FLOOR_TABLE,
        MetaData(),
        *(Column(name, Enrollment.__table__.c[name].type) for name in names),
    )
    table.drop(session.connection(), checkfirst=True)
    table.create(session.connection())
    where = _audience_condition(session, loaded)
    when = literal(NOW, Enrollment.__table__.c.enrolled_at.type)
    rows = select(
        literal(1), literal(loaded.definition.name), Participant.id, literal("treatment"),
        when, literal("active"), when, literal(0),
    ).where(where)  # fmt: skip
    session.execute(insert(table).from_select(names, rows))
    count = session.execute(select(func.count()).select_from(table)).scalar_one()
    return {"enrolled": count}


OPERATIONS = {
    "plan": _plan,
    "launch": _launch,
    "launch-again": _launch,
    "floor-plan": _floor_plan,
    "floor-launch": _floor_launch,
}
FLOOR_TABLE = "floor_enrollments"


def _undo_launch(url: str, run_id: int) -> None:
    """Delete the run a round launched (not timed), so that the next round launches anew over
    the same tables; the floor's table too. VACUUM on PostgreSQL: no dead rows carried over."""
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DELETE FROM enrollments WHERE run_id = :r"), {"r": run_id})
        c.execute(text("DELETE FROM campaign_runs WHERE id = :r"), {"r": run_id})
        c.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE enrollments" if url.startswith("postgresql") else "VACUUM"))
    engine.dispose()


def _subprocess(url: str, op: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", op, "--url", url],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _compare(database: str, number: int, got: dict[str, Any], op: str) -> dict[str, Any]:
    measured, floor = got[op], got[f"floor-{op}"]
    floor_cpu = floor["cpu_seconds"] + floor["backend_cpu_seconds"]
    cpu = measured["cpu_seconds"] + measured["backend_cpu_seconds"]
    record = {
        "bench": "launch",
        "database": database,
        "round": number,
        **measured,
        "floor": "the audience WHERE alone: count(*)"
        if op == "plan"
        else "the audience WHERE alone, INSERT ... SELECT into a table without indexes or keys",
        "floor_seconds": floor["seconds"],
        "floor_rows": floor.get("audience", floor.get("enrolled")),
        "floor_cpu_seconds": round(floor_cpu, 3),
        # Time ratio: floor / operation (1.0 = as fast as the bare SQL; higher is better, as
        # the rate ratios of the other benchmarks).
        "ratio_to_floor": round(floor["seconds"] / measured["seconds"], 3),
        "cpu_ratio_to_floor": round(floor_cpu / cpu, 3) if cpu else None,
    }
    _emit(record)
    return record


def one_round(url: str, database: str, number: int, last: bool) -> list[dict[str, Any]]:
    """plan and its floor, launch and its floor, alternating the order every round."""
    got: dict[str, Any] = {}
    for op in ("plan", "launch"):
        order = [op, f"floor-{op}"] if number % 2 else [f"floor-{op}", op]
        for name in order:
            got[name] = _subprocess(url, name)
    records = [_compare(database, number, got, op) for op in ("plan", "launch")]
    if last:
        _emit({"bench": "launch", "database": database, **_subprocess(url, "launch-again")})
    # Also after the last round: a --keep database can be measured again with --url.
    _undo_launch(url, got["launch"]["run_id"])
    return records


def run(database: str, participants: int, events: int, keep: bool, rounds: int) -> None:
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
                "participants": participants,
                "events": events,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        records = [
            one_round(url, database, number, number == rounds) for number in range(1, rounds + 1)
        ]
        if rounds > 1:
            for index, op in enumerate(("plan", "launch")):
                mine = [r[index] for r in records]
                _emit(
                    {
                        "bench": "launch",
                        "database": database,
                        "op": f"{op} median",
                        "rounds": rounds,
                        **{
                            key: round(statistics.median(r[key] for r in mine), 3)
                            for key in (
                                "seconds",
                                "floor_seconds",
                                "ratio_to_floor",
                                "cpu_ratio_to_floor",
                                "peak_rss_mb",
                            )
                        },
                        "ratios": [r["ratio_to_floor"] for r in mine],
                        "cpu_ratios": [r["cpu_ratio_to_floor"] for r in mine],
                    }
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
    parser.add_argument("--events", type=int, help="[default: 10 per participant]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians at the end")
    parser.add_argument("--keep", action="store_true", help="Keep the filled database.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help="One round against this filled database (from --keep).")
    args = parser.parse_args()
    if args.measure:
        _emit(measure(args.url, args.measure))
        return
    if args.url:
        database = make_url(args.url).get_backend_name()
        one_round(args.url, database, 1, last=True)
        return
    events = args.events if args.events is not None else 10 * args.participants
    for database in ["sqlite", "postgresql"] if args.database == "both" else [args.database]:
        run(database, args.participants, events, args.keep, args.rounds)


if __name__ == "__main__":
    main()

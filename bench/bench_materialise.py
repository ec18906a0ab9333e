"""Benchmark: materialise one step for 1,000,000 enrollments (render + outbox insert).

    .venv/bin/python bench/bench_materialise.py --database sqlite|postgresql|both \\
        [--channel email|sms|both] [--participants 1000000] [--batch 2000] [--workers N] [--keep]

For each database and channel: a scratch database (SQLite: a file in a temporary folder;
PostgreSQL: a new database, dropped afterwards unless --keep) is migrated and filled FAST in
SQL (a recursive CTE on SQLite, generate_series on PostgreSQL): one program, N members with
email, phone, SMS consent, a locale mix (en/es/zh, so the localised templates are used) and
points, and one active run of a one-step campaign (the points_expiring email, or SMS) with N
treatment enrollments all due. Then ``engine.sequencing.advance`` runs once in a fresh Python
process, so its peak RSS is its own, and creates the N outbox rows.

Then, in another fresh process, the floor it is measured against (issue #20): the same members
read in batches of the same size, the same template rendered for each by the same function
(``engine.sequencing.render_item``) in ONE process, and the same outbox columns written into a
table without indexes, constraints, foreign keys or triggers (``floor_outbox``): COPY on
PostgreSQL, executemany on SQLite, one commit per batch. What materialise does beyond that
(the due scan, consent and exit checks, the enrollment UPDATE, the outbox's indexes, keys and
tally triggers) is what the ratio ``materialise / floor`` prices; the goal on PostgreSQL is at
least 0.7x. ``--rounds N`` repeats the whole (fresh database each time) and prints the medians
with their spread (lowest, highest).

A fair comparison on a shared machine (#20: one round gave 1.74, another 0.53): each timed part
starts from the same state, after ``VACUUM ANALYZE`` (the other part's dead rows gone: the
materialise's enrollment UPDATE leaves one dead version per member, which a floor run after it
used to step over in the enrollments' primary key) and ``CHECKPOINT`` (neither part pays for
the other's dirty pages, and both pay the full-page images of the first change of a page after
a checkpoint alike); the two parts alternate order from round to round. Besides the wall-clock
ratio each round reports the CPU ratio: the floor's CPU per message (its process + its own
server backends) over materialise's (its processes + its own backends), which the load of other
work on the shared cores distorts far less. The server's CPU is that of the backends (and any
autovacuum worker) of the scratch database only, sampled every 50 ms from /proc, so other
databases' work on the same server is not counted.

Prints one JSON line per round: messages/s, the floor's messages/s and the ratio, the
absolute target of issue #4 (>= 20,000/s; machine-dependent, for the record), the peak RSS of
the sequencer process and the largest of its render workers, and a check that the outbox holds
exactly N queued rows with content.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TARGET = 20_000  # messages per second (issue #4)
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

DEFINITION = """
name: bench-{channel}
program: bench
audience: {{field: status, eq: active}}
holdout_percent: 0
goal: {{events: [redemption], window: 30d}}
steps:
  - {{id: {channel}-1, channel: {channel}, template: points_expiring}}
"""


def _peak_rss_mb() -> float:
    """VmHWM of this process (not ru_maxrss, which Linux carries over across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_seconds() -> float:
    """CPU (user + system) of this process and of its waited-for children (the render
    workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class ServerCpu:
    """CPU of the local PostgreSQL server processes working for one database (its backends and
    autovacuum workers: the database's name is in their process title), sampled every
    ``interval`` seconds from /proc while a measurement runs. A backend's CPU is its last
    sample (less what it had used at the start); one that exits loses at most its last
    interval. ``available`` is False when no local server is visible (a remote one)."""

    def __init__(self, database: str, interval: float = 0.05) -> None:
        self.database = database
        self.interval = interval
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start: dict[tuple[int, str], int] = {}
        self._last: dict[tuple[int, str], int] = {}
        self._others: set[tuple[int, str]] = set()  # processes seen not to be postgres
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.available = False

    def _sample(self) -> dict[tuple[int, str], int]:
        """(pid, start time) -> CPU ticks of our database's server processes (the start time
        tells a reused pid from the process first seen with it)."""
        seen: dict[tuple[int, str], int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
                fields = raw[raw.rindex(")") + 2 :].split()
                key = (pid, fields[19])  # starttime
                if key in self._others:
                    continue
                if key not in self._last and key not in self._start:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if not title.startswith(b"postgres"):
                        self._others.add(key)
                        continue
                    self.available = True
                    if self.database.encode() not in title.replace(b"\0", b" ").split():
                        continue  # not ours (yet: a new backend's title comes after login)
                seen[key] = int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
        return seen

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._sample())

    def __enter__(self) -> ServerCpu:
        self._start = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())

    @property
    def seconds(self) -> float:
        used = sum(ticks - self._start.get(key, 0) for key, ticks in self._last.items())
        return used / self._tick


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- fill


def _participants_sql(g: str, postgres: bool) -> str:
    pad = f"lpad(({g} % 10000000)::text, 7, '0')" if postgres else f"printf('%07d', {g} % 10000000)"
    locale = (
        f"(ARRAY['en', 'es', 'zh'])[1 + {g} % 3]"
        if postgres
        else f"CASE {g} % 3 WHEN 0 THEN 'en' WHEN 1 THEN 'es' ELSE 'zh' END"
    )
    return f"""
        SELECT 1, 'M' || {g}, 'First' || {g}, 'Last' || {g}, 'm' || {g} || '@example.com',
               '+1415' || {pad}, 'America/Los_Angeles', {locale}, 'active',
               ({g} * 7919) % 20000, 100 + {g} % 900, 'gold',
               '{{}}', ({g} * 40503) % 2147483647, :now, :now
    """


PARTICIPANT_COLUMNS = (
    "program_id, external_id, first_name, last_name, email, phone, timezone, locale, status, "
    "points_balance, points_expiring, tier, attributes, sample_key, created_at, updated_at"
)


def fill(url: str, participants: int, channel: str) -> None:
    postgres = url.startswith("postgresql")
    engine = create_engine(url)
    now: Any = NOW if postgres else NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    source = DEFINITION.format(channel=channel)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO programs (key, name, timezone, region, created_at) "
                "VALUES ('bench', 'Bench Rewards', 'America/New_York', 'US', :now)"
            ),
            {"now": now},
        )
        if postgres:
            rows = f"FROM generate_series(1::bigint, {participants}) AS g"
            body = _participants_sql("g", True).replace("'{}'", "'{}'::jsonb") + rows
            c.execute(
                text(f"INSERT INTO participants ({PARTICIPANT_COLUMNS}) {body}"), {"now": now}
            )
        else:
            c.execute(
                text(
                    f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                    f"WHERE g < {participants}) INSERT INTO participants ({PARTICIPANT_COLUMNS}) "
                    f"{_participants_sql('g', False)} FROM s"
                ),
                {"now": now},
            )
        c.execute(
            text(
                "INSERT INTO participant_consents (participant_id, channel, status, recorded_at, "
                "source) SELECT id, 'sms', 'opted_in', :now, 'bench' FROM participants"
            ),
            {"now": now},
        )
        c.execute(
            text(
                "INSERT INTO campaign_runs (campaign, program_id, definition_hash, "
                "definition_source, fire_key, status, launched_at, enrolled_count, holdout_count) "
                "VALUES (:name, 1, 'bench', :source, 'once', 'active', :now, :n, 0)"
            ),
            {"name": f"bench-{channel}", "source": source, "now": now, "n": participants},
        )
        c.execute(
            text(
                'INSERT INTO enrollments (run_id, campaign, participant_id, "group", enrolled_at, '
                "state, next_action_at, next_step_index) SELECT 1, :name, id, 'treatment', :now, "
                "'active', :now, 0 FROM participants ORDER BY id"
            ),
            {"name": f"bench-{channel}", "now": now},
        )
    if postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    engine.dispose()


# --------------------------------------------------------------------------- measure


def measure(url: str, participants: int, batch: int, workers: int | None) -> dict[str, Any]:
    """In this (fresh) process: advance once and check what it made."""
    from engine.app import build_app
    from engine.clock import FrozenClock
    from engine.sequencing import advance  # before the clock starts, as the floor's code
    from engine.settings import Settings

    app = build_app(
        Settings(database_url=url, templates_dir=ROOT / "templates"), clock=FrozenClock(NOW)
    )
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    summary = advance(app, batch_size=batch, workers=workers)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    with app.engine.connect() as c:
        rows, with_content = c.execute(
            text(
                "SELECT count(*), sum(CASE WHEN status = 'queued' AND to_address IS NOT NULL "
                "THEN 1 ELSE 0 END) FROM outbox_messages"
            )
        ).one()
    app.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "messages": summary.queued,
        "enrollments": summary.enrollments,
        "seconds": round(seconds, 2),
        "messages_per_second": round(summary.queued / seconds) if seconds else None,
        "target": TARGET,
        "met": summary.queued / seconds >= TARGET if seconds else False,
        "sequencer_cpu_us_per_message": round(cpu * 1e6 / summary.queued, 1)
        if summary.queued
        else None,
        "cpu_seconds": cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_worker_mb": round(children, 1),
        "outbox_rows": int(rows),
        "outbox_queued_with_address": int(with_content or 0),
        "correct": int(rows) == participants == int(with_content or 0) == summary.queued,
    }


# --------------------------------------------------------------------------- floor

FLOOR_TABLE = "floor_outbox"


def measure_floor(url: str, participants: int, batch: int) -> dict[str, Any]:
    """In this (fresh) process: the floor of materialise (see the module docstring)."""
    from sqlalchemy.orm import Session

    from engine.consent.unsubscribe import signing_key
    from engine.db.session import make_engine
    from engine.definitions.loader import parse_definition
    from engine.sending.outbox import message_uids
    from engine.sequencing import RendererConfig, RenderItem, render_item
    from engine.sequencing.materialise import OUTBOX_COLUMNS
    from engine.settings import Settings
    from engine.templates import Attributes, ParticipantData

    postgres = url.startswith("postgresql")
    settings = Settings(database_url=url, templates_dir=ROOT / "templates")
    engine = make_engine(url)
    with engine.begin() as c:
        campaign, source, program = c.execute(
            text(
                "SELECT r.campaign, r.definition_source, p.name FROM campaign_runs AS r "
                "JOIN programs AS p ON p.id = r.program_id WHERE r.id = 1"
            )
        ).one()
        c.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        if postgres:
            # Same columns, types and defaults (the id from the outbox's sequence), nothing
            # else: no index, key, check, foreign key or trigger.
            c.execute(text(f"CREATE TABLE {FLOOR_TABLE} (LIKE outbox_messages INCLUDING DEFAULTS)"))
        else:
            c.execute(text(f"CREATE TABLE {FLOOR_TABLE} AS SELECT * FROM outbox_messages WHERE 0"))
    with Session(engine) as session, session.begin():
        key = signing_key(session, settings)
    definition = parse_definition(source, "bench").definition
    step = definition.steps[0]
    assert step.template is not None
    renderer = RendererConfig(
        str(settings.templates_dir), settings.postal_address, settings.public_url, key
    ).build()
    at: Any = NOW if postgres else NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    columns = ", ".join(OUTBOX_COLUMNS)
    select_sql = (
        "SELECT e.id, e.participant_id, p.external_id, p.first_name, p.last_name, p.email, "
        "p.phone, p.status, p.locale, p.tier, p.points_balance, p.points_expiring, "
        "p.points_expire_at, p.renewal_date, p.attributes FROM enrollments AS e "
        "JOIN participants AS p ON p.id = e.participant_id "
        "WHERE e.id > {mark} ORDER BY e.id LIMIT {batch}"
    ).format(mark="%s" if postgres else "?", batch=int(batch))
    insert_sql = (
        f"INSERT INTO {FLOOR_TABLE} ({columns}) VALUES ({', '.join('?' * len(OUTBOX_COLUMNS))})"
    )
    raw: Any = engine.raw_connection()
    driver = raw.driver_connection
    made, last = 0, 0
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    while True:
        cursor = driver.cursor()
        rows = cursor.execute(select_sql, (last,)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        uids = message_uids(len(rows))
        out = []
        for i, r in enumerate(rows):
            values = list(r)
            if not postgres:  # SQLite returns the text SQLAlchemy's types store
                for j in (12, 13):
                    values[j] = None if values[j] is None else date.fromisoformat(values[j])
                values[14] = None if values[14] is None else json.loads(values[14])
            member = ParticipantData(*values[2:14], attributes=Attributes(values[14] or {}))
            address = r[5] if step.channel == "email" else r[6]
            content, error = render_item(
                renderer,
                RenderItem(
                    step.channel,
                    step.template,
                    r[8],
                    member,
                    r[1],
                    program,
                    campaign,
                    definition.description,
                    step.id,
                    step.channel == "sms",
                ),
            )
            assert content is not None, error
            out.append(
                (
                    uids[i],
                    1,
                    r[0],
                    r[1],
                    campaign,
                    step.id,
                    0,
                    None,
                    step.channel,
                    step.template,
                    r[8],
                    address,
                    content,
                    "queued",
                    None,
                    at,
                    0,
                    None,
                    at,
                    at,
                    None,
                )
            )
        if postgres:
            with cursor.copy(f"COPY {FLOOR_TABLE} ({columns}) FROM STDIN") as copy:
                for row in out:
                    copy.write_row(row)
        else:
            cursor.executemany(insert_sql, out)
        driver.commit()
        made += len(out)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    raw.close()
    engine.dispose()
    return {
        "messages": made,
        "seconds": round(seconds, 2),
        "messages_per_second": round(made / seconds) if seconds else None,
        "cpu_us_per_message": round(cpu * 1e6 / made, 1) if made else None,
        "cpu_seconds": cpu,
        "correct": made == participants,
    }


def _database(kind: str, keep: bool) -> tuple[str, Any]:
    """A migrated scratch database: (url, cleanup)."""
    from engine.db import migrate
    from engine.db.session import make_engine

    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-materialise-"))
        url = f"sqlite:///{folder / 'campaign.db'}"

        def cleanup() -> None:
            if not keep:
                for path in folder.iterdir():
                    path.unlink()
                folder.rmdir()

    else:
        name = f"bench_materialise_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)

        def cleanup() -> None:
            if not keep:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url, cleanup


def _subprocess(mode: str, url: str, args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """One measurement in a fresh process (its peak RSS its own), with the local server's CPU
    per message meanwhile on PostgreSQL."""
    command = [
        sys.executable,
        __file__,
        mode,
        url,
        "--participants",
        str(args.participants),
        "--batch",
        str(args.batch),
    ]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    settle(url)
    server = ServerCpu(make_url(url).database or "") if kind == "postgresql" else None
    with server if server is not None else contextlib.nullcontext():
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    record: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    client = record.pop("cpu_seconds")
    total = client
    if server is not None and server.available and record["messages"]:
        record["server_cpu_us_per_message"] = round(server.seconds * 1e6 / record["messages"], 1)
        total += server.seconds
    record["total_cpu_us_per_message"] = (
        round(total * 1e6 / record["messages"], 1) if record["messages"] else None
    )
    return record


def settle(url: str) -> None:
    """The same starting state for each timed part: no dead rows left by the other part, fresh
    statistics, and no dirty pages of its (or the fill's) to write (PostgreSQL: VACUUM ANALYZE
    and CHECKPOINT; SQLite: the WAL copied back and truncated)."""
    engine = create_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if url.startswith("postgresql"):
            c.execute(text("VACUUM ANALYZE"))
            c.execute(text("CHECKPOINT"))
        else:
            c.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()


def run(kind: str, channel: str, args: argparse.Namespace, floor_first: bool) -> dict[str, Any]:
    """One round: a fresh database, materialise and the floor on the same members (the floor
    first when ``floor_first``: rounds alternate), each after :func:`settle`."""
    url, cleanup = _database(kind, args.keep)
    try:
        started = time.perf_counter()
        fill(url, args.participants, channel)
        _emit(
            {
                "step": "fill",
                "database": kind,
                "channel": channel,
                "participants": args.participants,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        if floor_first:
            floor = _subprocess("--floor", url, args, kind)
            record = _subprocess("--measure", url, args, kind)
        else:
            record = _subprocess("--measure", url, args, kind)
            floor = _subprocess("--floor", url, args, kind)
        ratio = record["messages_per_second"] / floor["messages_per_second"]
        cpu_ratio = floor["total_cpu_us_per_message"] / record["total_cpu_us_per_message"]
        record = {
            "step": "materialise",
            "database": kind,
            "channel": channel,
            **record,
            "floor": "render in one process + "
            + ("COPY" if kind == "postgresql" else "executemany")
            + " into a table without indexes, same members and columns",
            "floor_messages_per_second": floor["messages_per_second"],
            "floor_cpu_us_per_message": floor["cpu_us_per_message"],
            "floor_server_cpu_us_per_message": floor.get("server_cpu_us_per_message"),
            "floor_total_cpu_us_per_message": floor["total_cpu_us_per_message"],
            "floor_correct": floor["correct"],
            "order": "floor first" if floor_first else "materialise first",
            "ratio_to_floor": round(ratio, 3),
            "cpu_ratio_to_floor": round(cpu_ratio, 3),
            "load_average": round(os.getloadavg()[0], 2),
        }
        _emit(record)
        if args.keep:
            _emit({"kept": url})
        return record
    finally:
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--channel", choices=["email", "sms", "both"], default="both")
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--workers", type=int, help="render processes [default: settings]")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; medians at the end")
    parser.add_argument("--keep", action="store_true", help="Keep the filled databases.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.participants, args.batch, args.workers)))
        return
    if args.floor:
        print(json.dumps(measure_floor(args.floor, args.participants, args.batch)))
        return
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    channels = ["email", "sms"] if args.channel == "both" else [args.channel]
    for kind in databases:
        for channel in channels:
            records = [run(kind, channel, args, i % 2 == 1) for i in range(args.rounds)]
            if args.rounds > 1:
                ratios = [r["ratio_to_floor"] for r in records]
                cpu_ratios = [r["cpu_ratio_to_floor"] for r in records]
                _emit(
                    {
                        "step": "median",
                        "database": kind,
                        "channel": channel,
                        "rounds": args.rounds,
                        **{
                            name: statistics.median(r[name] for r in records)
                            for name in (
                                "messages_per_second",
                                "floor_messages_per_second",
                                "ratio_to_floor",
                                "cpu_ratio_to_floor",
                                "total_cpu_us_per_message",
                                "floor_total_cpu_us_per_message",
                            )
                        },
                        "ratios": ratios,
                        "ratio_spread": [min(ratios), max(ratios)],
                        "cpu_ratios": cpu_ratios,
                        "cpu_ratio_spread": [min(cpu_ratios), max(cpu_ratios)],
                        "correct": all(r["correct"] and r["floor_correct"] for r in records),
                    }
                )


if __name__ == "__main__":
    main()

"""Benchmark: import a realistic participant file, then re-import it unchanged, each next to
its floor measured in the same run (issue #20: ratios, no absolute rate asserted).

    .venv/bin/python bench/bench_import.py --rows 1000000 --database sqlite|postgresql \\
        [--rounds 3]
    .venv/bin/python bench/bench_import.py --database sqlite --dataset /tmp/data/participants.csv

Writes the data set with engine.demo.generator.write_dataset (1% planted bad rows), then, for
each round, in a fresh scratch database (SQLite: a new file; PostgreSQL: a new database,
dropped afterwards), each in its own Python process so that its memory and CPU are its own:

- ``import``: ``engine.participants.importer.import_participants`` of the file (validation in
  worker processes, upserts, consents, rejects file);
- ``reimport``: the same file again (every row unchanged);
- the floor, the bare work an import cannot avoid, done by the simplest code on the same file:
  the csv module reads it, a BLAKE2 digest of each row is computed (what makes a re-import
  cheap), and the rows' columns plus the digest are written as text into a table without
  indexes, keys, constraints or triggers (``floor_participants``): COPY on PostgreSQL,
  executemany on SQLite, a commit every COMMIT_ROWS rows as the importer does. The re-import
  floor: the stored digests read in one pass into a dict, the file read and digested again,
  each row looked up by its key. What the import does beyond its floor (validation of emails,
  phones, time zones and dates, typed columns, the participants table's indexes and keys,
  consents, the rejects file) is what the ratio prices.

The order alternates (floor first in even rounds) so that a drifting load on the shared
machine falls on both alike. Prints one JSON line per round and measurement: rows/s of the
import and of its floor, the ratio import/floor (wall time), the same per CPU second of the
measured process and its children (the importer's validation workers; the database server's
CPU not counted), and the import's memory: ru_maxrss of the importer plus that of its largest
validation worker (which counts the pages a forked worker shares with the importer twice), and
the peak PSS of the process tree sampled from /proc every 100 ms (shared pages counted once).
With ``--rounds N`` a last line gives the medians. Issue #2's absolute targets (15,000 rows/s,
re-import 100,000 rows/s, 200 MB) are history, not checked.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FLOOR_TABLE = "floor_participants"


def _maxrss_mb() -> tuple[float, float]:
    """ru_maxrss of this process and of its largest (reaped) child, in MB (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(own / 1024, 1), round(children / 1024, 1)


def _cpu_seconds() -> float:
    """CPU (user + system) of this process and of its waited-for children (the workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _tree_pss_kib(pid: int) -> int:
    """Proportional set size of a process and its descendants: pages shared between the
    importer and its forked workers count once, split between them (RSS counts them twice)."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(c) for c in handle.read().split()]
    except (OSError, ValueError):
        return total
    return total + sum(_tree_pss_kib(child) for child in children)


class PssSampler(threading.Thread):
    """Samples the PSS of this process tree every 100 ms; ``peak_mb`` is the highest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            self.peak_kib = max(self.peak_kib, _tree_pss_kib(os.getpid()))

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return round(self.peak_kib / 1024, 1)


def run_import(url: str, file: Path) -> dict[str, Any]:
    """One import (or re-import) in this process."""
    from engine.app import build_app
    from engine.participants.importer import import_participants
    from engine.settings import Settings

    app = build_app(Settings(database_url=url))
    sampler = PssSampler()
    sampler.start()
    cpu = _cpu_seconds()
    summary = import_participants(app, file, program_key="bench", at=NOW)
    cpu = _cpu_seconds() - cpu
    pss = sampler.stop()
    app.close()
    own, child = _maxrss_mb()
    return {
        "read": summary.read,
        "inserted": summary.inserted,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "rejected": summary.rejected,
        "seconds": round(summary.seconds, 2),
        "rows_per_s": round(summary.rows_per_second),
        "rows_per_cpu_s": round(summary.read / cpu),
        "peak_rss_mb": round(own + child, 1),
        "maxrss_main_mb": own,
        "maxrss_largest_worker_mb": child,
        "peak_tree_pss_mb": pss,
    }


def _digested_rows(file: Path, width: int) -> Any:
    """The file's data rows, each padded or cut to ``width`` cells, with its digest."""
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            cells = (row + [""] * width)[:width]
            yield hashlib.blake2b("\x1f".join(row).encode(), digest_size=16).digest(), cells


def run_floor(url: str, file: Path) -> dict[str, Any]:
    """The floor of the import and of the re-import, in this process (module docstring)."""
    from engine.participants.importer import COMMIT_ROWS

    postgres = url.startswith("postgresql")
    with file.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    columns = ["program_id", "digest", *(f'"{name}"' for name in header)]
    engine = create_engine(url)
    raw: Any = engine.raw_connection()
    driver = raw.driver_connection
    cursor = driver.cursor()
    cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    cells = ", ".join(f"{name} text" for name in columns[2:])
    blob = "bytea" if postgres else "blob"
    cursor.execute(f"CREATE TABLE {FLOOR_TABLE} (program_id integer, digest {blob}, {cells})")
    driver.commit()
    names = ", ".join(columns)
    insert_sql = f"INSERT INTO {FLOOR_TABLE} ({names}) VALUES ({', '.join('?' * len(columns))})"

    def write(batch: list[tuple[Any, ...]]) -> None:
        if postgres:
            with cursor.copy(f"COPY {FLOOR_TABLE} ({names}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        else:
            cursor.executemany(insert_sql, batch)
        driver.commit()

    started, cpu = time.perf_counter(), _cpu_seconds()
    batch: list[tuple[Any, ...]] = []
    read = 0
    for digest, row in _digested_rows(file, len(header)):
        batch.append((1, digest, *row))
        if len(batch) == COMMIT_ROWS:
            write(batch)
            read += len(batch)
            batch = []
    write(batch)
    read += len(batch)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu

    started_again, cpu_again = time.perf_counter(), _cpu_seconds()
    cursor.execute(f'SELECT "{header[0]}", digest FROM {FLOOR_TABLE} WHERE program_id = 1')
    stored = {key: bytes(digest) for key, digest in cursor.fetchall()}
    unchanged = sum(stored.get(row[0]) == digest for digest, row in _digested_rows(file, 1))
    seconds_again = time.perf_counter() - started_again
    cpu_again = _cpu_seconds() - cpu_again
    raw.close()
    engine.dispose()
    return {
        "read": read,
        "seconds": round(seconds, 2),
        "rows_per_s": round(read / seconds),
        "rows_per_cpu_s": round(read / cpu),
        "reimport_unchanged": unchanged,
        "reimport_seconds": round(seconds_again, 2),
        "reimport_rows_per_s": round(read / seconds_again),
        "reimport_rows_per_cpu_s": round(read / cpu_again),
    }


def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def _fresh_database(kind: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """A migrated scratch database holding the program "bench": (url, drop)."""
    from engine.app import build_app
    from engine.db import migrate
    from engine.db.session import make_engine
    from engine.programs import add_program
    from engine.settings import Settings

    if kind == "sqlite":
        path = folder / "bench.db"
        for stale in folder.glob("bench.db*"):
            stale.unlink()
        url = f"sqlite:///{path}"

        def drop() -> None:
            for stale in folder.glob("bench.db*"):
                stale.unlink()

    else:
        name = f"bench_import_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(False)

        def drop() -> None:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = build_app(Settings(database_url=url))
    with app.sessions() as session, session.begin():
        add_program(
            session, key="bench", name="Bench Rewards", timezone="America/New_York",
            region="US", at=NOW,
        )  # fmt: skip
    app.close()
    return url, drop


def _phase(phase: str, url: str, file: Path) -> dict[str, Any]:
    """One measurement in a fresh Python process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--url", url, "--file", str(file)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def one_round(kind: str, folder: Path, file: Path, number: int) -> list[dict[str, Any]]:
    url, drop = _fresh_database(kind, folder)
    try:
        order = ["floor", "import", "reimport"] if number % 2 == 0 else ["import", "reimport"]
        if number % 2:
            order.append("floor")
        got = {phase: _phase(phase, url, file) for phase in order}
    finally:
        drop()
    floor = got["floor"]
    writer = "COPY" if kind == "postgresql" else "executemany"
    records = []
    for phase, prefix in (("import", ""), ("reimport", "reimport_")):
        measured = got[phase]
        records.append(
            {
                "phase": phase,
                "round": number,
                "database": kind,
                **measured,
                "floor": (
                    f"csv module + digest + {writer} into a table without indexes"
                    if phase == "import"
                    else "stored digests in one pass + csv module + digest + dict lookup"
                ),
                "floor_rows_per_s": floor[f"{prefix}rows_per_s"],
                **({"floor_unchanged": floor["reimport_unchanged"]} if prefix else {}),
                "floor_rows_per_cpu_s": floor[f"{prefix}rows_per_cpu_s"],
                "ratio_to_floor": round(measured["rows_per_s"] / floor[f"{prefix}rows_per_s"], 3),
                "cpu_ratio_to_floor": round(
                    measured["rows_per_cpu_s"] / floor[f"{prefix}rows_per_cpu_s"], 3
                ),
                # Every row read: the floor's rows are the import's (the re-import's count of
                # rows whose digest matched is shown; rows sharing a key find the last one).
                "floor_correct": floor["read"] == measured["read"],
            }
        )
    for record in records:
        print(json.dumps(record), flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; medians at the end")
    parser.add_argument("--folder", type=Path, help="Work folder [default: a temporary one].")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="An existing participants.csv (bench/make_dataset.py) instead of writing one.",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        measure = run_floor if args.phase == "floor" else run_import
        print(json.dumps(measure(args.url, args.file)), flush=True)
        return

    from engine.demo.generator import write_dataset

    with tempfile.TemporaryDirectory(prefix="bench_import_") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if args.dataset is not None:
            participants = args.dataset
        else:
            paths = write_dataset(
                folder, participants=args.rows, events_per_participant=0.0, now=NOW
            )
            participants = paths.participants
        print(
            json.dumps(
                {
                    "phase": "dataset",
                    "file": str(participants),
                    "bytes": participants.stat().st_size,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            ),
            flush=True,
        )
        rounds = [
            one_round(args.database, folder, participants, number)
            for number in range(1, args.rounds + 1)
        ]
    if args.rounds > 1:
        for index, phase in enumerate(("import", "reimport")):
            records = [r[index] for r in rounds]
            print(
                json.dumps(
                    {
                        "phase": f"{phase} median",
                        "database": args.database,
                        "rounds": args.rounds,
                        **{
                            name: round(statistics.median(r[name] for r in records), 3)
                            for name in (
                                "rows_per_s",
                                "floor_rows_per_s",
                                "ratio_to_floor",
                                "rows_per_cpu_s",
                                "floor_rows_per_cpu_s",
                                "cpu_ratio_to_floor",
                                "peak_rss_mb",
                                "peak_tree_pss_mb",
                            )
                        },
                        "ratios": [r["ratio_to_floor"] for r in records],
                        "cpu_ratios": [r["cpu_ratio_to_floor"] for r in records],
                        "correct": all(r["floor_correct"] for r in records),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

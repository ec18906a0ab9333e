"""Benchmark: import a realistic participant file, then re-import it unchanged.

    .venv/bin/python bench/bench_import.py --rows 1000000 --database sqlite|postgresql
    .venv/bin/python bench/bench_import.py --database sqlite --dataset /tmp/data/participants.csv

Writes the data set with engine.demo.generator.write_dataset, imports it into a fresh
database (PostgreSQL: a scratch database, dropped afterwards), re-imports the same file, and
prints one JSON line per phase with the figures, the targets and whether they were met:

- import with validation: >= 15,000 rows/s and peak RSS <= 200 MB;
- re-import of the unchanged file: >= 100,000 rows/s.

Each import runs in its own Python process, so its memory figures are its own and not the
generator's. Two are reported: ru_maxrss of the importer plus that of its largest validation
worker (the brief's measure; it counts the pages a forked worker shares with the importer
twice), and the peak PSS of the process tree sampled from /proc every 100 ms (shared pages
counted once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POSTGRES_ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGETS = {
    "import": {"rows_per_s": 15_000, "peak_rss_mb": 200},
    "reimport": {"rows_per_s": 100_000, "peak_rss_mb": 200},
}


def _maxrss_mb() -> tuple[float, float]:
    """ru_maxrss of this process and of its largest (reaped) child, in MB (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(own / 1024, 1), round(children / 1024, 1)


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


def run_phase(phase: str, url: str, file: Path) -> None:
    """One import in this process; prints its JSON line."""
    from engine.app import build_app
    from engine.participants.importer import import_participants
    from engine.settings import Settings

    app = build_app(Settings(database_url=url))
    sampler = PssSampler()
    sampler.start()
    summary = import_participants(app, file, program_key="bench", at=NOW)
    pss = sampler.stop()
    app.close()
    target = TARGETS[phase]
    rate = summary.rows_per_second
    own, child = _maxrss_mb()
    rss = round(own + child, 1)
    print(
        json.dumps(
            {
                "phase": phase,
                "database": make_url(url).get_backend_name(),
                "read": summary.read,
                "inserted": summary.inserted,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "rejected": summary.rejected,
                "seconds": round(summary.seconds, 2),
                "rows_per_s": round(rate),
                "peak_rss_mb": rss,
                "maxrss_main_mb": own,
                "maxrss_largest_worker_mb": child,
                "peak_tree_pss_mb": pss,
                "target_rows_per_s": target["rows_per_s"],
                "target_peak_rss_mb": target["peak_rss_mb"],
                "met_rows_per_s": rate >= target["rows_per_s"],
                "met_rss": rss <= target["peak_rss_mb"],
                "met_pss": pss <= target["peak_rss_mb"],
            }
        ),
        flush=True,
    )


def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
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
        run_phase(args.phase, args.url, args.file)
        return

    from engine.app import build_app
    from engine.db import migrate
    from engine.db.session import make_engine
    from engine.demo.generator import write_dataset
    from engine.programs import add_program
    from engine.settings import Settings

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
        scratch_db = None
        if args.database == "sqlite":
            url = f"sqlite:///{folder / 'bench.db'}"
            (folder / "bench.db").unlink(missing_ok=True)
        else:
            scratch_db = f"bench_import_{uuid.uuid4().hex[:10]}"
            _admin(f'CREATE DATABASE "{scratch_db}"')
            url = make_url(POSTGRES_ADMIN).set(database=scratch_db).render_as_string(False)
        try:
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            app = build_app(Settings(database_url=url))
            with app.sessions() as session, session.begin():
                add_program(
                    session,
                    key="bench",
                    name="Bench Rewards",
                    timezone="America/New_York",
                    region="US",
                    at=NOW,
                )
            app.close()
            for phase in ("import", "reimport"):
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--phase",
                        phase,
                        "--url",
                        url,
                        "--file",
                        str(participants),
                    ],
                    check=True,
                )
        finally:
            if scratch_db is not None:
                _admin(f'DROP DATABASE IF EXISTS "{scratch_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()

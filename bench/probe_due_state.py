"""Probe (#20): what a materialise batch's writes cost the PostgreSQL server per row, today's
layout against the due state in a narrow table of its own.

    .venv/bin/python bench/probe_due_state.py [--enrollments 100000] [--batch 2000]

A scratch database migrated to head holds two runs of ``--enrollments`` active treatment
enrollments each. Run 1 moves as today: ``UPDATE enrollments`` (the statement of
engine/sequencing/write.py, never HOT: next_action_at and state are in the due index) then a
COPY of its outbox rows. Run 2 moves through a variant: ``enrollment_due`` (enrollment id,
run id, state, step index, next_action_at, with the due and open-by-run partial indexes and
the primary key only) is updated instead, then the same COPY (the outbox's key to
enrollments unchanged). Batches alternate A/B (then B/A) in one transaction each; the server
backend's CPU (its /proc stat, in clock ticks) is read around each statement. Prints the
mean microseconds a row of each part. The figures decided against moving the due state
(engine/sequencing/write.py, BatchWriter.move).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.db import migrate  # noqa: E402
from engine.db.session import make_engine  # noqa: E402

ADMIN = os.environ.get(
    "CAMPAIGN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HZ = os.sysconf("SC_CLK_TCK")
CONTENT = json.dumps(
    {
        "body": "Hi Alex, your 120 points expire on 31 March. Reply STOP to opt out.",
        "encoding": "GSM-7",
        "segments": 1,
    }
)
OUTBOX = (
    "uid, run_id, enrollment_id, participant_id, campaign, step_id, step_index, channel, "
    "template, to_address, content, status, not_before, attempts, created_at, updated_at"
)
FILL = [
    "INSERT INTO programs (key, name, timezone, region, created_at) "
    "VALUES ('p', 'P', 'America/New_York', 'US', now())",
    "INSERT INTO campaign_runs (id, campaign, program_id, definition_hash, definition_source, "
    "fire_key, status, launched_at, enrolled_count, holdout_count) "
    "SELECT r, 'c' || r, id, 'h', 'x', 'once', 'active', now(), 0, 0 "
    "FROM programs, (VALUES (1), (2)) AS runs(r)",
    "INSERT INTO participants (program_id, external_id, first_name, last_name, email, phone, "
    "timezone, status, points_balance, points_expiring, attributes, sample_key, created_at, "
    "updated_at) SELECT (SELECT id FROM programs), 'm' || g, 'Alex', 'M' || g, "
    "'m' || g || '@example.com', '+1202' || lpad(g::text, 7, '0'), 'America/New_York', "
    "'active', 0, 0, '{}', g, now(), now() FROM generate_series(1, :n) AS g",
    'INSERT INTO enrollments (run_id, campaign, participant_id, "group", enrolled_at, state, '
    "next_action_at, next_step_index) SELECT r, 'c' || r, id, 'treatment', now(), 'active', "
    ":at, 1 FROM participants, (VALUES (1), (2)) AS runs(r)",
    # The variant: what the due scan and the open-by-run check read, and nothing else.
    "CREATE TABLE enrollment_due (enrollment_id bigint PRIMARY KEY REFERENCES enrollments(id) "
    "ON DELETE CASCADE, run_id bigint NOT NULL, state varchar(16) NOT NULL, "
    "next_step_index integer NOT NULL, next_action_at timestamptz)",
    "CREATE INDEX ix_due_variant ON enrollment_due (next_action_at, enrollment_id) "
    "WHERE state = 'active'",
    "CREATE INDEX ix_due_variant_open ON enrollment_due (run_id) WHERE state = 'active'",
    "INSERT INTO enrollment_due SELECT id, run_id, state, next_step_index, next_action_at "
    "FROM enrollments WHERE run_id = 2",
]
MOVE = {
    "today": "UPDATE enrollments SET next_step_index = %s, next_action_at = %s, state = %s, "
    "exit_reason = NULL WHERE id = ANY(%s::bigint[]) AND next_step_index = %s "
    "AND state = 'active' RETURNING id",
    "narrow": "UPDATE enrollment_due SET next_step_index = %s, next_action_at = %s, state = %s "
    "WHERE enrollment_id = ANY(%s::bigint[]) AND next_step_index = %s AND state = 'active' "
    "RETURNING enrollment_id",
}


def _ticks(pid: int) -> int:
    """The backend's user + system CPU, in clock ticks (the server runs on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def probe(url: str, count: int, size: int) -> dict[str, dict[str, list[float]]]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as db:
        for statement in FILL:
            db.execute(text(statement), {"n": count, "at": NOW})
    with engine.connect() as db:
        db.connection.driver_connection.autocommit = True
        db.exec_driver_sql("VACUUM ANALYZE")
        db.exec_driver_sql("CHECKPOINT")
        rows = db.execute(text("SELECT id, participant_id, run_id FROM enrollments ORDER BY id"))
        members = {i: p for i, p, _ in rows.all()}
        ids = {
            run: [
                row[0]
                for row in db.execute(
                    text(f"SELECT id FROM enrollments WHERE run_id = {run} ORDER BY id")
                )
            ]
            for run in (1, 2)
        }
    figures: dict[str, dict[str, list[float]]] = {v: {"move": [], "copy": []} for v in MOVE}
    raw = engine.raw_connection()
    conn: Any = raw.driver_connection
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    later = NOW + timedelta(days=3)
    for start in range(0, count, size):
        variants = ["today", "narrow"]
        for variant in variants if (start // size) % 2 == 0 else variants[::-1]:
            run = 1 if variant == "today" else 2
            batch = ids[run][start : start + size]
            array = "{" + ",".join(map(str, batch)) + "}"
            with conn.transaction():
                before = _ticks(pid)
                moved = conn.execute(MOVE[variant], (2, later, "active", array, 1)).fetchall()
                assert len(moved) == len(batch)
                middle = _ticks(pid)
                with conn.cursor().copy(f"COPY outbox_messages ({OUTBOX}) FROM STDIN") as copy:
                    for enrollment in batch:
                        copy.write_row(
                            (
                                uuid.uuid4().hex,
                                run,
                                enrollment,
                                members[enrollment],
                                f"c{run}",
                                "sms-2",
                                1,
                                "sms",
                                "t",
                                "+12025550100",
                                CONTENT,
                                "queued",
                                NOW,
                                0,
                                NOW,
                                NOW,
                            )
                        )
                conn.execute("SELECT 1")
                after = _ticks(pid)
            figures[variant]["move"].append((middle - before) / HZ * 1e6 / len(batch))
            figures[variant]["copy"].append((after - middle) / HZ * 1e6 / len(batch))
    raw.close()
    engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    name = f"probe_due_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
        figures = probe(url, args.enrollments, args.batch)
    finally:
        with admin.connect() as db:
            db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    for variant, parts in figures.items():
        total = [m + c for m, c in zip(parts["move"], parts["copy"], strict=True)]
        print(
            json.dumps(
                {
                    "layout": variant,
                    "enrollments": args.enrollments,
                    "batch": args.batch,
                    "server_cpu_us_per_row": {
                        "move": round(statistics.mean(parts["move"]), 1),
                        "outbox_copy": round(statistics.mean(parts["copy"]), 1),
                        "both": round(statistics.mean(total), 1),
                    },
                }
            )
        )


if __name__ == "__main__":
    main()

"""A /metrics scrape against a large outbox on PostgreSQL: every query's plan, and the scrape's
time against a full scan of the outbox measured in the same run (the floor it must stay far
below: no scrape may read the outbox, or the open call tasks, in full).

    .venv/bin/python bench/bench_metrics_scrape.py --messages 1000000 --call-tasks 100000

Builds a fresh database (dropped after, unless --keep), fills it in SQL (generate_series):
``--messages`` outbox rows (members with four steps each: three sent, the last one queued
for half of them, half of those due now; 2% of members in a paused run), ``--call-tasks``
call tasks (a fifth open, by five teams; at most one per member), then VACUUM ANALYZE.
Prints one JSON line per query (its plan's node types and whether it scanned a large table in
full) and one for the scrape: median of --rounds scrapes, the full scan's median,
their ratio. Exit status 1 when a query reads outbox_messages or call_tasks sequentially.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from engine.app import build_app
from engine.db import migrate
from engine.db.session import make_engine
from engine.metrics.collector import scrape
from engine.settings import Settings

LARGE_TABLES = ("outbox_messages", "call_tasks")

FILL = """
INSERT INTO programs (key, name, timezone, region, created_at, sms_opt_out_notice)
VALUES ('bench', 'Bench', 'America/New_York', 'US', now(), true);
INSERT INTO participants (program_id, external_id, status, points_balance, points_expiring,
    attributes, sample_key, created_at, updated_at)
SELECT p.id, 'm' || g, 'active', 0, 0, '{}'::jsonb, g, now(), now()
FROM programs p, generate_series(1, :messages / 4) AS g;
INSERT INTO campaign_runs (campaign, program_id, definition_hash, definition_source, fire_key,
    status, launched_at, enrolled_count, holdout_count)
SELECT c, p.id, 'h', '', c, s, now(), 0, 0
FROM programs p, (VALUES ('active-run', 'active'), ('paused-run', 'paused')) AS r(c, s);
INSERT INTO enrollments (run_id, campaign, participant_id, "group", enrolled_at, state,
    next_step_index)
SELECT r.id, r.campaign, m.id, 'treatment', now(), 'active', 1
FROM participants m JOIN campaign_runs r
  ON r.campaign = CASE WHEN m.sample_key % 50 = 0 THEN 'paused-run' ELSE 'active-run' END;
INSERT INTO outbox_messages (uid, run_id, enrollment_id, participant_id, campaign, step_id,
    step_index, channel, template, content, status, not_before, attempts, created_at,
    updated_at, to_address)
SELECT md5(e.id || '-' || s), e.run_id, e.id, e.participant_id, e.campaign, 'step' || s, s,
    CASE WHEN s = 2 THEN 'sms' ELSE 'email' END, 't', '{}'::jsonb,
    CASE WHEN s < 3 THEN 'sent' WHEN e.id % 2 = 0 THEN 'queued' ELSE 'delivered' END,
    CASE WHEN s < 3 THEN now() - interval '1 day'
         WHEN e.id % 4 = 0 THEN now() - (e.id % 3600) * interval '1 second'
         ELSE now() + interval '1 day' END,
    1, now(), now(), 'x@example.org'
FROM enrollments e, generate_series(0, 3) AS s;
INSERT INTO call_tasks (kind, run_id, participant_id, team, status, due_at, attempts,
    max_attempts, created_at, updated_at)
SELECT 'campaign', r.id, m.id, 'team' || (m.sample_key % 5),
    CASE WHEN m.sample_key % 5 = 0 THEN 'open' ELSE 'closed' END, now(), 0, 3, now(), now()
FROM participants m, campaign_runs r
WHERE r.campaign = 'active-run' AND m.sample_key <= :tasks;
"""


def _median_seconds(work: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--call-tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()

    name = f"campaign_bench_metrics_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    bad = False
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        with engine.begin() as connection:
            for statement in FILL.split(";\n"):
                if statement.strip():
                    connection.execute(
                        text(statement), {"messages": args.messages, "tasks": args.call_tasks}
                    )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
        fill_seconds = time.perf_counter() - started
        engine.dispose()

        app = build_app(Settings(database_url=url))
        statements: list[tuple[str, Any]] = []

        def remember(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
            if sql.lstrip().upper().startswith("SELECT"):
                statements.append((sql, params))

        event.listen(app.engine, "before_cursor_execute", remember)
        scrape(app)
        event.remove(app.engine, "before_cursor_execute", remember)
        with app.engine.connect() as connection:
            for sql, params in statements:
                raw = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params
                ).scalar_one()
                plan = (raw if isinstance(raw, list) else json.loads(raw))[0]
                nodes = _nodes(plan["Plan"])
                full = [r for kind, r in nodes if kind == "Seq Scan" and r in LARGE_TABLES]
                bad = bad or bool(full)
                print(
                    json.dumps(
                        {
                            "query": " ".join(sql.split())[:160],
                            "ms": round(plan["Execution Time"], 2),
                            "nodes": [f"{kind} {rel or ''}".strip() for kind, rel in nodes],
                            "full_scan_of_a_large_table": full,
                        }
                    )
                )

        scrape_seconds = _median_seconds(lambda: scrape(app), args.rounds)

        def full_scan() -> None:
            with app.engine.begin() as connection:
                connection.execute(text("SET LOCAL enable_indexscan = off"))
                connection.execute(text("SET LOCAL enable_indexonlyscan = off"))
                connection.execute(text("SET LOCAL enable_bitmapscan = off"))
                connection.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one()

        floor_seconds = _median_seconds(full_scan, args.rounds)
        app.close()
        print(
            json.dumps(
                {
                    "measure": "metrics scrape (all queries, generate_latest)",
                    "messages": args.messages,
                    "call_tasks": args.call_tasks,
                    "fill_seconds": round(fill_seconds, 1),
                    "scrape_ms": round(scrape_seconds * 1000, 2),
                    "floor": "one sequential count(*) of outbox_messages, same run",
                    "floor_ms": round(floor_seconds * 1000, 2),
                    "ratio_scrape_to_floor": round(scrape_seconds / floor_seconds, 4),
                    "every_query_index_backed": not bad,
                }
            )
        )
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

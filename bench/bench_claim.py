"""Benchmark: claim-next alone (engine.calls.tasks.claim_next), statements and time per claim,
on a realistic queue, on SQLite and PostgreSQL (#19).

    .venv/bin/python bench/bench_claim.py [--db both|sqlite|postgresql] [--tasks 3000]
        [--claims 40] [--agents 6]

A scratch database (a temporary SQLite file, or a PostgreSQL database on 127.0.0.1:5432
dropped at the end) holds one program, three active call campaigns (one ranked by a column,
one by an attribute, one unranked) over two teams, and ``--tasks`` open call tasks due now,
each for its own member. Some are not callable now, as on a real floor: members in a zone
where it is night (wait for the window), opted out of calls, numbers on the do-not-call list,
members with no call consent on record (refused: no_consent),
tasks leased to another agent (a live claim), agent-only callbacks of another agent.

Agents of both teams then claim in turn, one claim per transaction (each claim is released
right after, so the queue stays as deep; the refused tasks met on the way are closed by the
first claims, as in production). Counted with SQLAlchemy's ``before_cursor_execute``:
statements per claim; timed: milliseconds per claim (median, p95), wall and this process's
CPU time (``time.process_time``: what a loaded shared machine distorts least). The first
claim of the run (which closes the refused tasks) is reported on its own.

One JSON line per database on stdout. Shared 2-core box: compare figures within one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.calls.agents import add_agent  # noqa: E402
from engine.calls.claim_form import claim_form_of  # noqa: E402
from engine.calls.tasks import claim_next, release  # noqa: E402
from engine.consent.suppressions import hash_normalised  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.models import (  # noqa: E402
    CallTask,
    CampaignRun,
    Consent,
    Enrollment,
    Participant,
    Program,
    Suppression,
)
from engine.db.session import make_engine  # noqa: E402
from engine.definitions.loader import content_hash  # noqa: E402
from engine.definitions.stored import stored_definition  # noqa: E402
from engine.sampling import sample_key  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEAMS = ("renewals", "winback")
ZONES = (
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Pacific/Auckland",
    "America/Los_Angeles",
    "Pacific/Honolulu",
)
CAMPAIGNS = {
    "bench-renew": ("renewals", "priority: [{field: points_balance, order: desc}]"),
    "bench-winback": ("winback", "priority: [{field: attributes.score, order: asc}]"),
    "bench-survey": ("renewals", ""),
}


def campaign_text(name: str, team: str, priority: str) -> str:
    return (
        f"name: {name}\nprogram: loyalty\naudience: {{field: status, eq: active}}\n"
        "holdout_percent: 0\ngoal: {events: [renewal], window: 30d}\nsteps:\n"
        f"  - id: call-1\n    channel: call\n    script: renewal_due\n    team: {team}\n"
        + (f"    {priority}\n" if priority else "")
    )


def zone_where(now: datetime, hours: range) -> str:
    for zone in ZONES:
        if now.astimezone(ZoneInfo(zone)).hour in hours:
            return zone
    raise SystemExit(f"no zone in the list has a local hour in {hours} now; add one to ZONES")


def scratch(kind: str) -> tuple[str, Any]:
    if kind == "sqlite":
        folder = tempfile.TemporaryDirectory()
        return f"sqlite:///{folder.name}/bench.db", folder.cleanup
    name = f"bench_claim_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES).set(database=name).render_as_string(hide_password=False), drop


def fill(engine: Any, *, tasks: int, agents: int, now: datetime) -> list[str]:
    day = zone_where(now, range(10, 18))
    night = zone_where(now, range(0, 6))
    with engine.begin() as c:
        program_id = c.execute(
            insert(Program)
            .values(key="loyalty", name="Loyalty", timezone=day, region="US", created_at=now)
            .returning(Program.id)
        ).scalar_one()
        runs = {}
        for name, (team, priority) in CAMPAIGNS.items():
            source = campaign_text(name, team, priority)
            runs[name] = c.execute(
                insert(CampaignRun)
                .values(
                    campaign=name,
                    program_id=program_id,
                    definition_hash=content_hash(source.encode()),
                    definition_source=source,
                    fire_key="once",
                    status="active",
                    launched_at=now - timedelta(days=1),
                    enrolled_count=0,
                    holdout_count=0,
                    claim_form=claim_form_of(stored_definition(source, "bench")),  # as launch does
                )
                .returning(CampaignRun.id)
            ).scalar_one()
        members = [
            {
                "program_id": program_id,
                "external_id": f"M{i:07d}",
                "sample_key": sample_key("loyalty", f"M{i:07d}"),
                "first_name": "Alex",
                "last_name": f"Member{i}",
                "email": f"member{i}@example.com",
                "phone": f"+1202{i:07d}",
                "timezone": night if i % 10 == 3 else day,  # 10%: night, waits for the window
                "locale": "en-US",
                "status": "active",
                "points_balance": (i * 7919) % 10000,
                "points_expiring": 0,
                "attributes": {"score": (i * 104729) % 997},
                "created_at": now,
                "updated_at": now,
            }
            for i in range(tasks)
        ]
        ids = c.execute(insert(Participant).returning(Participant.id), members).scalars().all()
        consents = []
        for n, pid in enumerate(ids):
            if n % 10 == 7:
                continue  # no consent record at all
            status = "opted_out" if n % 25 == 1 else "opted_in"
            consents.append(
                {
                    "participant_id": pid,
                    "channel": "call",
                    "status": status,
                    "recorded_at": now - timedelta(days=1),
                    "source": "bench",
                }
            )
        c.execute(insert(Consent), consents)
        c.execute(
            insert(Suppression),
            [
                {
                    "channel": "call",
                    "address": m["phone"],
                    "address_hash": hash_normalised(m["phone"]),
                    "reason": "do_not_call",
                    "source": "bench",
                    "created_at": now,
                }
                for n, m in enumerate(members)
                if n % 40 == 9
            ],
        )
        names = list(CAMPAIGNS)
        rows = []
        for n, pid in enumerate(ids):
            name = names[n % len(names)]
            enrollment = c.execute(
                insert(Enrollment)
                .values(
                    run_id=runs[name],
                    campaign=name,
                    participant_id=pid,
                    group="treatment",
                    enrolled_at=now - timedelta(days=1),
                    state="active",
                    next_action_at=None,
                    next_step_index=1,
                )
                .returning(Enrollment.id)
            ).scalar_one()
            leased = n % 20 == 11  # another agent is on this call
            callback = n % 50 == 13  # another agent's callback, not yet fallen back
            rows.append(
                {
                    "kind": "callback" if callback else "campaign",
                    "run_id": runs[name],
                    "enrollment_id": enrollment,
                    "participant_id": pid,
                    "campaign": name,
                    "step_id": "call-1",
                    "step_index": 0,
                    "script": "renewal_due",
                    "team": CAMPAIGNS[name][0],
                    "assigned_agent": "someone-else" if callback else None,
                    "status": "claimed" if leased else "open",
                    "claimed_by": "someone-else" if leased else None,
                    "claimed_at": now - timedelta(minutes=1) if leased else None,
                    "claimed_until": now + timedelta(minutes=29) if leased else None,
                    "due_at": now - timedelta(minutes=5 + n % 120),
                    "attempts": 0,
                    "max_attempts": 3,
                    "created_at": now - timedelta(days=1),
                    "updated_at": now - timedelta(days=1),
                }
            )
        c.execute(insert(CallTask), rows)
        if engine.dialect.name == "postgresql":
            c.execute(text("ANALYZE"))
    logins = []
    with Session(engine) as session, session.begin():
        for n in range(agents):
            login = f"agent{n:02d}"
            teams = (TEAMS[n % 2],) if n % 3 else TEAMS
            add_agent(session, login, name=f"Agent {n}", teams=teams, timezone=day, at=now)
            logins.append(login)
        add_agent(session, "someone-else", name="Someone", teams=TEAMS, timezone=day, at=now)
    return logins


def measure(kind: str, *, tasks: int, claims: int, agents: int) -> dict[str, Any]:
    url, drop = scratch(kind)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        logins = fill(engine, tasks=tasks, agents=agents, now=now)
        statements = [0]

        @event.listens_for(engine, "before_cursor_execute")
        def count(*_: Any) -> None:
            statements[0] += 1

        per_claim: list[tuple[int, float, float]] = []
        served: set[int] = set()
        for n in range(claims + 1):
            login = logins[n % len(logins)]
            at = now + timedelta(seconds=n)
            statements[0] = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            with Session(engine) as session, session.begin():
                claim = claim_next(session, login, at=at)
            elapsed = (time.perf_counter() - started) * 1000
            cpu = (time.process_time() - cpu_started) * 1000
            per_claim.append((statements[0], elapsed, cpu))
            assert claim is not None, f"claim {n} found no task"
            served.add(claim.task_id)
            with Session(engine) as session, session.begin():
                release(session, claim.task_id, login, at=at)
        first, rest = per_claim[0], per_claim[1:]
        times = sorted(ms for _, ms, _ in rest)
        cpu_times = sorted(cpu for _, _, cpu in rest)
        counts = [s for s, _, _ in rest]
        return {
            "db": kind,
            "tasks": tasks,
            "claims": claims,
            "first_claim_statements": first[0],
            "first_claim_ms": round(first[1], 1),
            "statements_per_claim_median": statistics.median(counts),
            "statements_per_claim_max": max(counts),
            "ms_per_claim_median": round(statistics.median(times), 1),
            "ms_per_claim_p95": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
            # This process's CPU: all of a SQLite claim's work, the client's half on PostgreSQL.
            "cpu_ms_per_claim_median": round(statistics.median(cpu_times), 1),
            "cpu_ms_per_claim_p95": round(cpu_times[max(0, int(len(cpu_times) * 0.95) - 1)], 1),
            "distinct_tasks_served": len(served),
        }
    finally:
        engine.dispose()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--claims", type=int, default=40)
    parser.add_argument("--agents", type=int, default=6)
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    for kind in kinds:
        figures = measure(kind, tasks=args.tasks, claims=args.claims, agents=args.agents)
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

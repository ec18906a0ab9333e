"""Benchmark: 50 agents working calls at once in the browser console, on PostgreSQL (#19).

    .venv/bin/python bench/bench_console.py [--agents 50] [--calls 4]
        [--think-ms 0,3000,20000] [--floor-claims 300] [--keep]

A scratch PostgreSQL database (127.0.0.1:5432, dropped at the end unless ``--keep``) holds one
program, one call campaign and ``agents x calls`` call tasks plus spares, each for its own
member (consent given, in a time zone where it is day now, so the calling hours allow it).
``campaign serve`` runs in a subprocess (uvicorn, real HTTP on 127.0.0.1, this tree's code)
against it. Each agent is a thread of this process with its own ``httpx2`` client (own cookie
jar): it signs in (not timed), then loops ``calls`` times:

    claim   POST /agent/next   (the engine's claim-next with lease and checks; it answers
                                with the call sheet, or 303 to it in a tree from before #19)
    page    GET  /agent        (the call sheet: script, account review, disposition forms),
                               only when the claim answered 303 (0 ms otherwise)
    log     POST /agent/log    (NOT_INTERESTED: final, so the task closes; it answers with
                                the agent's page, or 303 to GET /agent?logged=N in a tree
                                from before #19's log, which it then reads, in the figure,
                                as the browser does)

with ``--think-ms`` of pause after each log, the agents' first claims spread over one think
time. A comma list runs one phase per value, one after the other on the same server and
database, each reported with its own floors and ratios. The default phases:

    0      all at once and back to back: a stress test, every figure includes queueing behind
           the other 49 agents on this machine's 2 cores (the server is saturated);
    3000   3 s per call: a floor ten times busier than any real one (~15 loops a second);
    20000  20 s per call, still short of a real call (minutes of talk and wrap-up), so 50
           agents ask ~2.5 loops a second: what an agent on a real floor waits for.

``--calls`` (loops per agent and phase) defaults to 4 so that the 20 s phase (4 x 20 s, plus
the 20 s its agents' first claims are spread over) and the whole run end in a few minutes
with 200 loops a phase; the p95 of the 20 s phase is the goal's figure.

Checks (exit 1 on failure): no task was served to two agents (the task ids the pages showed,
and the caller log has at most one entry per task), every loop got a task, every request
answered as expected.

The floor, measured in the same run on the same table: one bare claim, ``SELECT id FROM
call_tasks WHERE status = 'open' AND due_at <= now ... ORDER BY due_at LIMIT 1 FOR UPDATE SKIP
LOCKED`` then ``UPDATE ... SET status = 'claimed'`` and COMMIT, on a psycopg connection, over
tasks of a team no agent serves: ``--floor-claims`` of them before the agents start (idle
machine), and as many as fit while the agents work (the same load). Reported: median and p95
of claim, page, log and claim-and-render (claim + page of one loop), and the ratio of p95
claim-and-render to each floor's median (goal <= 3x the idle floor), and the web server
process's CPU time (user + system, /proc) per loop.

One JSON line per measurement on stdout. The machine is a shared 2-core box: treat figures
as +-30% and compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2 as httpx
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.calls.agents import add_agent  # noqa: E402
from engine.calls.claim_form import claim_form_of  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.models import (  # noqa: E402
    CallerLogEntry,
    CallTask,
    CampaignRun,
    Consent,
    Enrollment,
    Participant,
    Program,
)
from engine.db.session import make_engine  # noqa: E402
from engine.definitions.loader import content_hash, parse_definition  # noqa: E402
from engine.definitions.stored import stored_definition  # noqa: E402
from engine.sampling import sample_key  # noqa: E402
from engine.web.users import add_user  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench console password"
TEAM = "renewals"
FLOOR_TEAM = "floor-only"  # no agent serves it: the bare claims' own tasks
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TASK = re.compile(r'name="task_id" value="(\d+)"')
# Zones tried for the members, so that it is day for them whenever the bench runs.
ZONES = (
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Pacific/Auckland",
    "America/Los_Angeles",
    "Pacific/Honolulu",
)
CAMPAIGN = """\
name: bench-calls
program: loyalty
audience: {field: status, eq: active}
holdout_percent: 0
goal: {events: [renewal], window: 30d}
steps:
  - id: call-1
    channel: call
    script: renewal_due
    team: renewals
    priority: [{field: points_balance, order: desc}]
    max_attempts: 3
    talking_points: [Renewal date and plan, Benefits used this year]
    offer: Renew this month and keep your tier
    cross_sell: Upgrade to Gold
"""


def emit(**figures: Any) -> None:
    print(json.dumps(figures), flush=True)


def day_zone(now: datetime) -> str:
    for zone in ZONES:
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 18:
            return zone
    raise SystemExit("no zone in the list has daytime now; add one to ZONES")


def scratch_database() -> tuple[str, Any]:
    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def fill(url: str, *, agents: int, tasks: int, floor_tasks: int, zone: str) -> None:
    """The program, the campaign's run, members with call consent, open call tasks due now
    (``tasks`` for the agents' team, ``floor_tasks`` for the bare claims), agents and their
    console users."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as c:
        program_id = c.execute(
            insert(Program)
            .values(key="loyalty", name="Loyalty", timezone=zone, region="US", created_at=now)
            .returning(Program.id)
        ).scalar_one()
        run_id = c.execute(
            insert(CampaignRun)
            .values(
                campaign="bench-calls",
                program_id=program_id,
                definition_hash=content_hash(CAMPAIGN.encode()),
                definition_source=CAMPAIGN,
                fire_key="once",
                status="active",
                launched_at=now - timedelta(days=1),
                enrolled_count=0,
                holdout_count=0,
                claim_form=claim_form_of(stored_definition(CAMPAIGN, "bench")),  # as launch does
            )
            .returning(CampaignRun.id)
        ).scalar_one()
        total = tasks + floor_tasks
        members = [
            {
                "program_id": program_id,
                "external_id": f"M{i:07d}",
                "sample_key": sample_key("loyalty", f"M{i:07d}"),
                "first_name": "Alex",
                "last_name": f"Member{i}",
                "email": f"member{i}@example.com",
                "phone": f"+1202{i:07d}",
                "timezone": zone,
                "status": "active",
                "points_balance": (i * 7919) % 10000,
                "points_expiring": 0,
                "attributes": {},
                "created_at": now,
                "updated_at": now,
            }
            for i in range(total)
        ]
        ids = c.execute(insert(Participant).returning(Participant.id), members).scalars().all()
        c.execute(
            insert(Consent),
            [
                {
                    "participant_id": pid,
                    "channel": "call",
                    "status": "opted_in",
                    "recorded_at": now - timedelta(days=1),
                    "source": "bench",
                }
                for pid in ids
            ],
        )
        enrollments = (
            c.execute(
                insert(Enrollment).returning(Enrollment.id),
                [
                    {
                        "run_id": run_id,
                        "campaign": "bench-calls",
                        "participant_id": pid,
                        "group": "treatment",
                        "enrolled_at": now - timedelta(days=1),
                        "state": "active",
                        "next_action_at": None,
                        "next_step_index": 1,
                    }
                    for pid in ids
                ],
            )
            .scalars()
            .all()
        )
        c.execute(
            insert(CallTask),
            [
                {
                    "kind": "campaign",
                    "run_id": run_id,
                    "enrollment_id": eid,
                    "participant_id": pid,
                    "campaign": "bench-calls",
                    "step_id": "call-1",
                    "step_index": 0,
                    "script": "renewal_due",
                    "team": TEAM if n < tasks else FLOOR_TEAM,
                    "status": "open",
                    "due_at": now - timedelta(minutes=5),
                    "attempts": 0,
                    "max_attempts": 3,
                    "created_at": now - timedelta(days=1),
                    "updated_at": now - timedelta(days=1),
                }
                for n, (pid, eid) in enumerate(zip(ids, enrollments, strict=True))
            ],
        )
        c.execute(text("ANALYZE"))
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        for n in range(agents):
            login = f"agent{n:02d}"
            add_agent(session, login, name=f"Agent {n}", teams=(TEAM,), timezone=zone, at=now)
            add_user(session, login, role="agent", at=now, password=PASSWORD)
    assert parse_definition(CAMPAIGN, "bench-calls.yaml").name == "bench-calls"
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CAMPAIGN_DATABASE_URL": url,
        "CAMPAIGN_TEMPLATES_DIR": str(ROOT / "templates"),
        "CAMPAIGN_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
        "CAMPAIGN_OUTBOX_DIR": str(folder / "outbox"),
        "CAMPAIGN_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", "from cli import cli; cli()", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"campaign serve exited: see {folder / 'serve.log'}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("campaign serve did not answer /healthz within 60 s")


class Agent:
    def __init__(self, base: str, login: str) -> None:
        self.login = login
        self.client = httpx.Client(base_url=base, timeout=120)
        self.csrf = ""
        self.served: list[int] = []
        self.claim: list[float] = []
        self.page: list[float] = []
        self.log: list[float] = []
        self.errors: list[str] = []

    def _remember(self, body: str) -> None:
        found = CSRF.search(body)
        if found:
            self.csrf = found.group(1)

    def sign_in(self) -> None:
        self._remember(self.client.get("/login").text)
        done = self.client.post(
            "/login", data={"csrf_token": self.csrf, "login": self.login, "password": PASSWORD}
        )
        if done.status_code != 303 or done.headers.get("location") != "/agent":
            raise SystemExit(f"{self.login} could not sign in: {done.status_code}")
        self._remember(self.client.get("/agent").text)

    def work(self, calls: int, think: float, start: threading.Barrier, offset: float) -> None:
        start.wait()
        time.sleep(offset)  # with a think time, agents start spread over it, as on a floor
        for _ in range(calls):
            t0 = time.perf_counter()
            claimed = self.client.post("/agent/next", data={"csrf_token": self.csrf})
            t1 = time.perf_counter()
            if claimed.status_code == 200:
                page = claimed  # the call sheet in the claim's answer, as the browser gets it
            elif claimed.status_code == 303 and claimed.headers.get("location") == "/agent":
                page = self.client.get("/agent")  # a tree that redirects: the browser follows
            else:
                self.errors.append(f"claim answered {claimed.status_code} {claimed.headers}")
                return
            t2 = time.perf_counter()
            self._remember(page.text)
            task = TASK.search(page.text)
            if page.status_code != 200 or task is None:
                self.errors.append(f"page answered {page.status_code} without a task")
                return
            task_id = int(task.group(1))
            self.served.append(task_id)
            logged = self.client.post(
                "/agent/log",
                data={
                    "csrf_token": self.csrf,
                    "task_id": str(task_id),
                    "disposition": "NOT_INTERESTED",
                    "NOT_INTERESTED.reason": "benchmark",
                    "verified": "yes",
                },
            )
            if logged.status_code == 303 and logged.headers.get("location", "").startswith(
                "/agent?logged="
            ):
                logged = self.client.get(logged.headers["location"])  # the browser follows
            t3 = time.perf_counter()
            if logged.status_code != 200 or 'id="logged"' not in logged.text:
                self.errors.append(f"log of task {task_id} answered {logged.status_code}")
                return
            self._remember(logged.text)
            self.claim.append(t1 - t0)
            self.page.append(t2 - t1)
            self.log.append(t3 - t2)
            if think:
                time.sleep(think)


def bare_claims(url: str, n: int | None, stop: threading.Event | None) -> list[float]:
    """The floor: bare SKIP LOCKED claims of the floor team's tasks, one per transaction."""
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    times: list[float] = []
    with psycopg.connect(dsn) as conn:
        while (n is None or len(times) < n) and not (stop is not None and stop.is_set()):
            t0 = time.perf_counter()
            with conn.transaction():
                row = conn.execute(
                    "SELECT id FROM call_tasks WHERE status = 'open' AND team = %s "
                    "AND due_at <= now() ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (FLOOR_TEAM,),
                ).fetchone()
                if row is None:
                    break
                conn.execute(
                    "UPDATE call_tasks SET status = 'claimed', claimed_by = 'floor', "
                    "claimed_until = now() + interval '30 minutes' WHERE id = %s",
                    (row[0],),
                )
            times.append(time.perf_counter() - t0)
            if stop is not None:
                time.sleep(0.1)  # sample the load, do not add much to it
    return times


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(
    url: str,
    agents: list[Agent],
    args: argparse.Namespace,
    think_ms: float,
    idle_floor: list[float],
    server_pid: int,
    served: Counter[int],
) -> list[str]:
    """Every agent works ``args.calls`` loops with ``think_ms`` after each log; the floor is
    sampled meanwhile. Emits the figures; returns what failed."""
    for a in agents:
        a.served, a.claim, a.page, a.log, a.errors = [], [], [], [], []
    barrier = threading.Barrier(len(agents) + 1)
    think = think_ms / 1000
    threads = [
        threading.Thread(target=a.work, args=(args.calls, think, barrier, think * n / len(agents)))
        for n, a in enumerate(agents)
    ]
    for t in threads:
        t.start()
    stop = threading.Event()
    loaded: list[float] = []
    sampler = threading.Thread(
        target=lambda: loaded.extend(bare_claims(url, None, stop)), daemon=True
    )
    barrier.wait()
    began, cpu_began = time.perf_counter(), cpu_seconds(server_pid)
    sampler.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    server_cpu = cpu_seconds(server_pid) - cpu_began
    stop.set()
    sampler.join()

    failed = [f"{a.login}: {e}" for a in agents for e in a.errors]
    served.update(t for a in agents for t in a.served)
    claims = [x for a in agents for x in a.claim]
    pages = [x for a in agents for x in a.page]
    logs = [x for a in agents for x in a.log]
    both = [c + p for a in agents for c, p in zip(a.claim, a.page, strict=True)]
    emit(measure="claim", think_ms=think_ms, what="POST /agent/next", **summary(claims))
    emit(measure="page", think_ms=think_ms, what="GET /agent (call sheet)", **summary(pages))
    emit(
        measure="log", think_ms=think_ms, what="POST /agent/log (+ its 303's GET)", **summary(logs)
    )
    emit(measure="claim_and_render", think_ms=think_ms, what="claim + page", **summary(both))
    emit(
        measure="floor_under_load",
        think_ms=think_ms,
        what="bare claim while the agents work",
        **summary(loaded),
    )
    p95 = summary(both)["p95_ms"]
    idle = summary(idle_floor)["median_ms"]
    busy = summary(loaded)["median_ms"] if loaded else None
    emit(
        measure="ratio",
        agents=len(agents),
        think_ms=think_ms,
        calls=len(both),
        calls_per_second=round(len(both) / wall, 1),
        # The web server's own CPU (user + system) per loop of claim, page and log: the
        # figure other work on the shared cores distorts least.
        server_cpu_ms_per_call=round(server_cpu * 1000 / max(1, len(both)), 1),
        p95_claim_and_render_ms=p95,
        idle_floor_median_ms=idle,
        floor_under_load_median_ms=busy,
        ratio_to_idle_floor=round(p95 / idle, 1),
        ratio_to_floor_under_load=round(p95 / busy, 1) if busy else None,
        target="<= 3x the floor",
        met=p95 / idle <= 3,
    )
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--calls", type=int, default=4, help="loops per agent and phase")
    parser.add_argument(
        "--think-ms",
        default="0,3000,20000",
        help="pause after each log; a comma list runs one phase per value, same server",
    )
    parser.add_argument("--floor-claims", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    thinks = [float(value) for value in str(args.think_ms).split(",")]

    zone = day_zone(datetime.now(UTC))
    url, drop = scratch_database()
    folder = Path(tempfile.mkdtemp(prefix="bench_console_"))
    server = None
    failed: list[str] = []
    try:
        tasks = args.agents * args.calls * len(thinks) + 200  # spares: running out is not measured
        floor_tasks = args.floor_claims + 3_000  # the under-load sampler stops when they run out
        started = time.perf_counter()
        fill(url, agents=args.agents, tasks=tasks, floor_tasks=floor_tasks, zone=zone)
        emit(
            step="fill",
            agents=args.agents,
            tasks=tasks,
            floor_tasks=floor_tasks,
            member_zone=zone,
            seconds=round(time.perf_counter() - started, 1),
        )
        idle_floor = bare_claims(url, args.floor_claims, None)
        emit(measure="floor_idle", what="bare SKIP LOCKED claim + commit", **summary(idle_floor))

        server, base = start_server(url, folder)
        agents = [Agent(base, f"agent{n:02d}") for n in range(args.agents)]
        for agent in agents:
            agent.sign_in()
        served: Counter[int] = Counter()
        for think_ms in thinks:
            if think_ms != thinks[0]:
                idle_floor = bare_claims(url, args.floor_claims, None)
                emit(
                    measure="floor_idle",
                    what="bare SKIP LOCKED claim + commit",
                    **summary(idle_floor),
                )
            failed += phase(url, agents, args, think_ms, idle_floor, server.pid, served)
        twice = sorted(t for t, n in served.items() if n > 1)
        engine = create_engine(url)
        with engine.connect() as c:
            logged_twice = c.execute(
                select(CallerLogEntry.task_id)
                .group_by(CallerLogEntry.task_id)
                .having(func.count() > 1)
            ).all()
            entries = c.scalar(select(func.count()).select_from(CallerLogEntry))
        engine.dispose()
        expected = args.agents * args.calls * len(thinks)
        if twice:
            failed.append(f"tasks served twice: {twice[:20]}")
        if logged_twice:
            failed.append(f"tasks logged twice: {[r[0] for r in logged_twice][:20]}")
        if len(served) != expected or entries != expected:
            failed.append(f"expected {expected} calls; {len(served)} served, {entries} logged")
        emit(
            measure="served",
            calls=len(served),
            logged=entries,
            served_twice=len(twice),
            logged_twice=len(logged_twice),
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep:
            emit(kept=url)
        else:
            drop()
    if failed:
        for line in failed:
            print(f"FAILED: {line}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

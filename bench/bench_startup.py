"""Benchmark: how long a `campaign` command takes to answer, against this machine's floor.

    .venv/bin/python bench/bench_startup.py [--runs 15] [--participants 300] [--compare DIR]

Goal (issue #18): `--help`, `runs list`, `calls next` and `participants show` answer in at
most 1.5x the time of `python -c "import sqlalchemy, click"` on the same machine.
`calls next` is timed twice: as a repeated command answers it (the agent's held claim shown
again, from the second round on) and as an agent's first `calls next` answers it (it claims a
task: each run on a fresh copy of the demo database). Both run at one instant inside calling
hours, found before the timed rounds (the first of the next days' 14:00-20:00 UTC at which the
demo serves the agent a task), through the same CLI with its clock set to that instant: at the
wall clock they measured "nothing callable" whenever the bench ran outside the members' hours.

Builds a small demo program (`campaign demo`, with the repository's example campaigns, so
there are runs, agents and call tasks) in a temporary folder, then times, in the same run,
the floor and each command as fresh processes started the way the `campaign` console script
starts them (`from cli import main; main()`), against that SQLite database. Every round runs
the floor and each command once, in turn, so a load that comes and goes touches them all
alike; the figure is the median of the rounds. Bytecode is written to a cache in the
temporary folder and warmed by one untimed round first (a user's installation has it).

Prints one JSON line per measurement (median and spread of the wall time, ratio to the floor,
the 1.5x goal and whether it was met; also the median CPU time of the process and its ratio,
which other work on a shared machine distorts far less than the wall time) and a table. It
asserts nothing about absolute times.
``--compare DIR`` also times the same commands from another checkout (e.g. the main branch
before a change, e.g. `git archive BASE | tar -x -C DIR`) in the same rounds, so a
before/after is measured under the same load; DIR must have the same migrations (the database
is built by this checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5
FLOOR = ["-c", "import sqlalchemy, click"]
CAMPAIGN = ["-c", "from cli import main; main()"]
# The CLI as `main()` runs it, with its clock set to the instant in $BENCH_AT (`calls next`).
CAMPAIGN_AT = [
    "-c",
    "import os, cli; from datetime import datetime; from engine.cli.common import CliState; "
    "from engine.clock import FrozenClock; "
    "at = FrozenClock(datetime.fromisoformat(os.environ['BENCH_AT'])); "
    "cli.cli.main(prog_name='campaign', obj=CliState(overrides={}, clock=at))",
]
AS_BUILT = "as-built.db"


def build_demo(folder: Path, participants: int, env: dict[str, str]) -> dict[str, str]:
    """A demo program in ``folder``; returns what the commands are run with."""
    subprocess.run(
        [
            sys.executable,
            *CAMPAIGN,
            "demo",
            "--participants",
            str(participants),
            "--folder",
            str(folder / "demo"),
            "--json",
        ],
        cwd=folder,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    database_url = f"sqlite:///{folder / 'demo' / 'campaign.db'}"
    shutil.copyfile(folder / "demo" / "campaign.db", folder / "demo" / AS_BUILT)
    import sqlite3

    with sqlite3.connect(folder / "demo" / "campaign.db") as db:
        agent = db.execute("SELECT login FROM agents ORDER BY login LIMIT 1").fetchone()[0]
        member = db.execute("SELECT external_id FROM participants ORDER BY id LIMIT 1").fetchone()[
            0
        ]
    return {"database_url": database_url, "agent": agent, "member": member}


def with_path(env: dict[str, str], tree: Path) -> dict[str, str]:
    """``env`` with ``tree`` first on the import path (its cli.py and engine/)."""
    rest = os.environ.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), rest) if p)}


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) of the process, and its output. A
    ``CAMPAIGN_DATABASE_URL`` of a ``fresh-*.db`` file is first made a copy of the demo
    database as built (``as-built.db`` beside it; untimed)."""
    database = Path(env.get("CAMPAIGN_DATABASE_URL", "").removeprefix("sqlite:///"))
    if database.name.startswith("fresh-"):
        shutil.copyfile(database.parent / AS_BUILT, database)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return seconds, cpu, done.stdout


def callable_instant(calls_next: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The first instant (the next days, 14:00-20:00 UTC, hourly) at which ``calls next`` on a
    fresh copy of the demo serves a task; untimed."""
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for day in range(1, 8):
        for hour in range(14, 21):
            at = (today + timedelta(days=day)).replace(hour=hour).isoformat()
            if timed(calls_next, cwd, env | {"BENCH_AT": at})[2].startswith("Task "):
                return at
    raise SystemExit("the demo served no task at any instant tried: nothing to time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (median reported)")
    parser.add_argument("--participants", type=int, default=300, help="demo program size")
    parser.add_argument(
        "--compare", type=Path, help="another checkout whose commands are timed alongside"
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folder = Path(tmp)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CAMPAIGN_") and key != "PYTHONDONTWRITEBYTECODE"
        }
        env |= {
            "PYTHONPYCACHEPREFIX": str(folder / "pycache"),
            "CAMPAIGN_CAMPAIGNS_DIR": str(ROOT / "campaigns"),
            "CAMPAIGN_TEMPLATES_DIR": str(ROOT / "templates"),
        }
        started = time.perf_counter()
        demo = build_demo(folder, options.participants, with_path(env, ROOT))
        setup_seconds = time.perf_counter() - started
        env["CAMPAIGN_DATABASE_URL"] = demo["database_url"]
        # A copy of the demo as built, made again before each run (``timed``).
        fresh = {"CAMPAIGN_DATABASE_URL": f"sqlite:///{folder / 'demo' / 'fresh-claim.db'}"}
        calls_next = [*CAMPAIGN_AT, "calls", "next", "--agent", demo["agent"]]
        env["BENCH_AT"] = callable_instant(calls_next, folder, with_path(env | fresh, ROOT))

        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "campaign --help": ([*CAMPAIGN, "--help"], {}),
            "campaign runs list": ([*CAMPAIGN, "runs", "list"], {}),
            f"campaign calls next --agent {demo['agent']}": (calls_next, {}),
            f"campaign calls next --agent {demo['agent']} (claims a task)": (calls_next, fresh),
            f"campaign participants show {demo['member']}": (
                [*CAMPAIGN, "participants", "show", demo["member"]],
                {},
            ),
        }
        trees = [ROOT] if options.compare is None else [ROOT, options.compare.resolve()]
        cases = {"floor: import sqlalchemy, click": (FLOOR, env)}
        for tree in trees:
            label = "" if tree == ROOT else f" [{tree}]"
            cases |= {
                f"{name}{label}": (args, with_path(env | extra, tree))
                for name, (args, extra) in commands.items()
            }
        # One untimed round writes the bytecode cache.
        outputs = {name: timed(args, folder, e)[2] for name, (args, e) in cases.items()}
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu_times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(options.runs):
            for name, (args, e) in cases.items():
                wall, cpu, _ = timed(args, folder, e)
                times[name].append(wall)
                cpu_times[name].append(cpu)

    floor_name = next(iter(cases))
    floor = statistics.median(times[floor_name])
    cpu_floor = statistics.median(cpu_times[floor_name])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        cpu = statistics.median(cpu_times[name])
        ratio, cpu_ratio = median / floor, cpu / cpu_floor
        record = {
            "benchmark": "startup",
            "case": name,
            "median_seconds": round(median, 4),
            "min_seconds": round(min(samples), 4),
            "max_seconds": round(max(samples), 4),
            "runs": len(samples),
            "floor_seconds": round(floor, 4),
            "ratio_to_floor": round(ratio, 2),
            # CPU time is what a busy machine (other processes on the 2 cores) distorts least.
            "median_cpu_seconds": round(cpu, 4),
            "cpu_floor_seconds": round(cpu_floor, 4),
            "cpu_ratio_to_floor": round(cpu_ratio, 2),
        }
        if name != floor_name:
            record |= {"goal_ratio": GOAL_RATIO, "met": ratio <= GOAL_RATIO}
        if "calls next" in name:
            first_line = outputs[name].strip().splitlines()[:1]
            record["what_it_did"] = first_line[0] if first_line else ""
        print(json.dumps(record))
        rows.append((name, median, ratio, cpu, cpu_ratio))
    print(
        f"\ndemo program of {options.participants} members built in {setup_seconds:.1f} s; "
        f"median of {options.runs} rounds; load average now {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    print(f"{'':<60} {'wall':>8}    {'ratio':>6}  {'CPU':>8}    {'ratio':>6}", file=sys.stderr)
    for name, median, ratio, cpu, cpu_ratio in rows:
        print(
            f"{name:<60} {median * 1000:8.0f} ms {ratio:6.2f}x  {cpu * 1000:8.0f} ms "
            f"{cpu_ratio:6.2f}x",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()

"""Two advances at once never make two rows for one (enrollment, step) nor move one
enrollment twice: two threads, and two separate processes, on both databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from seq_helpers import DAY, TEST_NOW, definition, launch, messages, tasks, unit
from sqlalchemy import insert

from engine import sampling
from engine.app import App
from engine.db.models import Consent, Participant, Program
from engine.sequencing import AdvanceSummary, advance

ROOT = Path(__file__).resolve().parents[2]
N = 240

STEPS = [
    {"id": "email-1", "channel": "email", "template": "points_expiring"},
    # At one instant: every step is due in the one advance the racers share.
    {"id": "sms-1", "channel": "sms", "template": "points_expiring"},
    {"id": "call-1", "channel": "call", "script": "winback"},
]


def _fill(app: App, program: Program) -> None:
    with unit(app) as s:
        s.execute(
            insert(Participant),
            [
                {
                    "program_id": program.id,
                    "external_id": f"K{i:04d}",
                    "email": f"k{i}@example.com",
                    "phone": f"+1415555{i:04d}",
                    "status": "active",
                    "points_balance": 0,
                    "points_expiring": i,
                    "attributes": {},
                    "sample_key": sampling.sample_key(program.key, f"K{i:04d}"),
                    "created_at": TEST_NOW,
                    "updated_at": TEST_NOW,
                }
                for i in range(N)
            ],
        )
    with unit(app) as s:
        ids = [p.id for p in s.query(Participant).all()]
        s.execute(
            insert(Consent),
            [
                {
                    "participant_id": pid,
                    "channel": channel,
                    "status": "opted_in",
                    "recorded_at": TEST_NOW,
                    "source": "test",
                }
                for pid in ids
                for channel in ("sms", "call")
            ],
        )


def _check(app: App, summaries: list[AdvanceSummary]) -> None:
    rows = messages(app)
    keys = Counter((m.enrollment_id, m.step_id) for m in rows)
    assert len(rows) == 2 * N and max(keys.values()) == 1
    call_rows = tasks(app)
    assert len(call_rows) == N and len({t.enrollment_id for t in call_rows}) == N
    # Every enrollment was moved by exactly one of them; the other counted it as lost.
    assert sum(s.completed for s in summaries) == N
    assert sum(s.queued for s in summaries) == 2 * N
    assert sum(s.call_tasks for s in summaries) == N
    assert sum(s.enrollments for s in summaries) == N + sum(s.lost for s in summaries)


def test_two_threads_advancing_at_once(app: App, program: Program) -> None:
    _fill(app, program)
    launch(app, definition(steps=STEPS))
    barrier = threading.Barrier(2)
    results: list[AdvanceSummary] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(advance(app, at=TEST_NOW + 2 * DAY, batch_size=16, workers=0))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _check(app, results)


SCRIPT = """
import json, sys
from datetime import datetime
from engine.app import build_app
from engine.sequencing import advance
from engine.settings import Settings
app = build_app(Settings(database_url=sys.argv[1]))
sys.stdin.readline()  # wait for the go
summary = advance(app, at=datetime.fromisoformat(sys.argv[2]), batch_size=16, workers=0)
print(json.dumps({k: getattr(summary, k) for k in
      ("enrollments", "messages", "call_tasks", "completed", "lost")}))
"""


def test_two_processes_advancing_at_once(app: App, program: Program, database_url: str) -> None:
    _fill(app, program)
    launch(app, definition(steps=STEPS))
    at = (TEST_NOW + 2 * DAY).isoformat()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, database_url, at],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    summaries = [
        AdvanceSummary(
            at=TEST_NOW,
            enrollments=o["enrollments"],
            messages=o["messages"],
            call_tasks=o["call_tasks"],
            completed=o["completed"],
            lost=o["lost"],
        )
        for o in outputs
    ]
    _check(app, summaries)

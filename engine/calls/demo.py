"""Demo step: agents work a day of calls.

Creates four agents (two for the example campaigns' teams, one on escalations, a manager),
then works the call list of the launched campaigns the way agents would: claim-next, read the
script, log a realistic spread of dispositions (most calls reach nobody), with callbacks,
escalations, a complaint, a do-not-call and conversions. The caller log is verified at the end
and one call script is shown in the demo report.

When the sequencer has made no call task yet (its demo step runs the steps' delays in real
time), this step lays out the call list itself: one task per call step for a sample of the
treatment enrollments, due the next morning, exactly as the sequencer would write them.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from engine.calls import caller_log
from engine.calls.agents import add_agent
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.scripts import serve_next
from engine.calls.tasks import DefinitionCache
from engine.db.models import CallTask, CampaignRun, Enrollment

# Every team the example campaigns' call steps name (campaigns/*.yaml) has an agent: a task
# of a team no agent serves waits for good (`winback` was no campaign's team).
AGENTS = (
    ("ana.lee", "Ana Lee", "agent", ("renewals", "retention"), 40),
    ("ben.okafor", "Ben Okafor", "agent", ("loyalty", "onboarding"), 40),
    ("chen.wei", "Chen Wei", "agent", ("escalations",), 25),
    ("maria.rossi", "Maria Rossi", "manager", ("escalations", "renewals"), 10),
)
# (code, weight): what a real outbound day looks like; most calls reach nobody.
SPREAD = (
    ("NO_ANSWER", 30),
    ("VOICEMAIL", 15),
    ("BUSY", 5),
    ("CONVERTED", 12),
    ("PROMISED", 8),
    ("NOT_INTERESTED", 10),
    ("CALLBACK", 6),
    ("ESCALATED", 3),
    ("COMPLAINT", 3),
    ("WRONG_NUMBER", 3),
    ("DO_NOT_CALL", 2),
    ("VERIFICATION_FAILED", 3),
)
TASKS_PER_STEP = 40
SHIFT_STEP = timedelta(minutes=20)
SHIFT_LENGTH = timedelta(hours=26)  # a day of calling across the members' zones


def _layout_tasks(session: Any, at: Any, rng: random.Random) -> int:
    """Call tasks for a sample of treatment enrollments, as the sequencer writes them."""
    if session.scalar(select(func.count()).select_from(CallTask)):
        return 0
    cache = DefinitionCache(session)
    made = 0
    for run in session.scalars(select(CampaignRun).where(CampaignRun.status == "active")):
        definition = cache.for_run(run.id)
        if definition is None:
            continue
        for index, step in enumerate(definition.steps):
            if step.channel != "call":
                continue
            enrollments = session.scalars(
                select(Enrollment)
                .where(Enrollment.run_id == run.id, Enrollment.group == "treatment")
                .order_by(Enrollment.id)
                .limit(TASKS_PER_STEP * 3)
            ).all()
            for e in rng.sample(list(enrollments), min(TASKS_PER_STEP, len(enrollments))):
                session.add(
                    CallTask(
                        kind="campaign",
                        run_id=run.id,
                        enrollment_id=e.id,
                        participant_id=e.participant_id,
                        campaign=run.campaign,
                        step_id=step.id,
                        step_index=index,
                        script=step.script,
                        team=step.team,
                        status="open",
                        due_at=at,
                        attempts=0,
                        max_attempts=step.max_attempts,
                        created_at=at,
                        updated_at=at,
                    )
                )
                made += 1
    session.flush()
    return made


def _fields(code: str, at: Any, rng: random.Random) -> tuple[dict[str, str], bool | None]:
    verified: bool | None = rng.random() < 0.9
    fields: dict[str, str] = {}
    if code == "CONVERTED":
        fields = {"action": rng.choice(["renewed", "redeemed", "activated"])}
        verified = True
    elif code == "PROMISED":
        fields = {
            "action": rng.choice(["renew", "redeem"]),
            "by": (at + timedelta(days=7)).date().isoformat(),
        }
    elif code == "NOT_INTERESTED":
        fields = {"reason": rng.choice(["too expensive", "not using it", "moving away"])}
    elif code == "CALLBACK":
        when = at + timedelta(hours=rng.choice([3, 24, 27]))
        fields = {"callback_at": when.isoformat(), "who": rng.choice(["anyone", "agent"])}
    elif code == "ESCALATED":
        fields = {
            "team": "escalations",
            "reason": rng.choice(["billing dispute", "points missing"]),
        }
    elif code == "COMPLAINT":
        fields = {
            "category": rng.choice(["billing", "points", "service", "communication"]),
            "summary": rng.choice(["charged twice", "points not credited", "too many calls"]),
        }
    elif code in (
        "VOICEMAIL",
        "NO_ANSWER",
        "BUSY",
        "WRONG_NUMBER",
        "DISCONNECTED",
        "VERIFICATION_FAILED",
    ):
        verified = None
    return fields, verified


def work_a_day(ctx: Any) -> None:
    """The demo step (engine/demo/run.py STEPS: 'calls')."""
    app = ctx.require_app()
    rng = random.Random(ctx.seed * 131 + 5)
    start = ctx.now + timedelta(days=1)
    with app.sessions() as session, session.begin():
        for login, name, role, teams, target in AGENTS:
            add_agent(
                session,
                login,
                name=name,
                role=role,
                teams=teams,
                daily_target=target,
                timezone="America/New_York",
                at=ctx.now,
            )
        laid_out = _layout_tasks(session, start, rng)
        # Tasks the sequencer made fall due after their steps' delays: start the day then.
        first_due = session.scalar(
            select(func.min(CallTask.due_at)).where(CallTask.status == "open")
        )
        if first_due is not None and first_due > start:
            start = first_due
    dispositions = DispositionSet.standard()
    codes = [c for c, _ in SPREAD]
    weights = [w for _, w in SPREAD]
    logged: dict[str, int] = {}
    script: str | None = None
    at = start
    while at < start + SHIFT_LENGTH:
        for login, *_ in AGENTS:
            with app.sessions() as session, session.begin():
                served = serve_next(session, login, settings=app.settings, at=at)
            if served is None:
                continue
            if script is None and served.sheet.script:
                script = (
                    f"Task {served.sheet.task_id} for {served.sheet.name}:\n{served.sheet.script}"
                )
            code = rng.choices(codes, weights)[0]
            done = at + timedelta(seconds=rng.randint(40, 600))
            fields, verified = _fields(code, done, rng)
            with app.sessions() as session, session.begin():
                log_call(
                    session,
                    CallInput(served.claim.task_id, login, code, fields, verified, "demo call"),
                    dispositions,
                    at=done,
                )
            logged[code] = logged.get(code, 0) + 1
        at += SHIFT_STEP
    with app.sessions() as session:
        check = caller_log.verify(session)
        open_left = session.scalar(
            select(func.count()).select_from(CallTask).where(CallTask.status != "closed")
        )
    total = sum(logged.values())
    rows = [
        ("agents", ", ".join(a[0] for a in AGENTS)),
        ("call tasks laid out by this step", f"{laid_out:,}"),
        ("calls logged", f"{total:,}"),
        ("by disposition", ", ".join(f"{k} {v:,}" for k, v in sorted(logged.items()))),
        ("tasks still open (recycled, callbacks, escalated)", f"{open_left or 0:,}"),
        ("caller log", f"{check.entries:,} entries, chain {'intact' if check.ok else 'BROKEN'}"),
    ]
    ctx.sections.append(("Calls: a day on the phones", rows))
    if script is not None:
        ctx.sections.append(("One call script, as the agent saw it", [("script", script)]))

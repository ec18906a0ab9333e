"""`calls next` in the terminal honours the verification gate (engine/calls/verification.py, the
rule the console's call sheet follows): before `calls verify` only the program's
pre-verification fields, and the script with the gated fields blank; `calls verify` records
verification on the agent's own live claim (audited, refused for anyone else's task) and shows
the full sheet. Both databases; the CLI reads the real clock, so the member lives where it is
early afternoon now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from calls_helpers import make_world
from click.testing import CliRunner
from sqlalchemy import func, select

from cli import cli
from engine.app import App
from engine.db.models import CallTask, ConsoleAuditEvent, Program
from engine.programs import set_shown_before_verification
from engine.testing.fakes import unit
from engine.web import audit

BALANCE = 123457  # only on the full sheet (and in the verified script)


def _afternoon_zone() -> str:
    offset = (14 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def _run(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
    return result.exit_code, result.output


def _audited(app: App) -> list[tuple[str, str | None]]:
    with app.sessions() as s:
        return [
            (e.login, e.detail)
            for e in s.scalars(
                select(ConsoleAuditEvent).where(ConsoleAuditEvent.event == audit.IDENTITY_VERIFIED)
            )
        ]


def _world(app: App) -> int:
    world = make_world(app)
    world.agent("ana")
    world.agent("ben")
    due = datetime.now(UTC) - timedelta(hours=1)
    member = world.member(
        timezone=_afternoon_zone(), points_balance=BALANCE, first_name="Rosa", status="active"
    )
    return world.task(member, due_at=due)


def test_calls_next_shows_the_gated_sheet_until_calls_verify(app: App) -> None:
    task = _world(app)
    code, out = _run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0, out
    served = json.loads(out)
    assert served["claim"]["task_id"] == task
    sheet, gate = served["sheet"], served["gate"]
    assert set(sheet["account"]) == {"tier"}  # the default pre-verification fields
    assert gate["verified"] is False and "points_balance" in gate["hidden"]
    assert sheet["activity"] == [] and sheet["contacts"] == [] and sheet["redemptions"] == []
    assert "Rosa" in sheet["script"] and str(BALANCE) not in sheet["script"].replace(",", "")
    assert str(BALANCE) not in out

    code, out = _run(app, "calls", "next", "--agent", "ana")  # the same claim, human view
    assert code == 0, out
    assert f"campaign calls verify {task} --agent ana" in out
    assert "points balance" in out and str(BALANCE) not in out.replace(",", "")
    assert "Earlier contacts" not in out and "consents: call: opted_in" in out

    code, out = _run(app, "calls", "verify", str(task), "--agent", "Ana")
    assert code == 0, out
    assert "Identity verified at" in out and f"points balance: {BALANCE}" in out
    assert f"Points balance: {BALANCE:,}" in out  # the script, rendered in full
    assert "Earlier contacts" in out
    assert _audited(app) == [("ana", f"task {task}")]
    with app.sessions() as s:
        row = s.get(CallTask, task)
        assert row is not None and row.verified_by == "ana"

    # Verified once: again changes nothing and is not audited twice; `calls next` gives the
    # full sheet of the claim from now on.
    code, out = _run(app, "calls", "verify", str(task), "--agent", "ana", "--json")
    assert code == 0 and json.loads(out)["sheet"]["account"]["points_balance"] == BALANCE
    assert len(_audited(app)) == 1
    code, out = _run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0 and json.loads(out)["sheet"]["account"]["points_balance"] == BALANCE


def test_calls_verify_refuses_what_is_not_your_live_claim(app: App) -> None:
    task = _world(app)
    code, out = _run(app, "calls", "verify", str(task), "--agent", "ana")
    assert code == 1 and "not yours" in out and "calls next" in out, out
    assert _run(app, "calls", "next", "--agent", "ana")[0] == 0
    code, out = _run(app, "calls", "verify", str(task), "--agent", "ben")
    assert code == 1 and "not yours" in out and "Traceback" not in out, out
    code, out = _run(app, "calls", "verify", str(task), "--agent", "nobody")
    assert code == 1 and "no agent 'nobody'" in out, out
    code, out = _run(app, "calls", "verify", str(task + 1000), "--agent", "ana")
    assert code == 1 and "not yours" in out, out
    assert _audited(app) == []
    with app.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(CallTask).where(CallTask.verified_at.is_not(None))
            )
            == 0
        )


def test_the_programs_pre_verification_fields_are_the_clis_too(app: App) -> None:
    task = _world(app)
    with unit(app) as s:
        program = s.scalars(select(Program)).one()
        set_shown_before_verification(s, program.key, "points_balance,status")
    code, out = _run(app, "calls", "next", "--agent", "ana", "--json")
    assert code == 0, out
    served = json.loads(out)
    assert served["claim"]["task_id"] == task
    assert set(served["sheet"]["account"]) == {"points_balance", "status"}
    assert served["sheet"]["account"]["points_balance"] == BALANCE
    assert "tier" in served["gate"]["hidden"]


def test_a_new_claim_of_the_task_starts_unverified_even_at_the_same_instant(app: App) -> None:
    """Found by the 90-day scenario: the CLI's clock stood still while an agent verified a
    member, gave the task back and claimed it again, and the new claim counted as verified."""
    from engine.calls.rules import CallRules
    from engine.calls.tasks import claim_next, release
    from engine.calls.verification import is_verified, verify_claim

    task = _world(app)
    now = datetime.now(UTC)
    rules = CallRules.from_settings(app.settings)
    with app.sessions() as s, s.begin():
        claim = claim_next(s, "ana", at=now, rules=rules)
        assert claim is not None and claim.task_id == task
        verify_claim(s, task, "ana", at=now)
        assert is_verified(s.get(CallTask, task))
    with app.sessions() as s, s.begin():
        release(s, task, "ana", at=now)
    with app.sessions() as s, s.begin():
        again = claim_next(s, "ana", at=now, rules=rules)
        assert again is not None and again.task_id == task
    with app.sessions() as s:
        assert not is_verified(s.get(CallTask, task))

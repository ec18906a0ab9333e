"""Builders for the call tests: a run with a call step, participants, call tasks, agents."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from engine.app import App
from engine.calls.agents import add_agent
from engine.calls.claim_form import claim_form_of
from engine.db.models import CallTask, CampaignRun, Enrollment, Participant, Program
from engine.definitions.loader import content_hash, parse_definition
from engine.testing.fakes import make_consent, make_participant, make_program, unit

# tests/conftest.py TEST_NOW: Monday 2 March 2026, 10:00 in New York (EST).
TEST_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
_phones = itertools.count(100)


def campaign_source(name: str = "renew-calls", **fields: Any) -> str:
    step: dict[str, Any] = {
        "id": "call-1",
        "channel": "call",
        "script": "renewal_due",
        "team": "renewals",
        "priority": [{"field": "points_balance", "order": "desc"}],
        "max_attempts": 3,
        "talking_points": ["Renewal date and plan", "Benefits used this year"],
        "offer": "Renew this month and keep your tier",
        "cross_sell": "Upgrade to Gold",
    }
    step.update(fields.pop("step", {}))
    data: dict[str, Any] = {
        "name": name,
        "program": "loyalty",
        "audience": {"field": "status", "eq": "active"},
        "holdout_percent": 0,
        "goal": {"events": ["renewal"], "window": "30d"},
        "steps": [step],
    }
    data.update(fields)
    source = yaml.safe_dump(data, sort_keys=False)
    parse_definition(source, f"{name}.yaml", expected_name=name)  # must be valid
    return source


@dataclass
class World:
    app: App
    program_id: int
    run_id: int

    def member(self, *, consent: str | None = "opted_in", **fields: Any) -> int:
        with unit(self.app) as s:
            program = s.get(Program, self.program_id)
            assert program is not None
            fields.setdefault("timezone", "America/New_York")
            fields.setdefault("phone", f"+1202555{next(_phones):04d}")
            p = make_participant(s, program, at=TEST_NOW, **fields)
            if consent is not None:
                make_consent(s, p, channel="call", status=consent, at=TEST_NOW)
            return p.id

    def task(
        self,
        participant_id: int,
        *,
        due_at: datetime = TEST_NOW - timedelta(hours=1),
        run_id: int | None = None,
        **fields: Any,
    ) -> int:
        run_id = self.run_id if run_id is None else run_id
        with unit(self.app) as s:
            run = s.get(CampaignRun, run_id)
            assert run is not None
            enrollment = Enrollment(
                run_id=run_id,
                campaign=run.campaign,
                participant_id=participant_id,
                group="treatment",
                enrolled_at=TEST_NOW - timedelta(days=10),
                state="active",
                next_action_at=None,
                next_step_index=1,
            )
            s.add(enrollment)
            s.flush()
            values: dict[str, Any] = {
                "kind": "campaign",
                "run_id": run_id,
                "enrollment_id": enrollment.id,
                "participant_id": participant_id,
                "campaign": run.campaign,
                "step_id": "call-1",
                "step_index": 0,
                "script": "renewal_due",
                "team": "renewals",
                "status": "open",
                "due_at": due_at,
                "attempts": 0,
                "max_attempts": 3,
                "created_at": TEST_NOW - timedelta(days=1),
                "updated_at": TEST_NOW - timedelta(days=1),
            }
            values.update(fields)
            task = CallTask(**values)
            s.add(task)
            s.flush()
            return task.id

    def agent(self, login: str, *, teams: tuple[str, ...] = ("renewals",), **kw: Any) -> str:
        with unit(self.app) as s:
            add_agent(s, login, name=login.title(), teams=teams, at=TEST_NOW, **kw)
        return login


def make_run(app: App, program_id: int, source: str, *, status: str = "active") -> int:
    with unit(app) as s:
        loaded = parse_definition(source, "x.yaml")
        run = CampaignRun(
            campaign=loaded.name,
            program_id=program_id,
            definition_hash=content_hash(source.encode()),
            definition_source=source,
            fire_key="once",
            status=status,
            launched_at=TEST_NOW - timedelta(days=10),
            enrolled_count=0,
            holdout_count=0,
            claim_form=claim_form_of(loaded.definition),  # as launch stores it
        )
        s.add(run)
        s.flush()
        return run.id


def make_world(app: App, **campaign: Any) -> World:
    with unit(app) as s:
        program = make_program(s, at=TEST_NOW)
        program_id = program.id
    run_id = make_run(app, program_id, campaign_source(**campaign))
    return World(app, program_id, run_id)


def participant(app: App, pid: int) -> Participant:
    with app.sessions() as s:
        p = s.get(Participant, pid)
        assert p is not None
        return p


def task_row(app: App, task_id: int) -> CallTask:
    with app.sessions() as s:
        t = s.get(CallTask, task_id)
        assert t is not None
        return t

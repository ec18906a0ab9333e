"""Builders for the case tests: the call tests' world (program, run, members, agents)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calls"))

from calls_helpers import TEST_NOW, World, make_world, task_row

from engine.app import App
from engine.calls.config import load_dispositions
from engine.calls.log import CallInput, LogResult, log_call
from engine.calls.tasks import claim_next
from engine.testing.fakes import unit

__all__ = ["TEST_NOW", "World", "call", "claim", "make_world", "task_row", "unit"]


def claim(app: App, agent: str, at: datetime) -> int | None:
    with unit(app) as s:
        found = claim_next(s, agent, at=at)
        return found.task_id if found else None


def call(
    app: App,
    task_id: int,
    agent: str,
    disposition: str,
    at: datetime,
    verified: bool | None = True,
    **fields: str,
) -> LogResult:
    with unit(app) as s:
        return log_call(
            s,
            CallInput(task_id, agent, disposition, fields, verified),
            load_dispositions(None),
            at=at,
        )

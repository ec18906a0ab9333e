"""The agent's calling plan on their page: calls today, this week and this month against
their targets, from the same function as `campaign agents show` and `report agents`
(engine/calls/reporting.py calling_plan: the agent's zone, business days skipping the
programs' holidays)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from engine.calls.reporting import CallingPlan, calling_plan
from engine.clock import ensure_utc


def plan_today(session: Session, agent: str, zone: str, at: datetime) -> CallingPlan:
    """The plan around the agent's local today."""
    return calling_plan(session, agent, day=ensure_utc(at).astimezone(ZoneInfo(zone)).date())

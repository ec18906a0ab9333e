"""The agent's calling plan on their page: calls today, this week and this month against
their targets, from the same function as `campaign agents show` and `report agents`
(engine/calls/reporting.py calling_plan: the agent's zone, business days skipping the
programs' holidays)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from engine.calls.reporting import CallingPlan, PlanAgent, plan_of
from engine.clock import ensure_utc


def plan_today(session: Session, agent: PlanAgent, zone: str, at: datetime) -> CallingPlan:
    """The plan around the agent's local today, for their row read with the page's user."""
    return plan_of(session, agent, day=ensure_utc(at).astimezone(ZoneInfo(zone)).date())

"""An agent's live claim, as SQL: the task claimed by the agent whose lease is not over, the
oldest first (an agent holds one; the oldest is the one they are given back).

The one place of these conditions (#19): the claim's own check for a claim held already
(engine/calls/tasks.py, Core) and the console's and `calls verify`'s reads of the agent's
claim (engine/calls/verification.py, ORM) both use them. Core only: no ORM imported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam

from engine.clock import ensure_utc
from engine.db.tables.calls import call_tasks
from engine.db.types import UTCDateTime

# Run with held_claim_params' values.
HELD_CONDITIONS = (
    call_tasks.c.status == "claimed",
    call_tasks.c.claimed_by == bindparam("held_by"),
    call_tasks.c.claimed_until >= bindparam("held_at", type_=UTCDateTime()),
)
HELD_ORDER = call_tasks.c.claimed_at


def held_claim_params(agent: str, at: datetime) -> dict[str, Any]:
    return {"held_by": agent, "held_at": ensure_utc(at)}

"""Pure send-time policy: windows in recipient local time, calling hours, zone resolution,
frequency caps and the consent/suppression gate.

No database, no provider SDK, no clock: every function takes plain data and an aware ``at``.
The sender calls :func:`decide`; the pieces are public for planning and call lists.
"""

from __future__ import annotations

from engine.policy.caps import CapSpec, FrequencyCap, cap_frees_at, within_cap
from engine.policy.decide import (
    SKIP_REASONS,
    Decision,
    ParticipantFacts,
    SendNow,
    Skip,
    SkipReason,
    WaitReason,
    WaitUntil,
    decide,
)
from engine.policy.gate import (
    GATE_REASONS,
    ConsentRules,
    ConsentStatus,
    GateDecision,
    GateReason,
    gate,
)
from engine.policy.windows import (
    DEFAULT_HORIZON,
    LEGAL_WINDOW,
    WEEKDAYS,
    Window,
    WindowSpec,
    effective_window,
    is_allowed,
    local_time_on_day,
    next_allowed,
)
from engine.policy.zones import (
    ZoneResolution,
    candidate_zones,
    zones_for_phone,
    zones_for_region,
)

__all__ = [
    "DEFAULT_HORIZON",
    "GATE_REASONS",
    "LEGAL_WINDOW",
    "SKIP_REASONS",
    "WEEKDAYS",
    "CapSpec",
    "ConsentRules",
    "ConsentStatus",
    "Decision",
    "FrequencyCap",
    "GateDecision",
    "GateReason",
    "ParticipantFacts",
    "SendNow",
    "Skip",
    "SkipReason",
    "WaitReason",
    "WaitUntil",
    "Window",
    "WindowSpec",
    "ZoneResolution",
    "candidate_zones",
    "cap_frees_at",
    "decide",
    "effective_window",
    "gate",
    "is_allowed",
    "local_time_on_day",
    "next_allowed",
    "within_cap",
    "zones_for_phone",
    "zones_for_region",
]

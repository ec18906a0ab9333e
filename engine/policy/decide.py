"""One call at send time: send now, wait until a given instant, or skip (with the reason).

    match decide("sms", facts, at, send_window=spec.send_window, cap=spec.frequency_cap):
        case SendNow(): ...
        case WaitUntil(until=later, reason=why): ...   # re-run decide() at `later`
        case Skip(reason=why): ...                     # record the skip with `why`

The order: the consent/suppression gate (a refusal is final: Skip), then the frequency cap,
then the window in every candidate zone. Waiting is always followed by another decide() call,
so an opt-out that arrives while a message waits still wins.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from engine.policy.caps import CapSpec, cap_frees_at
from engine.policy.gate import (
    ConsentRules,
    ConsentStatus,
    GateReason,
    gate,
)
from engine.policy.windows import (
    DEFAULT_HORIZON,
    Window,
    WindowSpec,
    effective_window,
    next_allowed,
    to_utc,
)

SkipReason = GateReason | Literal["window_never_opens", "frequency_cap"]
WaitReason = Literal["outside_window", "frequency_cap"]
SKIP_REASONS: tuple[SkipReason, ...] = (
    "no_address",
    "suppressed",
    "opted_out",
    "invalid_address",
    "no_consent",
    "window_never_opens",
    "frequency_cap",
)


@dataclass(frozen=True)
class ParticipantFacts:
    """What the policy needs to know about one participant for one channel.

    ``address``: the email address (email) or phone number (sms, call). ``consent``: consent on
    this channel. ``suppressed_channels``: channels the address is suppressed on (may hold
    ``"all"``). ``zones``: candidate zones from :func:`engine.policy.candidate_zones`.
    ``contact_times``: when the participant was contacted (the instants the cap counts).
    """

    address: str | None
    consent: ConsentStatus | None
    zones: Sequence[str]
    suppressed_channels: Collection[str] = frozenset()
    invalid_address: bool = False
    contact_times: Sequence[datetime] = field(default_factory=tuple)


@dataclass(frozen=True)
class SendNow:
    """Send at the instant decide() was asked about."""


@dataclass(frozen=True)
class WaitUntil:
    """Not yet: ask again at ``until`` (the earliest instant every rule allows)."""

    until: datetime
    reason: WaitReason


@dataclass(frozen=True)
class Skip:
    """Do not send this message at all; ``reason`` is one of :data:`SKIP_REASONS`."""

    reason: SkipReason


Decision = SendNow | WaitUntil | Skip


def decide(
    channel: str,
    facts: ParticipantFacts,
    at: datetime,
    *,
    send_window: Window | WindowSpec | None = None,
    call_window: Window | WindowSpec | None = None,
    cap: CapSpec | None = None,
    consent_rules: ConsentRules = ConsentRules(),  # noqa: B008 - frozen, safe as a default
    horizon: timedelta = DEFAULT_HORIZON,
) -> Decision:
    """Decide what to do with a message (or call) on ``channel`` at instant ``at``.

    ``send_window`` narrows email and SMS, ``call_window`` narrows calls; the legal 08:00-21:00
    window always applies to SMS and calls (see :func:`effective_window`). ``cap`` is the
    campaign's frequency cap over ``facts.contact_times``.

    Skip reasons: the gate's (:data:`engine.policy.gate.GATE_REASONS`), ``window_never_opens``
    (no instant within ``horizon`` is inside the window in every candidate zone) and
    ``frequency_cap`` (a cap of 0 contacts). Wait reasons: ``frequency_cap`` when the cap is what
    delays the message, else ``outside_window``.
    """
    at = to_utc(at)
    verdict = gate(
        channel,
        address=facts.address,
        consent=facts.consent,
        suppressed_channels=facts.suppressed_channels,
        invalid_address=facts.invalid_address,
        sms_requires_opt_in=consent_rules.sms_requires_opt_in,
        call_requires_opt_in=consent_rules.call_requires_opt_in,
        email_requires_opt_in=consent_rules.email_requires_opt_in,
    )
    if verdict.reason is not None:
        return Skip(verdict.reason)

    earliest = at
    if cap is not None:
        frees = cap_frees_at(facts.contact_times, at, cap.max, cap.per)
        if frees is None:
            return Skip("frequency_cap")
        earliest = frees

    window = effective_window(channel, call_window if channel == "call" else send_window)
    opens = next_allowed(earliest, facts.zones, window, horizon=horizon)
    if opens is None:
        return Skip("window_never_opens")
    if opens == at:
        return SendNow()
    return WaitUntil(opens, "frequency_cap" if earliest > at else "outside_window")

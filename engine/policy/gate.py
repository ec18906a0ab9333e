"""The consent and suppression gate: may this participant be contacted on this channel at all?

It runs when a campaign is planned and again at send time, so an opt-out that arrives in
between wins. The checks, in order, and the reason each gives when it refuses:

``no_address``       no email address (email) or phone number (sms, call) on the record
``suppressed``       the address is on a suppression list for this channel or for ``"all"``
``opted_out``        the participant withdrew consent for this channel
``invalid_address``  the address is known to be unusable (failed validation, Twilio 21211...)
``no_consent``       no consent recorded where the channel requires an opt-in

Consent defaults: SMS and calls require an explicit opt-in (US TCPA: prior express consent for
marketing texts and calls), so a missing consent refuses them. Email allows a missing consent
(soft opt-in for existing members, as CAN-SPAM and the UK/EU soft opt-in permit; every marketing
email carries an unsubscribe link). Each default is a parameter; the defaults are the safe ones.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Channel = Literal["email", "sms", "call"]
ConsentStatus = Literal["opted_in", "opted_out"]
GateReason = Literal["no_address", "suppressed", "opted_out", "invalid_address", "no_consent"]
GATE_REASONS: tuple[GateReason, ...] = (
    "no_address",
    "suppressed",
    "opted_out",
    "invalid_address",
    "no_consent",
)
CHANNELS: tuple[Channel, ...] = ("email", "sms", "call")


@dataclass(frozen=True)
class ConsentRules:
    """Which channels need an explicit opt-in (a missing consent refuses them)."""

    sms_requires_opt_in: bool = True
    call_requires_opt_in: bool = True
    email_requires_opt_in: bool = False

    def requires_opt_in(self, channel: str) -> bool:
        return {
            "email": self.email_requires_opt_in,
            "sms": self.sms_requires_opt_in,
            "call": self.call_requires_opt_in,
        }[channel]


@dataclass(frozen=True)
class GateDecision:
    """``allowed`` with ``reason`` None, or refused with one of :data:`GATE_REASONS`."""

    allowed: bool
    reason: GateReason | None = None


ALLOWED = GateDecision(True)
# Decisions are frozen: one of each, shared (the sequencer asks for one per member and
# channel of every batch).
_REFUSED = {reason: GateDecision(False, reason) for reason in GATE_REASONS}


def gate(
    channel: str,
    *,
    address: str | None,
    consent: ConsentStatus | None,
    suppressed_channels: Collection[str],
    invalid_address: bool,
    sms_requires_opt_in: bool = True,
    call_requires_opt_in: bool = True,
    email_requires_opt_in: bool = False,
) -> GateDecision:
    """Decide whether ``channel`` may be used for this participant; see the module docstring.

    ``consent`` is the participant's consent on this channel (None: none recorded);
    ``suppressed_channels`` the channels their address is suppressed on (``"all"`` covers
    every channel).
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected email, sms or call")
    if consent not in (None, "opted_in", "opted_out"):
        raise ValueError(f"unknown consent status {consent!r}; expected opted_in or opted_out")
    if address is None or not address.strip():
        return _REFUSED["no_address"]
    if channel in suppressed_channels or "all" in suppressed_channels:
        return _REFUSED["suppressed"]
    if consent == "opted_out":
        return _REFUSED["opted_out"]
    if invalid_address:
        return _REFUSED["invalid_address"]
    if consent is None:
        rules = ConsentRules(sms_requires_opt_in, call_requires_opt_in, email_requires_opt_in)
        if rules.requires_opt_in(channel):
            return _REFUSED["no_consent"]
    return ALLOWED

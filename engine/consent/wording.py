"""How a closed channel is said to people: a consent that was never stated is not an opt-out.

SMS and calls need a stated opt-in (engine.policy.gate), so a member imported without consent
columns cannot be texted or called. Telling a coordinator they "opted out" would send them
looking for opt-outs that never happened; this says "consent not stated" and how to state it.
A program may also state it for every member who did not (engine/consent/defaults.py): plan and
explain then say "consent by program default (set on DATE)". Pure: used by plan/explain
(engine/planning/), the sequencer's exit reasons and the tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

CONSENT_NOT_STATED = "consent not stated"
CONSENT_COLUMNS = {"email": "consent_email", "sms": "consent_sms", "call": "consent_call"}
# The gate's reasons (engine.policy.gate.GATE_REASONS) in words.
REASON_WORDS = {
    "no_consent": CONSENT_NOT_STATED,
    "opted_out": "opted out",
    "suppressed": "suppressed",
    "no_address": "no address",
    "invalid_address": "invalid address",
}


def how_to_state(channels: Iterable[str]) -> str:
    wanted = sorted(set(channels))
    columns = " / ".join(CONSENT_COLUMNS[c] for c in wanted if c in CONSENT_COLUMNS)
    defaults = " ".join(f"--consent-default {c}=yes" for c in wanted if c in ("sms", "call"))
    text = (
        f"a program states consent with the {columns} column of its member file "
        "(yes/no; a file of external_id and those columns is enough)"
    )
    if defaults:
        text += f", or for every member who stated none with `campaign programs set KEY {defaults}`"
    return text


def by_program_default(since: datetime) -> str:
    """What explain says of a consent taken from the program's default."""
    return f"consent {program_default(since)}"


def program_default(since: datetime) -> str:
    """A channel's consent on the call sheet and in the caller log when it is the program's."""
    return f"by program default (set on {since:%Y-%m-%d})"


def closed_channels(closed: Mapping[str, str]) -> str:
    """'no channel left to contact (email: opted out, sms: consent not stated)', plus how to
    state consent when it is missing on any of them. ``closed``: channel -> gate reason."""
    detail = ", ".join(f"{c}: {REASON_WORDS.get(r, r)}" for c, r in sorted(closed.items()))
    text = f"no channel left to contact ({detail})"
    unstated = [channel for channel, reason in closed.items() if reason == "no_consent"]
    if unstated:
        text += f"; {how_to_state(unstated)}"
    return text


def exited_label(consent_not_stated: int) -> str:
    """The advance summary's label for enrollments that left the sequence."""
    if not consent_not_stated:
        return "exited"
    return (
        f"exited ({consent_not_stated:,} of them with {CONSENT_NOT_STATED} on a channel: "
        f"{how_to_state(['sms', 'call'])})"
    )


# The plan's description of its no_consent exclusion.
NOT_STATED_IS_NO = (
    f"{CONSENT_NOT_STATED} counts as no for SMS and calls; "
    "state it with the member file's consent_sms / consent_call columns "
    "or a program default (`campaign programs set KEY --consent-default sms=yes`)"
)
_CHANNEL_NAMES = {"sms": "SMS", "call": "calls"}


def not_stated_rule(defaults: Mapping[str, datetime]) -> str:
    """NOT_STATED_IS_NO, or what the program's consent defaults make of a consent not stated."""
    if not defaults:
        return NOT_STATED_IS_NO
    parts = [
        f"{CONSENT_NOT_STATED} counts as yes for {_CHANNEL_NAMES[c]} ({by_program_default(since)})"
        for c, since in sorted(defaults.items())
    ]
    rest = [name for c, name in _CHANNEL_NAMES.items() if c not in defaults]
    if rest:
        parts.append(f"as no for {rest[0]}")
    return "; ".join(parts)


def closed_from_facts(
    channels: Mapping[str, Mapping[str, object]], requires_opt_in: Mapping[str, bool]
) -> dict[str, str]:
    """Each closed channel's gate reason from explain's facts (address, suppressed, consent)."""
    closed = {}
    for channel, facts in channels.items():
        if facts["address"] is None:
            closed[channel] = "no_address"
        elif facts["suppressed"]:
            closed[channel] = "suppressed"
        elif facts["consent"] == "opted_out":
            closed[channel] = "opted_out"
        elif facts["consent"] != "opted_in" and requires_opt_in[channel]:
            closed[channel] = "no_consent"
    return closed

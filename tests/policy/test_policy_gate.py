"""The consent/suppression gate: table of every reason, and properties that it never lets a
suppressed or opted-out address through."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy import GATE_REASONS, GateDecision, gate

PHONE = "+12125551234"
EMAIL = "ana@example.com"


@pytest.mark.parametrize(
    ("channel", "kwargs", "expected"),
    [
        ("email", {}, GateDecision(True)),  # soft opt-in for email
        ("sms", {}, GateDecision(False, "no_consent")),  # TCPA-safe default
        ("call", {}, GateDecision(False, "no_consent")),
        ("sms", {"consent": "opted_in"}, GateDecision(True)),
        ("call", {"consent": "opted_in"}, GateDecision(True)),
        ("sms", {"sms_requires_opt_in": False}, GateDecision(True)),
        ("call", {"call_requires_opt_in": False}, GateDecision(True)),
        ("email", {"email_requires_opt_in": True}, GateDecision(False, "no_consent")),
        ("email", {"address": None}, GateDecision(False, "no_address")),
        ("sms", {"address": "  ", "consent": "opted_in"}, GateDecision(False, "no_address")),
        ("email", {"consent": "opted_out"}, GateDecision(False, "opted_out")),
        (
            "sms",
            {"consent": "opted_out", "sms_requires_opt_in": False},
            GateDecision(False, "opted_out"),
        ),
        ("email", {"suppressed_channels": {"email"}}, GateDecision(False, "suppressed")),
        ("email", {"suppressed_channels": {"sms"}}, GateDecision(True)),
        (
            "call",
            {"consent": "opted_in", "suppressed_channels": {"all"}},
            GateDecision(False, "suppressed"),
        ),
        ("email", {"invalid_address": True}, GateDecision(False, "invalid_address")),
        # Suppression outranks opt-out and invalidity: the strongest reason is reported.
        (
            "email",
            {"consent": "opted_out", "invalid_address": True, "suppressed_channels": {"all"}},
            GateDecision(False, "suppressed"),
        ),
    ],
)
def test_gate_table(channel: str, kwargs: dict[str, object], expected: GateDecision) -> None:
    arguments: dict[str, object] = {
        "address": EMAIL if channel == "email" else PHONE,
        "consent": None,
        "suppressed_channels": set(),
        "invalid_address": False,
    }
    arguments.update(kwargs)
    assert gate(channel, **arguments) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("channel", "consent", "message"),
    [("fax", None, "unknown channel"), ("sms", "maybe", "unknown consent")],
)
def test_gate_refuses_unknown_values(channel: str, consent: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gate(
            channel,
            address=PHONE,
            consent=consent,  # type: ignore[arg-type]
            suppressed_channels=set(),
            invalid_address=False,
        )


@settings(max_examples=200, deadline=None)
@given(
    channel=st.sampled_from(["email", "sms", "call"]),
    address=st.one_of(st.none(), st.just(""), st.just(EMAIL), st.just(PHONE)),
    consent=st.sampled_from([None, "opted_in", "opted_out"]),
    suppressed=st.sets(st.sampled_from(["email", "sms", "call", "all"])),
    invalid=st.booleans(),
    sms_opt_in=st.booleans(),
    call_opt_in=st.booleans(),
    email_opt_in=st.booleans(),
)
def test_gate_never_lets_a_suppressed_or_opted_out_address_through(
    channel: str,
    address: str | None,
    consent: str | None,
    suppressed: set[str],
    invalid: bool,
    sms_opt_in: bool,
    call_opt_in: bool,
    email_opt_in: bool,
) -> None:
    decision = gate(
        channel,
        address=address,
        consent=consent,  # type: ignore[arg-type]
        suppressed_channels=suppressed,
        invalid_address=invalid,
        sms_requires_opt_in=sms_opt_in,
        call_requires_opt_in=call_opt_in,
        email_requires_opt_in=email_opt_in,
    )
    assert decision.allowed == (decision.reason is None)
    assert decision.reason is None or decision.reason in GATE_REASONS
    requires = {"email": email_opt_in, "sms": sms_opt_in, "call": call_opt_in}[channel]
    blocked = (
        not address
        or channel in suppressed
        or "all" in suppressed
        or consent == "opted_out"
        or invalid
        or (consent is None and requires)
    )
    assert decision.allowed is not blocked

"""The outbox state machine (engine/sending/outbox_status.py)."""

from __future__ import annotations

import pytest

from engine.db.models import OUTBOX_STATUSES
from engine.sending import outbox_status as s


def test_the_table_check_constraint_and_the_state_machine_name_the_same_statuses() -> None:
    assert set(OUTBOX_STATUSES) == set(s.STATUSES)


@pytest.mark.parametrize("final", sorted(s.FINAL))
def test_nothing_leaves_a_final_status(final: str) -> None:
    assert not any(s.can_move(final, other) for other in s.STATUSES)


def test_a_queued_message_is_only_claimed_or_skipped() -> None:
    allowed = {other for other in s.STATUSES if s.can_move(s.QUEUED, other)}
    assert allowed == {s.SENDING, s.SKIPPED}


def test_an_unknown_message_is_never_requeued_by_a_provider_event() -> None:
    # Only an explicit `outbox resolve --resend` may queue it again; events move forward only.
    assert s.can_move(s.UNKNOWN, s.QUEUED)
    assert s.forward(s.UNKNOWN, s.QUEUED) is None
    assert s.forward(s.UNKNOWN, s.SENT) == s.SENT
    assert s.forward(s.UNKNOWN, s.DELIVERED) == s.DELIVERED


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        (s.SENT, s.DELIVERED, s.DELIVERED),
        (s.SENT, s.BOUNCED, s.BOUNCED),
        (s.SENT, s.SENT, None),  # a duplicate
        (s.DELIVERED, s.SENT, None),  # older news arriving late
        (s.BOUNCED, s.DELIVERED, None),  # out of order: the first final status stays
        (s.QUEUED, s.DELIVERED, None),  # we never sent it: an event cannot be about it
        (s.SKIPPED, s.SENT, None),
        (s.SENDING, s.SENT, s.SENT),  # the webhook can beat the dispatcher's own write
    ],
)
def test_provider_events_only_move_a_message_forward(
    current: str, reported: str, expected: str | None
) -> None:
    assert s.forward(current, reported) == expected


def test_an_unknown_status_name_is_an_error_not_a_silent_no() -> None:
    with pytest.raises(ValueError, match="unknown outbox status"):
        s.can_move(s.QUEUED, "gone")

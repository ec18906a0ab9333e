"""The sequencer's pure rules: when a step is due, spacing, exits and conditions (see the
package docstring); no database here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from engine.consent.wording import closed_channels
from engine.definitions.schema import Step
from engine.policy.windows import local_time_on_day


@dataclass(frozen=True)
class Facts:
    """What the database says about one enrollment, for exits and conditions."""

    converted: bool = False
    reached_by_phone: bool = False
    email_opened: bool = False
    email_clicked: bool = False
    replied: bool = False
    # channel -> why it cannot be used (engine.policy.gate reasons); open channels are absent.
    closed: Mapping[str, str] = field(default_factory=dict)
    # step index -> the enrollment's message of that step (for spacing and waiting).
    messages: Mapping[int, MessageState] = field(default_factory=dict)
    # Why the member no longer matches the campaign's standing conditions (None: still does).
    not_standing: str | None = None


@dataclass(frozen=True)
class MessageState:
    """An email/SMS of the enrollment as spacing sees it."""

    pending: bool  # queued, sending or unknown: it has not (knowingly) gone yet
    sent_at: datetime | None
    not_before: datetime
    fresh: bool = False  # made in this same walk (not yet in the database)


CONDITIONS: Mapping[str, Callable[[Facts], bool]] = {
    "not_converted": lambda f: not f.converted,
    "not_reached_by_phone": lambda f: not f.reached_by_phone,
    "email_not_opened": lambda f: not f.email_opened,
    "email_not_clicked": lambda f: not f.email_clicked,
    "no_reply": lambda f: not f.replied,
}


@dataclass(frozen=True)
class Action:
    """Step ``step_index`` is taken, due at ``due``."""

    step_index: int
    due: datetime
    expires_at: datetime | None = None
    expired: bool = False  # past its deadline already: made as skipped/expired, never queued


# Spacing (see the module docstring): a previous message that went within SLACK of its
# schedule does not move the next step; a wait is at least MIN_WAIT (never "now" again, which
# the same advance's scan would meet once more).
SLACK = timedelta(hours=1)
MIN_WAIT = timedelta(minutes=5)
# Conditions about an earlier message: the channels of the message they read.
_MESSAGE_CONDITIONS: Mapping[str, frozenset[str]] = {
    "email_not_opened": frozenset({"email"}),
    "email_not_clicked": frozenset({"email"}),
    "no_reply": frozenset({"email", "sms"}),
}

# (step, due) -> the step's deadline for this member, or None
DeadlineOf = Callable[[Step, datetime], "datetime | None"]


@dataclass(frozen=True)
class Outcome:
    """Where one enrollment goes in one advance."""

    actions: tuple[Action, ...]
    # (step index, the first condition that did not hold)
    skipped: tuple[tuple[int, str], ...]
    next_step_index: int
    next_action_at: datetime | None
    state: str  # active | exited | completed
    exit_reason: str | None = None


def step_due(base: datetime, step: Step, zones: Callable[[], Sequence[str]]) -> datetime:
    """When ``step`` is due, counted from ``base`` (enrollment, or the previous step's due
    time); see the module docstring. ``zones`` is called only for steps with ``at``."""
    moment = base + step.delay
    if step.at is None:
        return moment
    return max(_at_local(base, moment, step.at, zone) for zone in zones())


def _at_local(base: datetime, moment: datetime, at: time, zone: str) -> datetime:
    due = local_time_on_day(moment, 0, at, zone)
    if due < base:
        due = local_time_on_day(moment, 1, at, zone)
    return due


def plan_enrollment(
    steps: Sequence[Step],
    *,
    enrolled_at: datetime,
    next_step_index: int,
    next_action_at: datetime | None,
    facts: Facts,
    at: datetime,
    zones: Callable[[], Sequence[str]],
    deadline: DeadlineOf | None = None,
) -> Outcome:
    """Walk one enrollment through every step due at ``at`` (pure).

    ``next_action_at`` is the due time of step ``next_step_index``, except for step 0 whose due
    time is always computed from ``enrolled_at`` (a launch sets ``next_action_at`` to the
    enrollment instant). ``deadline`` gives a step's deadline for this member (None: no
    deadlines); a step taken past it is an action marked ``expired``.
    """
    index = next_step_index
    if index >= len(steps):
        return Outcome((), (), index, None, "completed")
    due = step_due(enrolled_at, steps[0], zones) if index == 0 else next_action_at or enrolled_at
    actions: list[Action] = []
    skipped: list[tuple[int, str]] = []
    states: dict[int, MessageState] = dict(facts.messages)
    while index < len(steps):
        if due <= at:
            due, wait = _spacing(steps, index, due, states, at, zones)
            if wait is not None:
                return Outcome(tuple(actions), tuple(skipped), index, wait, "active")
        if due > at:
            return Outcome(tuple(actions), tuple(skipped), index, due, "active")
        if facts.not_standing is not None:
            return Outcome(
                tuple(actions), tuple(skipped), index, None, "exited", facts.not_standing
            )
        reason = exit_reason(steps[index:], facts)
        if reason is not None:
            return Outcome(tuple(actions), tuple(skipped), index, None, "exited", reason)
        step = steps[index]
        failing = next((c for c in step.condition if not CONDITIONS[c](facts)), None)
        if failing is None:
            limit = deadline(step, due) if deadline is not None else None
            late = limit is not None and limit <= at
            actions.append(Action(index, due, limit, late))
            if step.channel != "call" and not late:
                states[index] = MessageState(True, None, due, fresh=True)
        else:
            skipped.append((index, failing))
        index += 1
        if index < len(steps):
            due = step_due(due, steps[index], zones)
    return Outcome(tuple(actions), tuple(skipped), index, None, "completed")


def _chain(start: datetime, steps: Sequence[Step], zones: Callable[[], Sequence[str]]) -> datetime:
    """Due time of the last of ``steps`` when the step before them happened at ``start``."""
    for step in steps:
        start = step_due(start, step, zones)
    return start


def _spacing(
    steps: Sequence[Step],
    index: int,
    due: datetime,
    states: Mapping[int, MessageState],
    at: datetime,
    zones: Callable[[], Sequence[str]],
) -> tuple[datetime, datetime | None]:
    """(the step's due time, moved on by the messages it follows; an instant to wait until
    instead, or None). See "Spacing" in the module docstring."""
    anchors: list[tuple[int, bool]] = []
    if index > 0 and steps[index - 1].channel != "call":
        anchors.append((index - 1, False))
    for condition in steps[index].condition:
        channels = _MESSAGE_CONDITIONS.get(condition)
        if channels is None:
            continue
        earlier = [j for j in range(index) if steps[j].channel in channels]
        if earlier:
            anchors.append((earlier[-1], True))
    for j, strict in anchors:
        state = states.get(j)
        if state is None:
            continue
        after = steps[j + 1 : index + 1]
        if state.pending:
            # A message queued by an earlier advance is held back at send time instead
            # (engine.sending.deadlines.send_time_refusals), so that a quiet dispatcher does not
            # stop the sequence; one made in this walk for an overdue step, or one a
            # condition reads, makes this step wait here.
            # (Steps scheduled at one instant have no spacing to keep: they go together.)
            if strict or (state.fresh and at - due > SLACK and due > state.not_before):
                earliest = _chain(max(at, state.not_before), after, zones)
                return due, max(earliest, at + MIN_WAIT)
        elif state.sent_at is not None:
            later = _chain(state.sent_at, after, zones)
            if strict or later > due + SLACK:
                due = max(due, later)
    return due, None


def exit_reason(remaining: Sequence[Step], facts: Facts) -> str | None:
    """Why the enrollment leaves the sequence, or None: every channel the remaining steps use
    is closed, and at least one by opt-out/suppression/consent not stated (a channel closed for lack
    of an address gets ``no_address`` messages, as the brief of the outbox asks)."""
    if not facts.closed:
        return None  # every channel open (most members): nothing to look at
    channels = sorted({step.channel for step in remaining})
    closed = {channel: facts.closed.get(channel) for channel in channels}
    if any(reason is None for reason in closed.values()):
        return None
    if all(reason == "no_address" for reason in closed.values()):
        return None
    return closed_channels({channel: str(reason) for channel, reason in closed.items()})

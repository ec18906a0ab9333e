"""Plan (a dry run), explain (one member) and launch (a run and its enrollments).

Who is enrolled is decided in SQL, in one statement: the audience (engine/audience.py) minus
the exclusions below, split into treatment and holdout by a deterministic bucket. ``plan``
counts the same thing without writing; ``launch`` inserts it with INSERT ... SELECT.

Exclusions, in this fixed order (a waterfall: each excluded member is counted once, under the
FIRST reason that applies):

1. ``exclusions[i]``: the campaign's own exclusion filters, in file order.
2. ``suppressed``: no channel the campaign uses is left once suppressions are applied, and at
   least one of them is suppressed. A channel is suppressed when the suppressions table holds
   the member's address for it (email for email; phone for sms and call) on that channel or on
   ``all``. A missing address counts as unreachable on that channel.
3. ``no_consent``: no channel the campaign uses has an address, no suppression AND consent.
   Consent: email needs no recorded opt-in (not stated = allowed; an ``opted_out`` row
   blocks it: soft opt-in for members of a program they joined); SMS and calls need an explicit
   ``opted_in`` row (the safe US default under the TCPA; a missing row means "not allowed"),
   unless the campaign's program states consent on the channel for members who did not
   (engine/consent/defaults.py): then, as for email, only an ``opted_out`` row blocks it.
   Members with no address at all for the campaign's channels land here too.
4. ``converted``: a goal event in ``goal.window`` before ``at``; they need no nudge.
5. ``frequency_cap``: contacts (the contacts ledger, all campaigns and channels, plus outbox
   messages in ``unknown``, which may have gone: engine/sending/contact_ledger.py) in the rolling
   window ``(at - per, at]`` have reached ``max``, for the campaign's cap or the global one
   from settings; both apply, so the stricter wins in every case.
6. ``already_enrolled``: in an open (state ``active``) enrollment of an active or paused run
   of this campaign.
7. ``reentry``: ``once``: ever enrolled in this campaign (any run, any state); ``{after: D}``:
   enrolled in a run of this campaign whose fire time is within D before this fire (whole
   days count local calendar days: engine/schedules.py).

Holdout: ``bucket(sample_key, salt('holdout:' + campaign)) < holdout_percent * 100`` with
engine.sampling's arithmetic, evaluated in SQL; the same member is in the same group on every
database and in every run of the campaign.

Modules::

    rules.py       Rules: the audience, exclusions, holdout and reason in SQL for one
         |         campaign, program and instant; fire keys; shared lookups
         +--> dry_run.py     plan: counts by reason, reachable per channel, deadlines, sample
         +--> explaining.py  explain: one member's audience tree, exclusions and verdict
         +--> launching.py   launch (INSERT ... SELECT into enrollments) and launch_due (tick,
                             scheduler: due fires, misfire grace, the caller's refusal)
"""

from engine.planning.dry_run import (
    ExclusionCount,
    PlanReport,
    SampleMember,
    StepVolume,
    plan,
    resolve_at,
)
from engine.planning.explaining import ExclusionCheck, Explanation, explain
from engine.planning.launching import (
    DEFAULT_MISFIRE_GRACE,
    DueLaunch,
    LaunchResult,
    launch,
    launch_due,
)
from engine.planning.rules import (
    BUILT_IN_REASONS,
    CONSENT_REQUIRED,
    GlobalCap,
    fire_key,
    holdout_bucket_sql,
    holdout_salt,
    latest_fire_time,
    usable_sql,
)

__all__ = [
    "BUILT_IN_REASONS",
    "CONSENT_REQUIRED",
    "DEFAULT_MISFIRE_GRACE",
    "DueLaunch",
    "ExclusionCheck",
    "ExclusionCount",
    "Explanation",
    "GlobalCap",
    "LaunchResult",
    "PlanReport",
    "SampleMember",
    "StepVolume",
    "explain",
    "fire_key",
    "holdout_bucket_sql",
    "holdout_salt",
    "latest_fire_time",
    "launch",
    "launch_due",
    "plan",
    "resolve_at",
    "usable_sql",
]

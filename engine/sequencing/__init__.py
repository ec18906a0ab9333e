"""Advance due enrollments through their campaign's steps: messages, call tasks, exits.

One advance, a module each::

    loop.py         _Advance: batches of due rows, here or in forked render workers
      due.py          the due scan: keyset batches (DueCursor), each run's stored definition
      facts.py        what the database says of each enrollment (consents, suppressions,
                      conversions, calls reached, opens, clicks, replies, earlier messages)
      rules.py        plan_enrollment (pure): due steps, spacing, exits, conditions
      materialise.py  actions -> outbox rows rendered by render.py, or call tasks; too many
                      render errors pause the run instead
      write.py        one transaction: move the enrollments still where they were read,
                      then COPY / insert their rows
    summary.py      AdvanceSummary: what it did, merged across workers

:func:`advance` is what the tick and the scheduler call. It looks at every *treatment*
enrollment in state ``active`` of an ``active`` run whose ``next_action_at`` has come (paused
runs wait; holdout enrollments are never touched until their run completes) and, step by step:

- **timing**: the first step is due ``delay`` after enrollment, each next one ``delay`` after
  the previous step's due time. With ``at: HH:MM`` the step is due at that wall time in the
  recipient's zone on the local date of (base + delay); when that instant is before the base it
  moves to the next day ("0d at 09:30" launched at 15:00 goes tomorrow 09:30). Zone: the
  participant's, else the phone number's (all candidate zones: the latest instant wins, so no
  candidate sees it early), else the program's. DST-safe via
  :func:`engine.policy.windows.local_time_on_day`.
- **spacing** (issue #21; the least invasive rule that keeps "delay after the previous
  message actually sent" without a new column): when a step falls due, the message of the
  step before it (and, for ``email_not_opened``/``email_not_clicked``/``no_reply``, the latest
  earlier message of the channel the condition reads) is looked at:

  * made in this same walk for an overdue step (more than ``SLACK``, an hour, late: a run
    resumed after a pause, a stopped cron) and scheduled apart from this one: this step waits
    until ``delay`` after now (the earliest that message can go), instead of leaving with it;
  * sent more than ``SLACK`` later than its schedule: this step is due ``delay`` after it
    actually went (its time and deadline count from there);
  * read by a condition: while it has not gone (queued/sending) the step waits, and once it
    went the step is due no earlier than ``delay`` after it (an open is judged on a window
    that really passed).

  A message queued by an earlier advance that has not gone yet (an outage, a window, a cap)
  does not stop the sequence: the next message is still made on time, and the dispatcher's
  gate holds it until ``delay`` after the earlier one went (:mod:`engine.sending.deadlines`). Steps
  scheduled at one instant still go together. A wait is at least ``MIN_WAIT`` (5 minutes).
- **exit** (checked when a step falls due): the member no longer matches the campaign's
  standing conditions (engine/definitions/standing.py; ``exit_reason`` ``no_longer_eligible:
  ...``); or every channel the remaining steps use is closed by
  opt-out, suppression or missing consent (state ``exited``, ``exit_reason`` names each
  channel's reason). Conversion (state ``converted``) and run cancel are set elsewhere; such
  enrollments are simply no longer due.
- **conditions**: all of the step's conditions must hold, else the step is skipped and the
  sequence moves on: ``not_converted`` (no conversion row), ``not_reached_by_phone`` (no call
  task of the enrollment with ``reached_at``), ``email_not_opened`` / ``email_not_clicked``
  (no outbox message of the enrollment with ``opened_at`` / ``clicked_at``), ``no_reply`` (no
  ``reply`` message event of the participant since enrollment).
- **action**: an email/SMS step makes ONE ``outbox_messages`` row (status ``queued``, content
  rendered now, ``not_before`` = the due time, ``expires_at`` = its deadline
  (:mod:`engine.sending.deadlines`); ``skipped``/``expired`` when the deadline has already passed,
  ``skipped``/``no_address`` when the record has no address, ``skipped``/``render_error``
  when the template fails for this member, ``skipped``/``empty_subject``, ``empty_body``,
  ``sms_too_long`` or ``over_segment_limit`` for content a provider would refuse); a call
  step makes one ``call_tasks`` row (kind ``campaign``, status ``open``, ``due_at``,
  ``expires_at``; closed ``expired`` when already past it). When more than 5% (and at least
  5) of one step's members in a batch fail to render, the run is paused with the reason and
  that batch's enrollments of the run are left where they were (a broken template must not
  spend the audience). Before anything, a missing templates folder or file of an active run
  stops the advance (:mod:`engine.preflight`), and call tasks past their deadline are closed.
  After the last step the enrollment is ``completed``; a run with no work left (no
  enrollment with steps left, no pending message, no open call task: engine/run_work.py) is
  ``completed``, its holdout enrollments with it.

The send-time gate (windows, consent, caps) is the dispatcher's job when it claims a message.

Rendered content (``outbox_messages.content``), exactly what the dispatcher sends::

    email:            {"subject": str, "html": str, "text": str,
                       "headers": {"List-Unsubscribe": "<url>",
                                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    SendGrid dynamic: {"template_id": "d-...", "dynamic_template_data": {...}, "headers": {...}}
    sms:              {"body": str, "encoding": "GSM-7" | "UCS-2", "segments": int}

rendered by :class:`engine.templates.Renderer` exactly as ``campaign preview`` renders it
(the first SMS step of a campaign carries the opt-out notice). ``variant`` records the A/B arm
(:mod:`engine.variants`), ``template`` the template actually used.

**Never twice.** Each batch is written in one transaction that first moves the enrollments
with a conditional UPDATE (``WHERE next_step_index = <the index we read> AND state =
'active'``, RETURNING the rows it moved) and then inserts messages and call tasks only for the
enrollments it moved, with ``ON CONFLICT (enrollment_id, step_id) DO NOTHING``. Two advances at
once (threads, processes, a cron tick beside the scheduler) may both render an enrollment, but
only one moves it and the unique keys keep one row per (enrollment, step) whatever happens.

**Scale.** Due enrollments are streamed in batches in (next_action_at, id) order, and each
batch is committed on its own, so a million enrollments never sit in memory. Rendering (~25
µs per email) is the largest part, so when the first batch is full the rest is shared out to
forked worker processes (``render_workers``) that take batches in turn from one keyset
cursor (:class:`DueCursor`), each with its own connections; on SQLite they take turns to
write. Outbox rows go in below the ORM (executemany on SQLite, COPY on PostgreSQL). See
bench/bench_materialise.py.
"""

from __future__ import annotations

from datetime import datetime

from engine.app import App
from engine.clock import ensure_utc
from engine.errors import InputError
from engine.preflight import check_templates
from engine.sending.content_checks import REFUSALS, ContentRefused, check_content, refusal_of
from engine.sending.deadlines import close_expired_call_tasks
from engine.sequencing.loop import _Advance
from engine.sequencing.render import RendererConfig, RenderItem, default_workers, render_item
from engine.sequencing.rules import (
    CONDITIONS,
    Action,
    Facts,
    MessageState,
    Outcome,
    exit_reason,
    plan_enrollment,
    step_due,
)
from engine.sequencing.summary import AdvanceSummary


def advance(
    app: App,
    *,
    at: datetime | None = None,
    batch_size: int = 1000,
    limit: int | None = None,
    workers: int | None = None,
    deadline: float | None = None,
) -> AdvanceSummary:
    """Move every due treatment enrollment of every active run through its steps (see the
    module docstring). Idempotent and safe beside other advances: the database decides.

    ``at`` defaults to ``app.clock.now()``; ``limit`` caps the enrollments looked at;
    ``workers`` is the number of render processes for large batches (default: the
    ``render_workers`` setting, whose 0 means one per core, at most 4; 0 or 1 here renders in
    this process); ``deadline`` (a ``time.monotonic()`` value) stops between batches, leaving
    the rest due for the next advance.
    """
    when = ensure_utc(at) if at is not None else ensure_utc(app.clock.now())
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be 0 or more, not {limit}")
    if workers is None:
        workers = app.settings.render_workers or default_workers()
    check_templates(app, at=when)
    with app.engine.begin() as conn:
        close_expired_call_tasks(conn, when)
    return _Advance(app, when, batch_size, limit, workers, deadline).run()


__all__ = [
    "CONDITIONS",
    "REFUSALS",
    "Action",
    "AdvanceSummary",
    "ContentRefused",
    "Facts",
    "MessageState",
    "Outcome",
    "RenderItem",
    "RendererConfig",
    "advance",
    "check_content",
    "exit_reason",
    "plan_enrollment",
    "refusal_of",
    "render_item",
    "step_due",
]

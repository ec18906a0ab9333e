"""`campaign report campaign NAME|RUN`: did the campaign work?

One run (by id) or every run of a campaign (by name, narrowed by --period on the launch time
and --program). All aggregation happens in SQL (GROUP BY); Python only adds up the few dozen
grouped rows and computes the statistics (engine.reports.stats). The message funnel comes
from the outbox tallies the database triggers keep (engine.reports.tallies), not from
counting the outbox rows.

Figures and how they add up (tests/reports/test_campaign_report.py asserts each):

- enrolled = treatment + holdout
- per message step: created = skipped + eligible;
  eligible = pending (queued, sending) + unknown + failed + sent;
  sent = delivered + bounced + awaiting (accepted, no delivery report yet);
  opened and clicked count messages with an open / click.
- per call step: tasks = open + claimed + closed; attempted <= tasks; reached <= attempted.
- conversions: treatment + holdout = all; by source import + webhook + call = all;
  the last-touch table adds up to all conversions: one row per (channel, step) touched last,
  a "no touch" row for treatment conversions nobody had contacted, and a "holdout" row.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, literal_column, select
from sqlalchemy.orm import Session

from engine.db.models import (
    CallTask,
    CampaignRun,
    Conversion,
    Enrollment,
    OutboxMessage,
    Program,
)
from engine.definitions.loader import parse_stored_definition
from engine.errors import DefinitionError, DefinitionErrors, NotFoundError
from engine.reports import stats
from engine.reports.common import (
    FUNNEL_COLUMNS,
    Chart,
    Period,
    Table,
    count_outbox,
    funnel,
    pct,
    program_id,
    ratio,
)
from engine.reports.tallies import Tally, read_tallies
from engine.reports.verdicts import Verdict, verdict

VARIANT_DETECTABLE = (
    "groups this size could only detect a difference of {mde} pp or more (80% power)"
)
VARIANT_TOO_SMALL = "groups this size are too small to detect any difference (80% power)"


@dataclass(frozen=True)
class MessageStep:
    step: str
    channel: str
    step_index: int
    created: int
    skipped: int
    eligible: int
    pending: int
    unknown: int
    failed: int
    sent: int
    delivered: int
    bounced: int
    awaiting: int
    opened: int
    clicked: int


@dataclass(frozen=True)
class CallStep:
    step: str
    step_index: int
    tasks: int
    open: int
    claimed: int
    closed: int
    attempted: int
    reached: int


@dataclass(frozen=True)
class Skip:
    step: str
    reason: str
    count: int


@dataclass(frozen=True)
class GroupOutcome:
    group: str
    enrolled: int
    converted: int
    rate: float | None
    rate_ci: stats.Interval | None
    points: int
    amount: Decimal
    mean_hours_to_convert: float | None
    median_days_to_convert: int | None


@dataclass(frozen=True)
class TimelinePoint:
    day: int  # days since enrollment
    treatment_rate: float | None  # cumulative conversion rate by the end of that day
    holdout_rate: float | None


@dataclass(frozen=True)
class VariantResult:
    step: str
    variant: str
    recipients: int  # members the variant was sent to
    converted: int  # of them, converted after it was sent
    rate: float | None
    rate_ci: stats.Interval | None
    vs_first: stats.Comparison | None  # against the step's first variant (by name)
    verdict: Verdict | None = None  # vs_first in words


NO_TOUCH = "none"
NO_STEP = "(no step)"


@dataclass(frozen=True)
class Touch:
    channel: str  # NO_TOUCH for the conversions that had none
    step: str
    conversions: int


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    runs: list[int]
    program: str
    period: str | None
    goal_events: list[str]
    goal_window_days: float | None
    enrolled: int
    treatment: int
    holdout: int
    message_steps: list[MessageStep]
    call_steps: list[CallStep]
    skips: list[Skip]
    groups: dict[str, GroupOutcome]
    conversions: int
    by_source: dict[str, int]
    lift: stats.Comparison
    timeline: list[TimelinePoint]
    variants: list[VariantResult]
    last_touch: list[Touch]
    verdict: Verdict  # treatment vs holdout in words

    def verdicts(self) -> list[str]:
        """The comparisons in words, for the top of the HTML report."""
        lines = [f"Treatment vs holdout: {self.verdict.text}."]
        lines.extend(
            f"{v.step}, variant {v.variant} vs the first: {v.verdict.text}."
            for v in self.variants
            if v.verdict is not None
        )
        return lines

    # ------------------------------------------------------------------ rendering

    def tables(self) -> list[Table]:
        t, h = self.groups["treatment"], self.groups["holdout"]
        lift = self.lift
        headline = [
            ("runs", len(self.runs)),
            (
                "goal",
                f"{', '.join(self.goal_events)} within {self.goal_window_days:g} days"
                if self.goal_window_days is not None
                else "",
            ),
            ("enrolled", self.enrolled),
            ("treatment", self.treatment),
            ("holdout", self.holdout),
            ("conversions", self.conversions),
            ("treatment conversion rate", f"{pct(t.rate, 2)} {_ci(t.rate_ci)}"),
            ("holdout conversion rate", f"{pct(h.rate, 2)} {_ci(h.rate_ci)}"),
            ("absolute lift", f"{_pp(lift.difference)} {_ci(lift.difference_ci, points=True)}"),
            ("relative lift", f"{pct(lift.relative_lift)} {_ci(lift.relative_lift_ci)}"),
            ("p-value", "" if lift.p_value is None else f"{lift.p_value:.4g}"),
            ("verdict", self.verdict.text),
        ]
        tables = [Table(f"Campaign {self.campaign}", ["figure", "value"], headline)]
        tables.append(
            Table(
                "Conversions by group",
                [
                    "group",
                    "enrolled",
                    "converted",
                    "rate",
                    "95% CI",
                    "points",
                    "amount",
                    "mean hours to convert",
                    "median days to convert",
                ],
                [
                    (
                        g.group,
                        g.enrolled,
                        g.converted,
                        pct(g.rate, 2),
                        _ci(g.rate_ci),
                        g.points,
                        g.amount,
                        "" if g.mean_hours_to_convert is None else f"{g.mean_hours_to_convert:.1f}",
                        g.median_days_to_convert,
                    )
                    for g in (t, h)
                ],
            )
        )
        tables.append(
            Table(
                "Funnel per message step",
                ["step", "channel", *FUNNEL_COLUMNS, "converted (last touch)"],
                [
                    (
                        s.step,
                        s.channel,
                        *(getattr(s, column) for column in FUNNEL_COLUMNS),
                        self.last_touch_conversions(s.channel, s.step),
                    )
                    for s in self.message_steps
                ],
            )
        )
        tables.append(
            Table(
                "Funnel per call step",
                [
                    "step",
                    "tasks",
                    "open",
                    "claimed",
                    "closed",
                    "attempted",
                    "reached by phone",
                    "converted (last touch)",
                ],
                [
                    (
                        c.step,
                        c.tasks,
                        c.open,
                        c.claimed,
                        c.closed,
                        c.attempted,
                        c.reached,
                        self.last_touch_conversions("call", c.step),
                    )
                    for c in self.call_steps
                ],
            )
        )
        tables.append(
            Table(
                "Skips by reason",
                ["step", "reason", "messages"],
                [(s.step, s.reason, s.count) for s in self.skips],
            )
        )
        tables.append(
            Table(
                "A/B variants",
                [
                    "step",
                    "variant",
                    "recipients",
                    "converted",
                    "rate",
                    "95% CI",
                    "difference vs first",
                    "95% CI of difference",
                    "p-value",
                    "verdict",
                ],
                [
                    (
                        v.step,
                        v.variant,
                        v.recipients,
                        v.converted,
                        pct(v.rate, 2),
                        _ci(v.rate_ci),
                        _pp(v.vs_first.difference) if v.vs_first else "",
                        _ci(v.vs_first.difference_ci, points=True) if v.vs_first else "",
                        ""
                        if v.vs_first is None or v.vs_first.p_value is None
                        else f"{v.vs_first.p_value:.4g}",
                        v.verdict.text if v.verdict else "(the first variant)",
                    )
                    for v in self.variants
                ],
            )
        )
        tables.append(
            Table(
                "Conversions by last touch",
                ["channel", "step", "conversions"],
                [(x.channel, x.step, x.conversions) for x in self.last_touch],
            )
        )
        tables.append(
            Table(
                "Conversions by source", ["source", "conversions"], sorted(self.by_source.items())
            )
        )
        return tables

    def last_touch_conversions(self, channel: str, step: str) -> int:
        """Conversions whose last touch was this step."""
        return sum(t.conversions for t in self.last_touch if (t.channel, t.step) == (channel, step))

    def charts(self) -> list[Chart]:
        # Messages and calls have different funnels, so each gets its own chart and legend.
        messages: dict[str, dict[str, float]] = {}
        for s in self.message_steps:
            messages[f"{s.step} ({s.channel})"] = {
                "eligible": s.eligible,
                "sent": s.sent,
                "delivered": s.delivered,
                "opened": s.opened,
                "clicked": s.clicked,
                "converted": self.last_touch_conversions(s.channel, s.step),
            }
        calls: dict[str, dict[str, float]] = {}
        for c in self.call_steps:
            calls[c.step] = {
                "tasks": c.tasks,
                "attempted": c.attempted,
                "reached": c.reached,
                "converted": self.last_touch_conversions("call", c.step),
            }
        lines = {
            "treatment": [(p.day, p.treatment_rate or 0.0) for p in self.timeline],
            "holdout": [(p.day, p.holdout_rate or 0.0) for p in self.timeline],
        }
        intervals: dict[str, tuple[float, float, float]] = {}
        if self.lift.difference is not None and self.lift.difference_ci is not None:
            ci = self.lift.difference_ci
            intervals["treatment vs holdout"] = (self.lift.difference, ci.low, ci.high)
        for v in self.variants:
            if v.vs_first and v.vs_first.difference is not None and v.vs_first.difference_ci:
                ci = v.vs_first.difference_ci
                intervals[f"{v.step} {v.variant} vs first"] = (
                    v.vs_first.difference,
                    ci.low,
                    ci.high,
                )
        return [
            Chart("bars", "Funnel per message step", messages, y_label="messages"),
            Chart("bars", "Funnel per call step", calls, y_label="call tasks"),
            Chart(
                "lines",
                "Conversion over time: treatment vs holdout",
                lines,
                x_label="days since enrollment",
                y_label="converted",
                unit="percent",
            ),
            Chart(
                "intervals",
                "Absolute lift in percentage points (pp), with its 95% interval",
                intervals,
                x_label="difference in conversion rate (pp)",
                unit="pp",
            ),
        ]


def _ci(interval: stats.Interval | None, *, points: bool = False) -> str:
    if interval is None:
        return ""
    if points:
        return f"[{_pp(interval.low)}, {_pp(interval.high)}]"
    return f"[{pct(interval.low)}, {pct(interval.high)}]"


def _pp(value: float | None) -> str:
    """A difference of rates in percentage points."""
    return "" if value is None else f"{value * 100:+.2f} pp"


# --------------------------------------------------------------------------- queries


def resolve_runs(
    session: Session, target: str, *, period: Period | None, program: str | None
) -> tuple[str, list[int], str]:
    """NAME|RUN_ID -> (campaign, run ids, program key)."""
    pid = program_id(session, program)
    query = select(CampaignRun.id, CampaignRun.campaign, Program.key).join(
        Program, Program.id == CampaignRun.program_id
    )
    if target.isdigit():
        query = query.where(CampaignRun.id == int(target))
    else:
        query = query.where(CampaignRun.campaign == target)
    if pid is not None:
        query = query.where(CampaignRun.program_id == pid)
    if period is not None:
        query = query.where(
            CampaignRun.launched_at >= period.start, CampaignRun.launched_at < period.end
        )
    rows = session.execute(query.order_by(CampaignRun.id)).all()
    if not rows:
        what = f"run {target}" if target.isdigit() else f"campaign {target!r}"
        narrowed = " in that period/program" if period is not None or pid is not None else ""
        raise NotFoundError(f"no launched {what}{narrowed}; see `campaign runs list`")
    programs = sorted({r[2] for r in rows})
    return rows[0][1], [int(r[0]) for r in rows], ", ".join(programs)


def campaign_report(
    session: Session, target: str, *, period: Period | None = None, program: str | None = None
) -> CampaignReport:
    campaign, runs, program_key = resolve_runs(session, target, period=period, program=program)
    dialect = session.get_bind().dialect.name
    # Enrollments by group: the counts the launch recorded with the run (in the same
    # transaction as the enrollments, never changed after), so the report needs no scan of
    # 1,000,000 enrollments. They are the intent-to-treat denominators of the rates.
    treatment, holdout = (
        int(n or 0)
        for n in session.execute(
            select(
                func.sum(CampaignRun.enrolled_count - CampaignRun.holdout_count),
                func.sum(CampaignRun.holdout_count),
            ).where(CampaignRun.id.in_(runs))
        ).one()
    )
    definitions = _steps(session, runs)
    events, window = definitions.goal_events, definitions.window_days
    tallies = [
        t
        for t in read_tallies(session, runs)
        if (t.step, t.channel) in definitions.channels_of_message_steps
    ]
    scan = _message_steps(tallies, definitions)
    skips = _skips(tallies)
    call_steps = _call_steps(session, runs)
    groups, timeline, by_source = _outcomes(session, dialect, runs, treatment, holdout)
    t, h = groups["treatment"], groups["holdout"]
    lift = stats.compare(t.converted, t.enrolled, h.converted, h.enrolled)
    return CampaignReport(
        campaign=campaign,
        runs=runs,
        program=program_key,
        period=period.label if period else None,
        goal_events=events,
        goal_window_days=window,
        enrolled=treatment + holdout,
        treatment=treatment,
        holdout=holdout,
        message_steps=scan.steps,
        call_steps=call_steps,
        skips=skips,
        groups=groups,
        conversions=t.converted + h.converted,
        by_source=by_source,
        lift=lift,
        timeline=timeline,
        variants=_variants(session, runs, scan.variant_recipients),
        last_touch=_last_touch(session, dialect, runs),
        verdict=verdict(lift),
    )


@dataclass(frozen=True)
class _Steps:
    """What the runs' definitions say: goal, and each message step's channel and order."""

    goal_events: list[str]
    window_days: float | None
    order: dict[str, int]  # step id -> position
    message_steps: list[tuple[str, str, bool]]  # (step id, channel, is an A/B test)

    @property
    def channels_of_message_steps(self) -> set[tuple[str, str]]:
        return {(step, channel) for step, channel, _ in self.message_steps}


def _steps(session: Session, runs: list[int]) -> _Steps:
    sources = session.execute(
        select(CampaignRun.definition_hash, func.min(CampaignRun.definition_source))
        .where(CampaignRun.id.in_(runs))
        .group_by(CampaignRun.definition_hash)
        .order_by(func.min(CampaignRun.id))
    ).all()
    goal: tuple[list[str], float | None] = ([], None)
    order: dict[str, int] = {}
    steps: dict[tuple[str, str], bool] = {}
    for index, (_, source) in enumerate(sources):
        try:
            definition = parse_stored_definition(source or "", "run definition").definition
        except (DefinitionError, DefinitionErrors):
            continue
        if index == 0:
            goal = (list(definition.goal.events), definition.goal.window / timedelta(days=1))
        for position, step in enumerate(definition.steps):
            order.setdefault(step.id, position)
            if step.channel != "call":
                key = (step.id, step.channel)
                steps[key] = steps.get(key, False) or step.variants is not None
    return _Steps(goal[0], goal[1], order, [(s, c, ab) for (s, c), ab in steps.items()])


# The provider accepted these (the funnel's "sent" = delivered + bounced + awaiting).
SENT_STATUSES = ("sent", "delivered", "bounced")


@dataclass
class _Scan:
    steps: list[MessageStep]
    # (step, variant) -> messages of that variant the provider accepted (SENT_STATUSES)
    variant_recipients: dict[tuple[str, str], int]


def _message_steps(tallies: list[Tally], definitions: _Steps) -> _Scan:
    """The funnel counts of every message step, from the outbox tallies (a few hundred rows
    per run, kept by triggers: engine.reports.tallies), not from the 10M outbox rows."""
    ab = {step for step, _, is_ab in definitions.message_steps if is_ab}
    acc: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    recipients: dict[tuple[str, str], int] = defaultdict(int)
    for t in tallies:
        count_outbox(acc[(t.step, t.channel)], t.status, t.messages, t.opened, t.clicked)
        if t.step in ab and t.variant is not None and t.status in SENT_STATUSES:
            recipients[(t.step, t.variant)] += t.messages
    steps = []
    for (step, channel), a in acc.items():
        steps.append(
            MessageStep(
                step=step,
                channel=channel,
                step_index=definitions.order.get(step, len(definitions.order)),
                **funnel(a),
            )
        )
    steps.sort(key=lambda s: (s.step_index, s.step, s.channel))
    return _Scan(steps, dict(recipients))


def _skips(tallies: list[Tally]) -> list[Skip]:
    """Skipped messages per step and reason, most frequent first."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for t in tallies:
        if t.status == "skipped":
            counts[(t.step, t.reason or "(no reason)")] += t.messages
    return [
        Skip(step, reason, n)
        for (step, reason), n in sorted(counts.items(), key=lambda x: (x[0][0], -x[1], x[0][1]))
        if n
    ]


def _call_steps(session: Session, runs: list[int]) -> list[CallStep]:
    k = CallTask
    rows = session.execute(
        select(
            k.step_id,
            func.min(k.step_index),
            k.status,
            func.count(),
            func.sum(case((k.attempts > 0, 1), else_=0)),
            func.count(k.reached_at),
        )
        .where(k.run_id.in_(runs), k.kind == "campaign")
        .group_by(k.step_id, k.status)
    ).all()
    acc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for step, index, status, n, attempted, reached in rows:
        a = acc[step or ""]
        a["index"] = min(a.get("index", index or 0), index or 0)
        a[status] += int(n)
        a["tasks"] += int(n)
        a["attempted"] += int(attempted or 0)
        a["reached"] += int(reached)
    return sorted(
        (
            CallStep(
                step,
                a["index"],
                a["tasks"],
                a["open"],
                a["claimed"],
                a["closed"],
                a["attempted"],
                a["reached"],
            )
            for step, a in acc.items()
        ),
        key=lambda c: (c.step_index, c.step),
    )


def _seconds_between(dialect: str, later: str, earlier: str) -> str:
    if dialect == "sqlite":
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"
    return f"extract(epoch from ({later} - {earlier}))"


def _outcomes(
    session: Session, dialect: str, runs: list[int], treatment: int, holdout: int
) -> tuple[dict[str, GroupOutcome], list[TimelinePoint], dict[str, int]]:
    c, e = Conversion, Enrollment
    seconds: Any = literal_column(
        _seconds_between(dialect, "conversions.occurred_at", "enrollments.enrolled_at")
    )
    # Whole days since enrollment; the small offset absorbs julianday's float error.
    day = func.floor((seconds + 0.001) / 86400.0)
    # One pass over the conversions (joined to their enrollments) per group and day; the
    # group totals are the sums of the days.
    histogram = session.execute(
        select(
            c.group, day, func.count(), func.sum(c.points), func.sum(c.amount), func.sum(seconds)
        )
        .select_from(c)
        .join(e, e.id == c.enrollment_id)
        .where(c.run_id.in_(runs))
        .group_by(c.group, day)
    ).all()
    by_source = {
        source: int(n)
        for source, n in session.execute(
            select(c.source, func.count()).where(c.run_id.in_(runs)).group_by(c.source)
        ).all()
    }
    days: dict[str, dict[int, int]] = {"treatment": {}, "holdout": {}}
    points: dict[str, int] = defaultdict(int)
    amount: dict[str, Decimal] = defaultdict(Decimal)
    waited: dict[str, float] = defaultdict(float)  # seconds from enrollment to conversion
    for group, d, n, group_points, group_amount, group_seconds in histogram:
        days[group][int(d)] = int(n)
        points[group] += int(group_points or 0)
        amount[group] += Decimal(group_amount or 0)
        waited[group] += float(group_seconds or 0)
    enrolled = {"treatment": treatment, "holdout": holdout}
    groups = {}
    for group in ("treatment", "holdout"):
        count = sum(days[group].values())
        groups[group] = GroupOutcome(
            group=group,
            enrolled=enrolled[group],
            converted=count,
            rate=ratio(count, enrolled[group]),
            rate_ci=stats.wilson(count, enrolled[group]),
            points=points[group],
            amount=amount[group].quantize(Decimal("0.01")),
            mean_hours_to_convert=round(waited[group] / count / 3600, 2) if count else None,
            median_days_to_convert=_median(days[group]),
        )
    last = max([0, *days["treatment"], *days["holdout"]])
    timeline = []
    running = {"treatment": 0, "holdout": 0}
    for d in range(last + 1):
        for group in running:
            running[group] += days[group].get(d, 0)
        timeline.append(
            TimelinePoint(
                d, ratio(running["treatment"], treatment), ratio(running["holdout"], holdout)
            )
        )
    return groups, timeline, by_source


def _median(histogram: dict[int, int]) -> int | None:
    """The median day (the lower median) of a day -> count histogram."""
    total = sum(histogram.values())
    if total == 0:
        return None
    seen = 0
    for d in sorted(histogram):
        seen += histogram[d]
        if seen * 2 >= total:
            return d
    raise AssertionError("unreachable")


def _variants(
    session: Session, runs: list[int], recipients: dict[tuple[str, str], int]
) -> list[VariantResult]:
    """Per A/B step and variant: recipients (from the outbox scan) and how many of them
    converted after the variant was sent. Driven from the conversions (few) into the outbox
    by (enrollment, step): the partial index ix_outbox_messages_variants answers it without
    the outbox table. The status test is inside the COUNT, not the join, so that SQLite
    (no statistics) never drives the join from the outbox by status instead."""
    o, c = OutboxMessage, Conversion
    ab_steps = sorted({step for step, _ in recipients})
    converted: dict[tuple[str, str], int] = {}
    if ab_steps:
        after_sent = and_(o.status.in_(SENT_STATUSES), o.sent_at <= c.occurred_at)
        for step, variant, n in session.execute(
            select(o.step_id, o.variant, func.count(case((after_sent, 1))))
            .select_from(c)
            .join(
                o,
                and_(
                    o.enrollment_id == c.enrollment_id,
                    o.step_id.in_(ab_steps),
                    o.variant.is_not(None),
                ),
            )
            .where(c.run_id.in_(runs))
            .group_by(o.step_id, o.variant)
        ).all():
            converted[(step, str(variant))] = int(n)
    results = []
    first: dict[str, tuple[str, int, int]] = {}
    for step, variant in sorted(recipients):
        n, won = recipients[(step, variant)], converted.get((step, variant), 0)
        comparison, said = None, None
        if step in first:
            base_variant, base_won, base_n = first[step]
            comparison = stats.compare(won, n, base_won, base_n)
            said = verdict(
                comparison,
                a=f"variant {variant}",
                b=f"variant {base_variant}",
                detectable=VARIANT_DETECTABLE,
                too_small=VARIANT_TOO_SMALL,
            )
        else:
            first[step] = (variant, won, n)
        results.append(
            VariantResult(
                step, variant, n, won, ratio(won, n), stats.wilson(won, n), comparison, said
            )
        )
    return results


def _last_touch(session: Session, dialect: str, runs: list[int]) -> list[Touch]:
    if dialect == "sqlite":
        channel: Any = literal_column("json_extract(conversions.last_touch, '$.channel')")
        step: Any = literal_column("json_extract(conversions.last_touch, '$.step')")
    else:
        channel = literal_column("(conversions.last_touch ->> 'channel')")
        step = literal_column("(conversions.last_touch ->> 'step')")
    rows = session.execute(
        select(channel, step, func.count())
        .select_from(Conversion)
        .where(Conversion.run_id.in_(runs), Conversion.last_touch.is_not(None))
        .group_by(channel, step)
        .order_by(func.count().desc(), channel, step)
    ).all()
    # A call task that came from no campaign step has no step to name.
    touches = [Touch(str(ch), NO_STEP if st is None else str(st), int(n)) for ch, st, n in rows]
    untouched = session.execute(
        select(Conversion.group, func.count())
        .where(Conversion.run_id.in_(runs), Conversion.last_touch.is_(None))
        .group_by(Conversion.group)
    ).all()
    counts = {str(group): int(n) for group, n in untouched}
    # So that the table adds up to the conversions: who converted with no contact at all.
    if counts.get("treatment"):
        touches.append(Touch(NO_TOUCH, "no touch", counts["treatment"]))
    if counts.get("holdout"):
        touches.append(Touch(NO_TOUCH, "holdout (not contacted)", counts["holdout"]))
    return touches

"""`campaign report deliverability`: what happened to the messages, by channel.

From the outbox (filtered by --period on the message's creation time, --program through its
run, --campaign): created = skipped + eligible; eligible = pending + unknown + failed + sent;
sent = delivered + bounced + awaiting. Opt-outs, spam reports and the other suppressions come
from the suppression lists (created in the period); those lists are global across programs
and campaigns, so --program/--campaign do not narrow them (the table says so).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import CampaignRun, OutboxMessage, Suppression
from engine.reports.common import (
    FUNNEL_COLUMNS,
    Chart,
    Period,
    Table,
    check_campaign,
    count_outbox,
    funnel,
    pct,
    program_id,
    ratio,
)


@dataclass(frozen=True)
class ChannelDelivery:
    channel: str
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
    delivery_rate: float | None  # delivered / sent
    bounce_rate: float | None  # bounced / sent
    opt_outs: int
    spam_reports: int
    suppressions: dict[str, int]  # reason -> entries added


@dataclass(frozen=True)
class DeliverabilityReport:
    period: str | None
    program: str | None
    campaign: str | None
    generated_at: datetime
    channels: list[ChannelDelivery]

    def tables(self) -> list[Table]:
        rows = [
            (c.channel, *(getattr(c, column) for column in FUNNEL_COLUMNS),
             pct(c.delivery_rate), pct(c.bounce_rate), c.opt_outs, c.spam_reports)
            for c in self.channels
        ]  # fmt: skip
        reasons = sorted({r for c in self.channels for r in c.suppressions})
        return [
            Table(
                "Deliverability by channel",
                [
                    "channel",
                    *FUNNEL_COLUMNS,
                    "delivery rate",
                    "bounce rate",
                    "opt-outs",
                    "spam reports",
                ],
                rows,
            ),
            Table(
                "Suppressions added, by channel and reason",
                ["channel", *reasons],
                [(c.channel, *(c.suppressions.get(r, 0) for r in reasons)) for c in self.channels],
                note="Suppression lists are global: --program and --campaign do not narrow them.",
            ),
        ]

    def charts(self) -> list[Chart]:
        return [
            Chart(
                "bars",
                "Messages by channel",
                {
                    c.channel: {
                        "sent": c.sent,
                        "delivered": c.delivered,
                        "bounced": c.bounced,
                        "failed": c.failed,
                        "opt-outs": c.opt_outs,
                        "spam reports": c.spam_reports,
                    }
                    for c in self.channels
                },
            )
        ]


def deliverability_report(
    session: Session,
    *,
    at: datetime,
    period: Period | None = None,
    program: str | None = None,
    campaign: str | None = None,
) -> DeliverabilityReport:
    pid = program_id(session, program)
    check_campaign(session, campaign, program=program)
    o = OutboxMessage
    query = select(
        o.channel, o.status, func.count(), func.count(o.opened_at), func.count(o.clicked_at)
    ).group_by(o.channel, o.status)
    if pid is not None:
        query = query.where(
            o.run_id.in_(select(CampaignRun.id).where(CampaignRun.program_id == pid))
        )
    if campaign is not None:
        query = query.where(o.campaign == campaign)
    if period is not None:
        query = query.where(o.created_at >= period.start, o.created_at < period.end)
    acc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for channel, status, n, opened, clicked in session.execute(query).all():
        count_outbox(acc[channel], status, int(n), int(opened), int(clicked))

    s = Suppression
    sq = select(s.channel, s.reason, func.count()).group_by(s.channel, s.reason)
    if period is not None:
        sq = sq.where(s.created_at >= period.start, s.created_at < period.end)
    suppressions: dict[str, dict[str, int]] = defaultdict(dict)
    for channel, reason, n in session.execute(sq).all():
        suppressions[channel][reason] = int(n)

    channels = []
    for channel in ("email", "sms", "call", "all"):
        a = acc.get(channel, defaultdict(int))
        if channel in ("call", "all") and channel not in suppressions:
            continue
        counts = funnel(a)
        found = suppressions.get(channel, {})
        channels.append(
            ChannelDelivery(
                channel=channel, **counts,
                delivery_rate=ratio(counts["delivered"], counts["sent"]),
                bounce_rate=ratio(counts["bounced"], counts["sent"]),
                opt_outs=found.get("opt_out", 0), spam_reports=found.get("spam_report", 0),
                suppressions=dict(sorted(found.items())),
            )
        )  # fmt: skip
    return DeliverabilityReport(
        period=period.label if period else None,
        program=program,
        campaign=campaign,
        generated_at=at,
        channels=channels,
    )
